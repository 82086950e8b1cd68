//! Probabilistic PCA and factor analysis fitted by exact EM on the data's sufficient statistics.
//!
//! ```text
//! x = W z + mu + eps,   z ~ N(0, I_q),   eps ~ N(0, Psi)   =>   x ~ N(mu, W W^T + Psi)
//! ```
//! with isotropic noise `Psi = sigma^2 I` (probabilistic PCA, Tipping and Bishop 1999) or diagonal
//! noise (factor analysis, Ghahramani and Hinton 1996). The likelihood depends on the data only through
//! its mean and covariance `S`, computed once ([`SufficientStats`]); each EM iteration then costs
//! O(d^2 q) whatever the number of rows. [`LinearGaussianParams`] (unchecked, as read from a config)
//! `.check()` gives [`LinearGaussianValidParams`], whose `fit` returns a [`LinearGaussian`] with
//! `score_samples`, `score`, `posterior`, `sample` and `criteria`. [`ppca_closed_form`] is pPCA's
//! maximum likelihood from the eigendecomposition of `S`, the reference EM is tested against.

#[cfg(test)]
mod bench;
mod em;
mod fit;
mod init;
mod model;
mod parameters;
mod params;
mod stats;

pub use em::average_log_likelihood;
pub use fit::{CHECKPOINT_FORMAT, LinearCheckpoint};
pub use init::ppca_closed_form;
pub use model::{LatentPosterior, LinearGaussian, LinearGaussianJson, MODEL_FORMAT};
pub use parameters::{LinearParameters, LinearParametersJson};
pub use params::{LinearGaussianParams, LinearGaussianValidParams, LinearInit, Noise};
pub use stats::SufficientStats;

//! Hidden Markov models fitted by Baum-Welch (exact EM), with hmmlearn's estimator contract.
//!
//! ```text
//! p(x_1..T) = sum_z pi[z_1] b_{z_1}(x_1) prod_{t=2..T} A[z_t-1][z_t] b_{z_t}(x_t)
//! ```
//! for many independent sequences of different lengths ([`Sequences`], hmmlearn's `X, lengths`), with
//! Gaussian emissions (covariances `diag`, `full`, `spherical` or `tied`) or categorical ones.
//! [`HmmParams`] (unchecked, as read from a config) `.check()` gives [`HmmValidParams`], whose `fit`
//! runs Baum-Welch on the EM driver and returns an [`Hmm`] with `score_sequences`, `score`, `decode`,
//! `predict` (Viterbi), `predict_proba` (posterior marginals) and `sample`.
//!
//! The E-step is the scaled forward-backward algorithm per sequence (log space where it would
//! underflow), in parallel over blocks of sequences with a fixed reduction order, so fits are
//! reproducible bit for bit whatever the number of threads.

mod categorical;
mod data;
mod estep;
mod fit;
mod forward_backward;
mod gaussian;
mod init;
mod kernels;
mod model;
mod parameters;
mod params;
mod sample;
mod validate;
mod viterbi;

#[cfg(test)]
mod bench_tests;
#[cfg(test)]
mod parity_tests;
#[cfg(test)]
mod property_tests;

pub use categorical::CategoricalEmissions;
pub use data::{Observations, Sequences, parse_lengths, read_lengths};
pub use fit::{CHECKPOINT_FORMAT, HmmCheckpoint};
pub use gaussian::GaussianEmissions;
pub use model::{Decoded, Hmm, HmmJson, MODEL_FORMAT};
pub use parameters::{Emissions, HmmParameters, HmmParametersJson};
pub use params::{Emission, HmmParams, HmmValidParams};

pub use crate::gmm::{ArrayInit, CovarianceType};

//! Exact EM: latent-variable models whose posterior p(z | x) is available in closed form.
//!
//! The E-step computes the exact posterior (the responsibilities), the M-step maximises the expected
//! complete-data log-likelihood in closed form, and the marginal log-likelihood never decreases. These
//! models are the baselines the amortized (VAE) path is validated against.
//!
//! Every model runs on one loop, [`driver::fit`] (restarts, convergence, checkpoints, SQUAREM).
//!
//! - [`gmm`]: Gaussian mixtures with full, diagonal, tied or spherical covariances, partly labelled data,
//!   scikit-learn parity.
//! - [`linear`]: probabilistic PCA and factor analysis (`x = W z + mu + eps`), EM on the sufficient
//!   statistics, with pPCA's closed-form maximum likelihood as its reference.
//! - [`online`]: online (mini-batch) EM for the Gaussian mixture on a stream of rows, in constant memory.
//! - [`discrete`]: mixtures of multivariate Bernoullis (binary rows) and of multinomials (bag-of-words
//!   documents), with sparse data, smoothing and partly labelled data.
//! - [`hmm`]: hidden Markov models (Gaussian or categorical emissions) fitted by Baum-Welch on many
//!   sequences of different lengths, hmmlearn parity.

pub mod discrete;
pub mod driver;
pub mod error;
pub mod gmm;
pub mod hmm;
pub mod linear;
pub mod online;

pub use error::EmError;

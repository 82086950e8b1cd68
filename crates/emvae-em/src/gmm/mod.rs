//! Gaussian mixtures fitted by exact EM, with scikit-learn's estimator contract.
//!
//! ```text
//! p(x) = sum_j pi_j N(x | mu_j, Sigma_j)
//! ```
//! [`GmmParams`] (unchecked, as read from a config) `.check()` gives [`GmmValidParams`], whose `fit`
//! returns a [`GaussianMixture`] with `predict`, `predict_proba`, `score`, `score_samples`, `sample`, `bic`
//! and `aic`. Rows with a known component (partly labelled data) have their responsibilities clamped to it
//! in every E-step. [`GmmValidParams::select`] sweeps the number of components (and covariance types)
//! and keeps the best by BIC or AIC, as scikit-learn's model-selection example does by hand.

mod estep;
mod fit;
mod host;
mod init;
mod model;
mod mstep;
mod parameters;
mod params;
mod posterior;
pub mod profile;
mod select;
pub(crate) mod workspace;

pub use fit::{BestFit, CHECKPOINT_FORMAT, EmObserver, GmmCheckpoint, IterationRecord};
pub use model::{
    EMPTY_COMPONENT_WEIGHT, FitWarning, GaussianMixture, GaussianMixtureJson, MODEL_FORMAT,
};
pub use parameters::*;
pub use params::*;
pub use select::{Candidate, Criterion, SelectParams, Selection};

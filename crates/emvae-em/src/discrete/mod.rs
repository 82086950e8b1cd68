//! Discrete mixtures fitted by exact EM: mixtures of multivariate Bernoullis (binary rows) and of
//! multinomials (bag-of-words documents, the mixture of unigrams).
//!
//! Both store their data sparsely and share one E-step: `log p(x, z = j)` is linear in `x`, so the
//! posteriors of all rows are one sparse-dense product, and the E-step hands the M-step only the
//! expected sufficient statistics ([`MixtureStats`]: `N_j`, `sum_i r_ij x_i`, the log-likelihood),
//! which add over mini-batches. Host code in f64, parallel over fixed blocks of rows with rayon, so
//! results do not depend on the number of threads.
//!
//! Smoothing (`alpha`, `alpha_weights`) adds pseudo-counts: the M-steps are then posterior modes and
//! the objective EM records (and never decreases) is the average log posterior
//! `(sum_i log p(x_i) + log p(params)) / n`; without smoothing it is the average log-likelihood. Rows
//! with a known component (partly labelled data) have their posterior clamped to it, as in
//! [`crate::gmm`].

pub mod bernoulli;
mod checks;
mod dense;
mod engine;
mod model;
pub mod multinomial;
mod params;
mod settings;
mod smoothing;
mod sparse;
mod stats;
#[cfg(test)]
mod testing;

pub use params::{
    BernoulliKind, BernoulliMixtureParams, BernoulliValidParams, DiscreteMixtureParams,
    DiscreteValidParams, MixtureKind, MultinomialKind, MultinomialMixtureParams,
    MultinomialValidParams,
};
pub use settings::DiscreteInit;
pub use smoothing::PROB_FLOOR;
pub use stats::MixtureStats;

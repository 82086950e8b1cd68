//! Online (mini-batch) EM for the mixtures (Cappé and Moulines 2009): data streamed through once or a
//! few times, never held whole. The Gaussian mixture here, the discrete mixtures in [`discrete`].
//!
//! EM's M-step depends on the data only through the expected sufficient statistics per row,
//! ```text
//! s = 1/n sum_i E[ phi(x_i, z_i) ] = ( N_j / n,  1/n sum_i r_ij x_i,  1/n sum_i r_ij x_i x_i^T )_j
//! ```
//! (per covariance type, the second moments it needs). Online EM replaces the full-data `s` by a
//! stochastic-approximation average over mini-batches `B_t`:
//! ```text
//! s_t = (1 - gamma_t) s_{t-1} + gamma_t s_hat(B_t; theta_{t-1}),     theta_t = M-step(s_t),
//! gamma_t = (t + t0)^(-alpha),  alpha in (0.5, 1],
//! ```
//! where `s_hat(B_t; theta)` is batch EM's E-step on the batch. A burn-in of `B` batches averages their
//! statistics plainly (per row) under the initial parameters before the first M-step, so the first
//! update is a batch EM iteration on `B` batches. With `gamma_t = 1/t` the running statistics are the
//! plain average; with every batch in the burn-in, online EM is exactly one batch EM iteration.
//!
//! Memory is one batch (on the host and on the device) plus `k F` statistics, whatever the stream's
//! length: see [`emvae_core::data::stream`] for the streams.
//!
//! - [`OnlineParams`]: the `[gmm.online]` settings (batch size, step schedule, burn-in, epochs).
//! - [`GmmValidParams::fit_online`](crate::gmm::GmmValidParams::fit_online): the fit, returning an
//!   [`OnlineFit`] whose mixture is batch EM's [`GaussianMixture`](crate::gmm::GaussianMixture).
//! - [`OnlineObserver`]: sees a [`BatchRecord`] per batch and an [`EpochRecord`] per epoch.
//! - `BernoulliValidParams::fit_online` and `MultinomialValidParams::fit_online` ([`discrete`]): the
//!   same loop on the discrete mixtures' statistics.

pub mod discrete;
mod fit;
#[cfg(test)]
mod measure;
mod params;
mod record;
mod stats;
#[cfg(test)]
mod tests;

pub use params::OnlineParams;
pub use record::{BatchRecord, EpochRecord, OnlineFit, OnlineObserver};
pub use stats::RunningStats;

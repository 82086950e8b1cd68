//! What online EM reports: a record per mini-batch and per epoch, seen by an observer, and the result.

use serde::{Deserialize, Serialize};

use crate::gmm::{GaussianMixture, GmmParameters};

/// One mini-batch: a line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// 1-based pass over the stream.
    pub epoch: usize,
    /// 1-based batch index `t`, counted over all epochs.
    pub batch: usize,
    /// Rows of this batch.
    pub rows: usize,
    /// Rows read so far over all epochs, this batch's included.
    pub rows_seen: usize,
    /// Average log-likelihood `1/n sum_i log p(x_i)` of this batch's rows under the parameters before
    /// this batch's update: an honest estimate on rows the parameters have not yet been fitted to.
    pub log_likelihood: f64,
    /// The step `gamma_t` the running statistics moved by.
    pub step_size: f64,
    /// Whether the parameters took an M-step after this batch (false during the burn-in).
    pub updated: bool,
    /// Wall-clock seconds of this batch: reading it, its E-step and the update.
    pub seconds: f64,
}

/// One pass over the stream (or its part before `max_batches` stopped the run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based pass.
    pub epoch: usize,
    /// Batches of this pass.
    pub batches: usize,
    /// Rows of this pass.
    pub rows: usize,
    /// The batches' log-likelihoods averaged per row.
    pub log_likelihood: f64,
    /// Wall-clock seconds of this pass.
    pub seconds: f64,
}

/// Sees every batch and epoch of an online fit, with the parameters after it; may persist them.
/// Returning an error stops the fit.
pub trait OnlineObserver {
    fn on_batch(
        &mut self,
        record: &BatchRecord,
        params: &GmmParameters,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;

    fn on_epoch(
        &mut self,
        _record: &EpochRecord,
        _params: &GmmParameters,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

/// Observes nothing.
impl OnlineObserver for () {
    fn on_batch(
        &mut self,
        _: &BatchRecord,
        _: &GmmParameters,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

/// The outcome of an online fit.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineFit {
    /// The fitted mixture, as batch EM gives it. Online EM has no convergence test (it runs its
    /// schedule to the end), so `converged` is true; `n_iter` counts batches; `lower_bounds` holds one
    /// average log-likelihood per epoch (see [`EpochRecord::log_likelihood`]), so the model file stays
    /// small however long the stream.
    pub mixture: GaussianMixture,
    /// One record per epoch.
    pub epochs: Vec<EpochRecord>,
    /// Batches over all epochs.
    pub batches: usize,
    /// Rows read over all epochs.
    pub rows_seen: usize,
}

//! The online EM loop for the Gaussian mixture, on batch EM's E-step and M-step.
//!
//! For each mini-batch `B_t` of `n_t` rows: the E-step under the current parameters gives the batch's
//! statistics per row `s_hat_t = 1/n_t sum_{i in B_t} r_ij phi(x_i)` (one `R^T phi(X)` product, see
//! [`crate::gmm`]'s workspace), the running statistics move to `s_t = s_{t-1} + gamma_t (s_hat_t -
//! s_{t-1})`, and (after the burn-in) the M-step maps `s_t` to new parameters exactly as batch EM maps
//! its full-data statistics. Only the batch in hand is on the device; the statistics are `k F` numbers.

use std::time::Instant;

use emvae_core::data::stream::RowStream;
use emvae_core::data::{DataError, Dataset};
use emvae_core::tensor::Compute;

use super::record::{BatchRecord, EpochRecord, OnlineFit, OnlineObserver};
use super::stats::RunningStats;
use crate::EmError;
use crate::gmm::workspace::Workspace;
use crate::gmm::{GaussianMixture, GmmParameters, GmmValidParams};

impl GmmValidParams {
    /// Fits by online EM (Cappé and Moulines 2009) on `stream`, read `gmm.online.batch_size` rows at a
    /// time, with the settings of [`GmmParams::online`](crate::gmm::GmmParams) (their defaults when
    /// absent), showing every batch and epoch to `observer`.
    ///
    /// The first batch fixes what batch EM takes from the whole data: the centre of the features (its
    /// mean) and the variance floor, and the initial parameters (`init_params`, e.g. k-means on it,
    /// seeded by `seed`; or explicit `*_init` values). `max_iter`, `tol` and `n_init` do not apply.
    /// Streams carry no labels.
    pub fn fit_online(
        &self,
        stream: &mut dyn RowStream,
        compute: &Compute,
        observer: &mut dyn OnlineObserver,
    ) -> Result<OnlineFit, EmError> {
        let p = self.params();
        let settings = p.online.clone().unwrap_or_default();
        settings.check().map_err(|e| e.within("online"))?;
        let (k, cov, reg) = (p.n_components, p.covariance_type, p.reg_covar);
        let d = stream.n_cols();
        let first = stream
            .next_batch(settings.batch_size)?
            .ok_or_else(|| DataError::new(stream.source(), "the stream holds no rows"))?;
        let first = Dataset::new(first, stream.source());
        self.check_data(&first)?;
        let ws = Workspace::new(&first.x, None, k, cov, compute);
        // Every batch is centred and floored as the first: the features of all batches must agree.
        let (center, variance) = (ws.center.clone(), ws.variance.clone());
        let mut theta = self.initialize(&ws, &first, 0)?;
        let mut in_hand = Some(ws);
        let mut last: Option<Workspace> = None;
        let mut stats = RunningStats::default();
        let (mut t, mut rows_seen, mut updated_once) = (0, 0, false);
        let mut epochs = Vec::with_capacity(settings.epochs);
        let mut stopped = false;

        for epoch in 1..=settings.epochs {
            if epoch > 1 {
                stream.rewind()?;
            }
            let epoch_start = Instant::now();
            let (mut rows, mut batches, mut ll_sum) = (0, 0, 0.0);
            loop {
                if settings.max_batches.is_some_and(|m| t >= m) {
                    stopped = true;
                    break;
                }
                let start = Instant::now();
                let ws = match in_hand.take() {
                    Some(ws) => ws,
                    None => match stream.next_batch(settings.batch_size)? {
                        None => break,
                        Some(x) if x.n_cols != d => {
                            return Err(EmError::FeatureMismatch {
                                expected: d,
                                found: x.n_cols,
                            });
                        }
                        Some(x) => {
                            let (c, v) = (center.clone(), variance.clone());
                            Workspace::with_centre(&x, None, k, cov, compute, c, v)
                        }
                    },
                };
                t += 1;
                let n = ws.n;
                rows_seen += n;
                let (log_likelihood, resp) = ws.e_step(&theta);
                let mut s_hat = ws.moments(&resp);
                s_hat.iter_mut().for_each(|v| *v /= n as f64);
                let step_size = settings.step_size(t, n, rows_seen);
                stats.update(&s_hat, step_size);
                let updated = settings.updates_after(t);
                if updated {
                    theta = m_step(&ws, &stats, reg)?;
                    updated_once = true;
                }
                let record = BatchRecord {
                    epoch,
                    batch: t,
                    rows: n,
                    rows_seen,
                    log_likelihood,
                    step_size,
                    updated,
                    seconds: start.elapsed().as_secs_f64(),
                };
                tracing::debug!(
                    epoch,
                    batch = t,
                    rows_seen,
                    log_likelihood,
                    step_size,
                    updated,
                    "online EM batch"
                );
                observer
                    .on_batch(&record, &theta)
                    .map_err(EmError::Observer)?;
                rows += n;
                batches += 1;
                ll_sum += log_likelihood * n as f64;
                last = Some(ws);
            }
            if batches > 0 {
                let record = EpochRecord {
                    epoch,
                    batches,
                    rows,
                    log_likelihood: ll_sum / rows as f64,
                    seconds: epoch_start.elapsed().as_secs_f64(),
                };
                observer
                    .on_epoch(&record, &theta)
                    .map_err(EmError::Observer)?;
                epochs.push(record);
            }
            if stopped {
                break;
            }
        }
        // A stream shorter than the burn-in: its averaged statistics still get their M-step.
        if !updated_once && let Some(ws) = &last {
            theta = m_step(ws, &stats, reg)?;
        }
        let lower_bounds: Vec<f64> = epochs.iter().map(|e| e.log_likelihood).collect();
        Ok(OnlineFit {
            mixture: GaussianMixture {
                parameters: theta,
                converged: true,
                n_iter: t,
                lower_bound: lower_bounds.last().copied().unwrap_or(f64::NEG_INFINITY),
                lower_bounds,
                best_restart: 0,
            },
            epochs,
            batches: t,
            rows_seen,
        })
    }
}

/// Batch EM's M-step on the running statistics (no exact recomputation: the rows are gone).
fn m_step(ws: &Workspace, stats: &RunningStats, reg: f64) -> Result<GmmParameters, EmError> {
    ws.parameters_from_estimate(ws.estimate_from_moments(stats.values(), reg, None), reg)
}

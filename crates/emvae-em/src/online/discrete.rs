//! Online (mini-batch) EM for the discrete mixtures (Bernoulli rows, multinomial count rows), on a stream
//! of rows: the same stochastic approximation as the Gaussian mixture's (see [`super`]), on the mixtures'
//! expected sufficient statistics ([`MixtureStats`]: `N_j`, `sum_i r_ij x_i`).
//!
//! The running statistics are kept per row; the M-step sees them scaled to the rows of one pass over the
//! stream (the rows read so far during the first pass), so the pseudo-counts `alpha` weigh against a
//! data set's worth of counts, as in batch EM.

use std::time::Instant;

use emvae_core::data::stream::RowStream;
use emvae_core::data::{DataError, Dataset};

use super::OnlineParams;
use super::record::{BatchRecord, EpochRecord};
use crate::EmError;
use crate::discrete::MixtureStats;
use crate::discrete::bernoulli::{BernoulliMixture, BernoulliParameters};
use crate::discrete::multinomial::{BagOfWords, MultinomialMixture, MultinomialParameters};
use crate::discrete::{BernoulliValidParams, MultinomialValidParams};

/// What an online fit of a discrete mixture did: per epoch, and in all.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineSummary {
    pub epochs: Vec<EpochRecord>,
    pub batches: usize,
    pub rows_seen: usize,
}

/// One mixture family as online EM needs it.
trait Streamed {
    type Params;
    fn init(&self, first: &Dataset) -> Result<Self::Params, EmError>;
    fn stats(&self, p: &Self::Params, batch: &Dataset) -> Result<MixtureStats, EmError>;
    fn m_step(&self, s: &MixtureStats) -> Self::Params;
}

impl Streamed for BernoulliValidParams {
    type Params = BernoulliParameters;
    fn init(&self, first: &Dataset) -> Result<BernoulliParameters, EmError> {
        Ok(self.fit(first)?.parameters)
    }
    fn stats(&self, p: &BernoulliParameters, batch: &Dataset) -> Result<MixtureStats, EmError> {
        p.expected_stats(batch)
    }
    fn m_step(&self, s: &MixtureStats) -> BernoulliParameters {
        let p = self.params();
        BernoulliParameters::from_stats(s, p.alpha, p.alpha_weights)
    }
}

impl Streamed for MultinomialValidParams {
    type Params = MultinomialParameters;
    fn init(&self, first: &Dataset) -> Result<MultinomialParameters, EmError> {
        Ok(self.fit(&BagOfWords::from_dataset(first)?)?.parameters)
    }
    fn stats(&self, p: &MultinomialParameters, batch: &Dataset) -> Result<MixtureStats, EmError> {
        p.expected_stats(&BagOfWords::from_dataset(batch)?)
    }
    fn m_step(&self, s: &MixtureStats) -> MultinomialParameters {
        let p = self.params();
        MultinomialParameters::from_stats(s, p.alpha, p.alpha_weights)
    }
}

/// The loop: batch EM on the first batch for a start, then for batch `t` the batch's statistics under
/// the current parameters, `s <- (1 - gamma_t) s + gamma_t s_hat_t` (per row), and after the burn-in an
/// M-step on `s` after every batch.
fn run<F: Streamed>(
    family: &F,
    stream: &mut dyn RowStream,
    settings: &OnlineParams,
    observer: &mut dyn FnMut(&BatchRecord) -> Result<(), EmError>,
) -> Result<(F::Params, OnlineSummary), EmError> {
    settings.check().map_err(|e| e.within("online"))?;
    let source = stream.source().to_path_buf();
    let next = |stream: &mut dyn RowStream| -> Result<Option<Dataset>, EmError> {
        Ok(stream
            .next_batch(settings.batch_size)?
            .map(|m| Dataset::new(m, &source)))
    };
    let first =
        next(stream)?.ok_or_else(|| DataError::new(stream.source(), "the stream holds no rows"))?;
    let mut theta = family.init(&first)?;
    let mut pending = Some(first);
    let mut running: Option<MixtureStats> = None;
    let (mut t, mut rows_seen, mut first_pass_rows) = (0, 0, 0);
    let mut epochs = Vec::new();
    'passes: for epoch in 1..=settings.epochs {
        if epoch > 1 {
            stream.rewind()?;
        }
        let (start, mut batches, mut rows, mut ll) = (Instant::now(), 0, 0, 0.0);
        loop {
            if settings.max_batches.is_some_and(|m| t >= m) {
                break 'passes;
            }
            let batch_start = Instant::now();
            let batch = match pending.take() {
                Some(b) => b,
                None => match next(stream)? {
                    Some(b) => b,
                    None => break,
                },
            };
            let n = batch.n_rows();
            t += 1;
            rows_seen += n;
            if epoch == 1 {
                first_pass_rows += n;
            }
            let mut s_hat = family.stats(&theta, &batch)?;
            let batch_ll = s_hat.average_log_likelihood();
            s_hat.scale(1.0 / n as f64);
            let gamma = settings.step_size(t, n, rows_seen);
            running = Some(match running.take() {
                None => s_hat,
                Some(mut s) => {
                    s.scale(1.0 - gamma);
                    s.scale_add(&s_hat, gamma);
                    s
                }
            });
            let updated = settings.updates_after(t);
            if updated && let Some(s) = &running {
                let mut whole = s.clone();
                whole.scale(first_pass_rows as f64);
                theta = family.m_step(&whole);
            }
            batches += 1;
            rows += n;
            ll += batch_ll * n as f64;
            observer(&BatchRecord {
                epoch,
                batch: t,
                rows: n,
                rows_seen,
                log_likelihood: batch_ll,
                step_size: gamma,
                updated,
                seconds: batch_start.elapsed().as_secs_f64(),
            })?;
        }
        epochs.push(EpochRecord {
            epoch,
            batches,
            rows,
            log_likelihood: ll / rows.max(1) as f64,
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    // A stream shorter than the burn-in still ends with one M-step.
    if !settings.updates_after(t)
        && let Some(s) = &running
    {
        let mut whole = s.clone();
        whole.scale(first_pass_rows as f64);
        theta = family.m_step(&whole);
    }
    Ok((
        theta,
        OnlineSummary {
            epochs,
            batches: t,
            rows_seen,
        },
    ))
}

fn trajectory(summary: &OnlineSummary) -> Vec<f64> {
    summary.epochs.iter().map(|e| e.log_likelihood).collect()
}

impl BernoulliValidParams {
    /// Fits by online EM on `stream` (binary rows read `settings.batch_size` at a time), starting from
    /// batch EM on the first batch; `observer` sees every batch.
    pub fn fit_online(
        &self,
        stream: &mut dyn RowStream,
        settings: &OnlineParams,
        observer: &mut dyn FnMut(&BatchRecord) -> Result<(), EmError>,
    ) -> Result<(BernoulliMixture, OnlineSummary), EmError> {
        let (parameters, summary) = run(self, stream, settings, observer)?;
        let lower_bounds = trajectory(&summary);
        Ok((
            BernoulliMixture {
                parameters,
                converged: true,
                // One record per pass over the stream (the model file's trajectory).
                n_iter: lower_bounds.len(),
                lower_bound: lower_bounds.last().copied().unwrap_or(f64::NEG_INFINITY),
                lower_bounds,
                best_restart: 0,
            },
            summary,
        ))
    }
}

impl MultinomialValidParams {
    /// Fits by online EM on `stream` (rows of word counts read `settings.batch_size` at a time), starting
    /// from batch EM on the first batch; `observer` sees every batch.
    pub fn fit_online(
        &self,
        stream: &mut dyn RowStream,
        settings: &OnlineParams,
        observer: &mut dyn FnMut(&BatchRecord) -> Result<(), EmError>,
    ) -> Result<(MultinomialMixture, OnlineSummary), EmError> {
        let (parameters, summary) = run(self, stream, settings, observer)?;
        let lower_bounds = trajectory(&summary);
        Ok((
            MultinomialMixture {
                parameters,
                converged: true,
                n_iter: lower_bounds.len(),
                lower_bound: lower_bounds.last().copied().unwrap_or(f64::NEG_INFINITY),
                lower_bounds,
                best_restart: 0,
            },
            summary,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discrete::{BernoulliMixtureParams, MultinomialMixtureParams};
    use emvae_core::data::Matrix;
    use emvae_core::data::stream::MatrixStream;
    use emvae_core::rng::rng_for;
    use rand::Rng as _;

    /// Binary rows from a known 3-component mixture with well-separated probabilities.
    fn binary_rows(n: usize, seed: u64) -> Matrix {
        let protos = [
            [0.9, 0.9, 0.1, 0.1, 0.5, 0.1],
            [0.1, 0.1, 0.9, 0.9, 0.5, 0.1],
            [0.1, 0.9, 0.1, 0.9, 0.1, 0.9],
        ];
        let mut rng = rng_for(seed, b"test-online-bernoulli", 0);
        let mut v = Vec::with_capacity(n * 6);
        for _ in 0..n {
            let j = rng.random_range(0..3);
            v.extend(
                protos[j]
                    .iter()
                    .map(|&p| f64::from(u8::from(rng.random::<f64>() < p))),
            );
        }
        Matrix::new(n, 6, v)
    }

    #[test]
    fn online_bernoulli_fits_as_well_as_batch_em_on_a_subsample() {
        let stream_rows = binary_rows(200_000, 1);
        let held_out = Dataset::new(binary_rows(20_000, 2), "held-out");
        let valid = BernoulliMixtureParams::new(3)
            .n_init(3)
            .seed(4)
            .check()
            .unwrap();
        let settings = OnlineParams {
            batch_size: 2_000,
            ..OnlineParams::default()
        };
        let mut seen = 0;
        let (online, summary) = valid
            .fit_online(
                &mut MatrixStream::new(stream_rows.clone(), "stream"),
                &settings,
                &mut |r| {
                    seen += r.rows;
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(
            (seen, summary.rows_seen, summary.batches),
            (200_000, 200_000, 100)
        );
        let subsample = Dataset::new(stream_rows.slice_rows(0, 20_000), "subsample");
        let batch = valid.fit(&subsample).unwrap();
        let (a, b) = (
            online.score(&held_out).unwrap(),
            batch.score(&held_out).unwrap(),
        );
        assert!((a - b).abs() < 0.01, "online {a} batch {b}");
    }

    #[test]
    fn online_multinomial_learns_and_bad_settings_are_named() {
        // Documents of 20 words from two word distributions over 8 words.
        let mut rng = rng_for(3, b"test-online-multinomial", 0);
        let n = 20_000;
        let mut v = vec![0.0; n * 8];
        for i in 0..n {
            let base = if rng.random::<bool>() { 0 } else { 4 };
            for _ in 0..20 {
                v[i * 8 + base + rng.random_range(0..4)] += 1.0;
            }
        }
        let rows = Matrix::new(n, 8, v);
        let valid = MultinomialMixtureParams::new(2).seed(1).check().unwrap();
        let settings = OnlineParams {
            batch_size: 500,
            ..OnlineParams::default()
        };
        let (model, _) = valid
            .fit_online(
                &mut MatrixStream::new(rows.clone(), "docs"),
                &settings,
                &mut |_| Ok(()),
            )
            .unwrap();
        let docs = BagOfWords::from_dataset(&Dataset::new(rows.slice_rows(0, 2_000), "d")).unwrap();
        let batch = valid.fit(&docs).unwrap();
        let (a, b) = (model.score(&docs).unwrap(), batch.score(&docs).unwrap());
        assert!((a - b).abs() < 0.05, "online {a} batch {b}");
        let bad = OnlineParams {
            step_exponent: 0.4,
            ..settings
        };
        let e = valid
            .fit_online(&mut MatrixStream::new(rows, "docs"), &bad, &mut |_| Ok(()))
            .unwrap_err();
        assert!(e.to_string().contains("step_exponent"), "{e}");
    }
}

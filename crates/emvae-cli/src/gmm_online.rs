//! `emvae train` for a Gaussian mixture with a `[gmm.online]` table: online (mini-batch) EM on the data
//! streamed from disk (or generated on the fly), so a data set larger than memory can be fitted.
//!
//! The run directory is the batch fit's: `metrics.jsonl` (one record per mini-batch), `model.json` (the
//! same model file, so `eval`, `predict` and `sample` work unchanged) and `summary.json`. An online fit
//! keeps no checkpoint: its state is the running statistics and a position in the stream, and a run
//! interrupted before it finished starts over.

use std::time::Instant;

use emvae_core::data::stream::{RowStream, SyntheticStream, open_stream};
use emvae_core::run::{MetricsLog, RunDir};
use emvae_em::gmm::{FitWarning, GaussianMixtureJson, GmmParameters, GmmValidParams};
use emvae_em::online::{BatchRecord, EpochRecord, OnlineObserver};
use serde_json::json;

use crate::error::{CliError, CliResult};
use crate::exact::MODEL_FILE;
use crate::progress::Progress;
use crate::runconfig::LoadedConfig;
use crate::runs::{TrainTarget, already_complete};

struct BatchLog {
    metrics: MetricsLog,
    progress: Progress,
}

impl OnlineObserver for BatchLog {
    fn on_batch(
        &mut self,
        r: &BatchRecord,
        _: &GmmParameters,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.metrics.push(r);
        let message = format!(
            "epoch {} batch {:>6}: {} rows seen, batch log-likelihood {:.6}{}",
            r.epoch,
            r.batch,
            r.rows_seen,
            r.log_likelihood,
            if r.updated { "" } else { " (burn-in)" }
        );
        if self.progress.is_drawn() {
            self.progress.update(r.batch as u64, message);
        } else if r.batch.is_power_of_two() || r.batch.is_multiple_of(100) {
            tracing::info!("{message}");
        }
        Ok(())
    }

    fn on_epoch(
        &mut self,
        r: &EpochRecord,
        _: &GmmParameters,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        tracing::info!(
            "epoch {}: {} batches, {} rows, average log-likelihood {:.6} ({:.1} s)",
            r.epoch,
            r.batches,
            r.rows,
            r.log_likelihood,
            r.seconds
        );
        self.metrics.flush()?;
        Ok(())
    }
}

/// The stream of the run's `[data]`: a CSV or `.npy` file read in batches, or the synthetic mixture
/// drawn batch by batch.
pub(crate) fn stream(loaded: &LoadedConfig) -> CliResult<Box<dyn RowStream>> {
    let d = &loaded.config.data;
    let unsupported = [
        ("label_column", d.label_column.is_some()),
        ("labels_path", d.labels_path.is_some()),
        ("scale", d.scale.is_some()),
    ]
    .into_iter()
    .find(|(_, set)| *set);
    if let Some((key, _)) = unsupported {
        return Err(loaded.invalid(emvae_core::config::InvalidParam::new(
            format!("data.{key}"),
            "is not supported with an [online] table (streams carry unscaled, unlabelled rows); fit in \
             batch (remove the [online] table) or prepare the file",
        )));
    }
    if let Some(spec) = &d.synthetic {
        let s =
            SyntheticStream::new(spec).map_err(|e| loaded.invalid(e.within("data.synthetic")))?;
        return Ok(Box::new(s));
    }
    let path = d
        .path
        .as_deref()
        .ok_or_else(|| CliError::user("online EM needs [data] path or [data.synthetic]"))?;
    Ok(open_stream(path, d.format, &d.csv_options())?)
}

pub fn train(
    target: &TrainTarget,
    valid: &GmmValidParams,
    force: bool,
    stop_after: Option<usize>,
    error: &dyn Fn(emvae_em::EmError) -> CliError,
) -> CliResult<()> {
    let (loaded, run) = (&target.loaded, &target.run);
    if stop_after.is_some() {
        return Err(CliError::user(
            "--stop-after: an online fit ([gmm.online]) keeps no checkpoint to continue from; use \
             gmm.online.max_batches to bound it",
        ));
    }
    let mut rows = stream(loaded)?;
    let (compute, backend) = super::gmm::compute(loaded, None)?;
    target.prepare(force)?;
    if already_complete(run, MODEL_FILE, target.resume) {
        return Ok(());
    }
    if target.resume {
        tracing::warn!("an online fit keeps no checkpoint: starting it over");
    }
    let p = valid.params();
    let settings = p.online.clone().unwrap_or_default();
    tracing::info!(
        "fitting a {}-component {} Gaussian mixture by online EM to {} ({} features; batches of {}, step \
         (t + {})^-{}, burn-in {} batches, {} epochs) on {backend} ({})",
        p.n_components,
        p.covariance_type,
        rows.source().display(),
        rows.n_cols(),
        settings.batch_size,
        settings.step_offset,
        settings.step_exponent,
        settings.burn_in,
        settings.epochs,
        compute.precision,
    );
    let total = rows
        .len_hint()
        .map(|n| (n.div_ceil(settings.batch_size) * settings.epochs) as u64);
    let mut log = BatchLog {
        metrics: MetricsLog::new(run.path(RunDir::METRICS)),
        progress: Progress::new(total.unwrap_or(0), "batches", total.is_some()),
    };
    let start = Instant::now();
    let fit = valid
        .fit_online(rows.as_mut(), &compute, &mut log)
        .map_err(error)?;
    let wall = start.elapsed().as_secs_f64();
    log.metrics.flush()?;
    drop(log.progress);
    let model = &fit.mixture;
    // Only the parameters' own warnings: the rows are gone.
    let warnings: Vec<String> = model
        .warnings(&emvae_core::data::Matrix::new(
            0,
            model.n_features(),
            vec![],
        ))
        .iter()
        .filter(|w| matches!(w, FitWarning::EmptyComponents(_)))
        .map(ToString::to_string)
        .collect();
    for w in &warnings {
        tracing::warn!("{w}");
    }
    run.write_json(MODEL_FILE, &GaussianMixtureJson::from(model))?;
    let last = fit.epochs.last();
    let summary = json!({
        "model": "gmm",
        "fit": "online",
        "covariance_type": p.covariance_type,
        "n_components": p.n_components,
        "n_features": model.n_features(),
        "rows_seen": fit.rows_seen,
        "batches": fit.batches,
        "epochs": fit.epochs.len(),
        "log_likelihood_last_epoch": last.map(|e| e.log_likelihood),
        "n_parameters": model.parameters.n_parameters(),
        "online": settings,
        "seconds": wall,
        "backend": backend,
        "precision": compute.precision,
        "warnings": warnings,
    });
    run.write_json(RunDir::SUMMARY, &summary)?;
    tracing::info!(
        "done: {} rows in {} batches; wrote {}",
        fit.rows_seen,
        fit.batches,
        run.root().display()
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    Ok(())
}

/// A discrete mixture's online fit: the model file's JSON, and what the fit did.
pub(crate) type DiscreteFit = (serde_json::Value, emvae_em::online::discrete::OnlineSummary);

/// Sees every batch of an online fit.
pub(crate) type BatchObserver<'a> = dyn FnMut(&BatchRecord) -> Result<(), emvae_em::EmError> + 'a;

/// `emvae train` for a Bernoulli or multinomial mixture with an `[...online]` table: the rows streamed
/// in batches through `fit`, one metrics record per batch, the model file and summary as a batch fit's.
pub(crate) fn train_discrete(
    target: &TrainTarget,
    force: bool,
    stop_after: Option<usize>,
    settings: &emvae_em::online::OnlineParams,
    fit: &mut dyn FnMut(
        &mut dyn RowStream,
        &mut BatchObserver,
    ) -> Result<DiscreteFit, emvae_em::EmError>,
    error: &dyn Fn(emvae_em::EmError) -> CliError,
) -> CliResult<()> {
    let (loaded, run) = (&target.loaded, &target.run);
    if stop_after.is_some() {
        return Err(CliError::user(
            "--stop-after: an online fit keeps no checkpoint to continue from; use online.max_batches \
             to bound it",
        ));
    }
    let mut rows = stream(loaded)?;
    target.prepare(force)?;
    if already_complete(run, MODEL_FILE, target.resume) {
        return Ok(());
    }
    let model = loaded.config.model.name();
    tracing::info!(
        "fitting a {model} by online EM to {} ({} features; batches of {}, step (t + {})^-{}, burn-in {} \
         batches, {} epochs)",
        rows.source().display(),
        rows.n_cols(),
        settings.batch_size,
        settings.step_offset,
        settings.step_exponent,
        settings.burn_in,
        settings.epochs,
    );
    let mut metrics = MetricsLog::new(run.path(RunDir::METRICS));
    let start = Instant::now();
    let (model_json, summary) = fit(rows.as_mut(), &mut |r| {
        metrics.push(r);
        if r.batch.is_power_of_two() || r.batch.is_multiple_of(100) {
            tracing::info!(
                "epoch {} batch {:>6}: {} rows seen, batch log-likelihood {:.6}",
                r.epoch,
                r.batch,
                r.rows_seen,
                r.log_likelihood
            );
        }
        Ok(())
    })
    .map_err(error)?;
    let wall = start.elapsed().as_secs_f64();
    metrics.flush()?;
    run.write_json(MODEL_FILE, &model_json)?;
    let summary = json!({
        "model": model,
        "fit": "online",
        "rows_seen": summary.rows_seen,
        "batches": summary.batches,
        "epochs": summary.epochs.len(),
        "log_likelihood_last_epoch": summary.epochs.last().map(|e| e.log_likelihood),
        "online": settings,
        "seconds": wall,
        "warnings": Vec::<String>::new(),
    });
    run.write_json(RunDir::SUMMARY, &summary)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    Ok(())
}

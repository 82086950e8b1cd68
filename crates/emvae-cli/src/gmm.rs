//! `emvae` commands for Gaussian mixtures.

use std::time::Instant;

use emvae_core::data::Dataset;
use emvae_core::run::{MetricsLog, RunDir};
use emvae_core::tensor::Compute;
use emvae_em::EmError;
use emvae_em::gmm::{
    EmObserver, GaussianMixture, GaussianMixtureJson, GmmCheckpoint, GmmValidParams,
    IterationRecord,
};
use serde_json::json;

use crate::args::{EvalArgs, PredictArgs, SampleArgs};
use crate::error::{CliError, CliResult};
use crate::output::{RowWriter, num};
use crate::progress::Progress;
use crate::runconfig::LoadedConfig;
use crate::runs::{TrainTarget, already_complete, open_run, open_run_data, read_checkpoint};

pub const MODEL_FILE: &str = "model.json";
pub const CHECKPOINT_FILE: &str = "checkpoint.json";

/// Turns a model error into a message, locating parameter errors in the config.
fn em_error(loaded: &LoadedConfig, data: Option<&Dataset>, e: EmError) -> CliError {
    match e {
        EmError::InvalidParam(p) => loaded.invalid(p.within("gmm")),
        EmError::Data(d) => d.into(),
        EmError::FeatureMismatch { expected, found } => {
            let source = data
                .map(|d| d.source.display().to_string())
                .unwrap_or_default();
            CliError::user(format!(
                "data error: {source}: {found} feature columns, but the model was fitted on {expected}"
            ))
        }
        EmError::IllConditioned { .. } => CliError::user(format!("fit failed: {e}")),
        EmError::Checkpoint(m) => {
            CliError::user(format!("cannot resume from {CHECKPOINT_FILE}: {m}"))
        }
        EmError::Observer(inner) => CliError::runtime(inner),
    }
}

fn compute(
    loaded: &LoadedConfig,
    backend: Option<crate::backend::Backend>,
) -> CliResult<(Compute, String)> {
    let backend = backend.unwrap_or(loaded.backend());
    let compute = backend.compute(loaded.precision())?;
    Ok((compute, backend.name().to_string()))
}

/// The observer's signal that `--stop-after` was reached (the checkpoint is written).
#[derive(Debug)]
struct StopRequested(usize);

impl std::fmt::Display for StopRequested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped after {} iterations as asked", self.0)
    }
}

impl std::error::Error for StopRequested {}

struct TrainObserver<'a> {
    run: &'a RunDir,
    metrics: MetricsLog,
    every: usize,
    since_checkpoint: usize,
    max_iter: usize,
    progress: Progress,
    stop_after: Option<usize>,
    this_session: usize,
    /// `(seconds, iterations)` of EM over all sessions, as of the last iteration seen.
    totals: (f64, usize),
}

impl EmObserver for TrainObserver<'_> {
    fn on_iteration(
        &mut self,
        record: &IterationRecord,
        checkpoint: &GmmCheckpoint,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.metrics.push(record);
        self.totals = (checkpoint.seconds, checkpoint.total_iterations);
        let change = record
            .change
            .map_or("-".to_string(), |c| format!("{c:.3e}"));
        if self.progress.is_drawn() {
            self.progress.update(
                (record.restart * self.max_iter + record.iteration) as u64,
                format!(
                    "init {} log-likelihood {:.6} change {change}",
                    record.restart, record.log_likelihood
                ),
            );
        } else {
            tracing::info!(
                "init {} iteration {:>4}: log-likelihood {:.8} change {change} ({:.3} s)",
                record.restart,
                record.iteration,
                record.log_likelihood,
                record.seconds
            );
        }
        self.since_checkpoint += 1;
        self.this_session += 1;
        let restart_done = checkpoint.converged || checkpoint.iteration == self.max_iter;
        let stop = self.stop_after.is_some_and(|s| self.this_session >= s);
        if self.since_checkpoint >= self.every || restart_done || stop {
            // Metrics first: on resume they are cut back to what the checkpoint covers.
            self.metrics.flush()?;
            self.run.write_json(CHECKPOINT_FILE, checkpoint)?;
            self.since_checkpoint = 0;
        }
        if stop {
            return Err(Box::new(StopRequested(self.this_session)));
        }
        Ok(())
    }
}

pub fn train(target: &TrainTarget, force: bool, stop_after: Option<usize>) -> CliResult<()> {
    let (loaded, run, resume) = (&target.loaded, &target.run, target.resume);
    let params = loaded.gmm_params();
    let valid: GmmValidParams = params
        .check()
        .map_err(|e| loaded.invalid(e.within("gmm")))?;
    let data = loaded.config.data.load()?;
    valid
        .check_data(&data)
        .map_err(|e| em_error(loaded, Some(&data), e))?;
    let (compute, backend) = compute(loaded, None)?;
    target.prepare(force)?;
    if already_complete(run, MODEL_FILE, resume) {
        return Ok(());
    }
    let checkpoint: Option<GmmCheckpoint> = match read_checkpoint(run, CHECKPOINT_FILE, resume)? {
        Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
            CliError::user(format!(
                "{}: not a Gaussian-mixture checkpoint: {e}",
                run.path(CHECKPOINT_FILE).display()
            ))
        })?),
        None => None,
    };
    let totals = checkpoint
        .as_ref()
        .map_or((0.0, 0), |c| (c.seconds, c.total_iterations));
    let kept = totals.1;
    let metrics = MetricsLog::resume(run.path(RunDir::METRICS), kept)?;
    let p = valid.params();
    tracing::info!(
        "fitting a {}-component {} Gaussian mixture to {} rows x {} features ({} labelled) from {} on {backend} ({})",
        p.n_components,
        p.covariance_type,
        data.n_rows(),
        data.n_cols(),
        data.n_labelled(),
        data.source.display(),
        compute.precision,
    );
    if kept > 0 {
        tracing::info!("resuming after {kept} iterations");
    }
    let mut observer = TrainObserver {
        run,
        metrics,
        every: loaded.config.run.checkpoint_every,
        since_checkpoint: 0,
        max_iter: p.max_iter,
        progress: Progress::new((p.max_iter * p.n_init) as u64, "iterations", true),
        stop_after,
        this_session: 0,
        totals,
    };
    let start = Instant::now();
    let model = match valid.fit_with(&data, &compute, &mut observer, checkpoint) {
        Ok(model) => model,
        Err(EmError::Observer(e)) if e.is::<StopRequested>() => {
            drop(observer.progress);
            tracing::info!(
                "{e}; continue with: emvae train --out {} --resume",
                run.root().display()
            );
            return Ok(());
        }
        Err(e) => return Err(em_error(loaded, Some(&data), e)),
    };
    let wall = start.elapsed().as_secs_f64();
    let mut warnings: Vec<String> = model
        .warnings(&data.x)
        .iter()
        .map(ToString::to_string)
        .collect();
    if !model.converged {
        warnings.push(format!(
            "the best initialisation did not converge in max_iter = {} iterations; increase gmm.max_iter or gmm.tol",
            p.max_iter
        ));
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    observer.metrics.flush()?;
    drop(observer.progress);
    let (em_seconds, iterations) = observer.totals;
    run.write_json(MODEL_FILE, &GaussianMixtureJson::from(&model))?;
    let score = model
        .score(&data.x, &compute)
        .map_err(|e| em_error(loaded, Some(&data), e))?;
    let (bic, aic) = model.criteria(score, data.n_rows());
    let summary = json!({
        "model": "gmm",
        "covariance_type": p.covariance_type,
        "n_components": p.n_components,
        "n_samples": data.n_rows(),
        "n_features": data.n_cols(),
        "n_labelled": data.n_labelled(),
        "log_likelihood": score,
        "lower_bound": model.lower_bound,
        "bic": bic,
        "aic": aic,
        "n_parameters": model.parameters.n_parameters(),
        "n_iter": model.n_iter,
        "converged": model.converged,
        "n_init": p.n_init,
        "best_restart": model.best_restart,
        "iterations_total": iterations,
        "seconds_per_iteration": if iterations == 0 { 0.0 } else { em_seconds / iterations as f64 },
        "seconds": wall,
        "backend": backend,
        "precision": compute.precision,
        "warnings": warnings,
    });
    run.write_json(RunDir::SUMMARY, &summary)?;
    tracing::info!(
        "done: log-likelihood {score:.6}, {} iterations, converged: {}; wrote {}",
        model.n_iter,
        model.converged,
        run.root().display()
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    Ok(())
}

fn load_model(run: &RunDir) -> CliResult<GaussianMixture> {
    let path = run.path(MODEL_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CliError::user(format!(
            "{}: cannot read the model ({e}); has the run finished?",
            path.display()
        ))
    })?;
    // What to do about a model file that is not what `train` wrote.
    let fix = format!(
        "restore the file, or retrain: emvae train --config {} --out {} --force",
        run.path(RunDir::CONFIG).display(),
        run.root().display()
    );
    let json: GaussianMixtureJson = serde_json::from_str(&text).map_err(|e| {
        CliError::user(format!(
            "{}: not a Gaussian-mixture model file: {e}; {fix}",
            path.display()
        ))
    })?;
    let model = GaussianMixture::try_from(json).map_err(|e| {
        CliError::user(format!(
            "{}: key `{}`: {}; {fix}",
            path.display(),
            e.key,
            e.message
        ))
    })?;
    // Valid values that are not what the run wrote (an edit) are refused too.
    run.verify(MODEL_FILE, text.as_bytes())
        .map_err(CliError::user)?;
    Ok(model)
}

/// The data of `eval` / `predict`: the run's data, or `--data`. Labels are optional (new rows are
/// usually unlabelled), and the run's `labels_path` belongs to the training rows, not to `--data`.
fn eval_data(loaded: &LoadedConfig, data_arg: Option<&std::path::Path>) -> CliResult<Dataset> {
    let mut config = loaded.config.data.clone();
    if let Some(given) = data_arg
        && let Some(labels) = config.labels_path.take()
    {
        tracing::info!(
            "{} holds labels of the training data, not of {}: evaluating unlabelled",
            labels.display(),
            given.display()
        );
    }
    Ok(config.load_optional_labels()?)
}

pub fn eval(args: &EvalArgs) -> CliResult<()> {
    let (loaded, run) = open_run_data(&args.run)?;
    let model = load_model(&run)?;
    let data = eval_data(&loaded, args.run.data.as_deref())?;
    let (compute, backend) = compute(&loaded, args.run.backend)?;
    let err = |e| em_error(&loaded, Some(&data), e);
    let score = model.score(&data.x, &compute).map_err(err)?;
    let (bic, aic) = model.criteria(score, data.n_rows());
    let mut report = json!({
        "data": data.source.display().to_string(),
        "n_samples": data.n_rows(),
        "log_likelihood": score,
        "bic": bic,
        "aic": aic,
        "backend": backend,
    });
    if let Some(labels) = &data.labels {
        let predicted = model.predict(&data.x, &compute).map_err(err)?;
        let (hits, total) = labels
            .iter()
            .zip(&predicted)
            .filter_map(|(l, p)| l.map(|l| (l == *p) as usize))
            .fold((0, 0), |(h, t), x| (h + x, t + 1));
        if total > 0 {
            report["labelled_rows"] = json!(total);
            report["labelled_accuracy"] = json!(hits as f64 / total as f64);
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    Ok(())
}

pub fn predict(args: &PredictArgs) -> CliResult<()> {
    let (loaded, run) = open_run_data(&args.run)?;
    let model = load_model(&run)?;
    let data = eval_data(&loaded, args.run.data.as_deref())?;
    let (compute, _) = compute(&loaded, args.run.backend)?;
    let proba = model
        .predict_proba(&data.x, &compute)
        .map_err(|e| em_error(&loaded, Some(&data), e))?;
    let k = model.n_components();
    let mut header = vec!["row".to_string(), "label".to_string()];
    header.extend((0..k).map(|j| format!("p{j}")));
    let mut out = RowWriter::new(args.out.format, &header);
    for (i, r) in proba.rows().enumerate() {
        let label = r
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(j, _)| j);
        out.row(
            json!({"row": i, "label": label, "responsibilities": r}),
            [i.to_string(), label.to_string()]
                .into_iter()
                .chain(r.iter().map(|&v| num(v))),
        );
    }
    out.finish(args.out.output.as_deref())
}

pub fn sample(args: &SampleArgs) -> CliResult<()> {
    let (loaded, run) = open_run(&args.run, None)?;
    let model = load_model(&run)?;
    let (x, comps) = model
        .sample(args.n_samples, args.seed)
        .map_err(|e| em_error(&loaded, None, e))?;
    let d = model.n_features();
    let mut header = vec!["component".to_string()];
    header.extend((0..d).map(|a| format!("x{a}")));
    let mut out = RowWriter::new(args.out.format, &header);
    for (row, c) in x.rows().zip(&comps) {
        out.row(
            json!({"component": c, "x": row}),
            std::iter::once(c.to_string()).chain(row.iter().map(|&v| num(v))),
        );
    }
    out.finish(args.out.output.as_deref())
}

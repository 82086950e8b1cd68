//! `emvae train` for every exact-EM model: one run-directory flow around [`emvae_em::driver::fit`].
//!
//! A model's command module loads and checks its data and hyper-parameters (before anything is written,
//! so a bad input leaves a previous run intact), then hands a [`Job`] to [`train`], which prepares the
//! run directory, resumes from `checkpoint.json`, logs every iteration to `metrics.jsonl` and the
//! console, checkpoints every `run.checkpoint_every` iterations, honours `--stop-after`, and writes the
//! model file and `summary.json`.

use std::time::Instant;

use emvae_core::run::{MetricsLog, RunDir};
use emvae_em::EmError;
use emvae_em::driver::{EmCheckpoint, EmObserver, IterationRecord};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{CliError, CliResult};
use crate::progress::Progress;
use crate::runs::{TrainTarget, already_complete, read_checkpoint};

pub const MODEL_FILE: &str = "model.json";
pub const CHECKPOINT_FILE: &str = "checkpoint.json";

/// The observer's signal that `--stop-after` was reached (the checkpoint is written).
#[derive(Debug)]
struct StopRequested(usize);

impl std::fmt::Display for StopRequested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped after {} iterations as asked", self.0)
    }
}

impl std::error::Error for StopRequested {}

/// Logs, records and checkpoints every iteration of a fit.
pub struct TrainObserver<'a> {
    run: &'a RunDir,
    metrics: MetricsLog,
    every: usize,
    since_checkpoint: usize,
    max_iter: usize,
    progress: Progress,
    stop_after: Option<usize>,
    this_session: usize,
    /// `(seconds, iterations, e_steps)` of EM over all sessions, as of the last iteration seen.
    totals: (f64, usize, usize),
}

impl TrainObserver<'_> {
    /// The run directory, for files a fit writes beside its checkpoints (a sweep's selection).
    pub fn run(&self) -> &RunDir {
        self.run
    }
}

impl<S: Serialize> EmObserver<S> for TrainObserver<'_> {
    fn on_iteration(
        &mut self,
        record: &IterationRecord,
        checkpoint: &EmCheckpoint<S>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.metrics.push(record);
        self.totals = (
            checkpoint.seconds,
            checkpoint.total_iterations,
            checkpoint.e_steps,
        );
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

/// What a finished fit leaves in the run directory.
pub struct Outcome {
    /// The model file's JSON.
    pub model: Value,
    /// The model's own summary figures (an object); the flow adds timings and warnings.
    pub summary: Value,
    pub warnings: Vec<String>,
    /// The final log line's figures.
    pub headline: String,
}

/// One model's fit, ready to run: everything checked.
pub struct Job<'a, S, M> {
    /// What is fitted to what, for the log.
    pub description: String,
    pub max_iter: usize,
    pub n_init: usize,
    /// Files the run needs beside the model (a vocabulary), written once the run directory is ready.
    pub files: Vec<(&'static str, Vec<u8>)>,
    /// Runs the fit with the flow's observer, from a checkpoint when resuming.
    #[allow(clippy::type_complexity)]
    pub fit:
        Box<dyn FnOnce(&mut TrainObserver<'_>, Option<EmCheckpoint<S>>) -> Result<M, EmError> + 'a>,
    /// Turns a model error into a message.
    pub error: &'a dyn Fn(EmError) -> CliError,
    /// The model file, summary and warnings of the fitted model.
    #[allow(clippy::type_complexity)]
    pub finish: Box<dyn FnOnce(&M) -> CliResult<Outcome> + 'a>,
}

/// Trains `job` into `target`'s run directory.
pub fn train<S: Serialize + DeserializeOwned, M>(
    target: &TrainTarget,
    force: bool,
    stop_after: Option<usize>,
    job: Job<'_, S, M>,
) -> CliResult<()> {
    let (loaded, run, resume) = (&target.loaded, &target.run, target.resume);
    target.prepare(force)?;
    if already_complete(run, MODEL_FILE, resume) {
        return Ok(());
    }
    for (name, bytes) in &job.files {
        run.write(name, bytes)?;
    }
    let checkpoint: Option<EmCheckpoint<S>> = match read_checkpoint(run, CHECKPOINT_FILE, resume)? {
        Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
            CliError::user(format!(
                "{}: not a checkpoint of a {} model: {e}",
                run.path(CHECKPOINT_FILE).display(),
                loaded.config.model.name()
            ))
        })?),
        None => None,
    };
    let totals = checkpoint
        .as_ref()
        .map_or((0.0, 0, 0), |c| (c.seconds, c.total_iterations, c.e_steps));
    let kept = totals.1;
    let metrics = MetricsLog::resume(run.path(RunDir::METRICS), kept)?;
    tracing::info!("{}", job.description);
    if kept > 0 {
        tracing::info!("resuming after {kept} iterations");
    }
    let mut observer = TrainObserver {
        run,
        metrics,
        every: loaded.config.run.checkpoint_every,
        since_checkpoint: 0,
        max_iter: job.max_iter,
        progress: Progress::new((job.max_iter * job.n_init) as u64, "iterations", true),
        stop_after,
        this_session: 0,
        totals,
    };
    let start = Instant::now();
    let model = match (job.fit)(&mut observer, checkpoint) {
        Ok(model) => model,
        Err(EmError::Observer(e)) if e.is::<StopRequested>() => {
            drop(observer.progress);
            tracing::info!(
                "{e}; continue with: emvae train --out {} --resume",
                run.root().display()
            );
            return Ok(());
        }
        Err(e) => return Err((job.error)(e)),
    };
    let wall = start.elapsed().as_secs_f64();
    let outcome = (job.finish)(&model)?;
    for w in &outcome.warnings {
        tracing::warn!("{w}");
    }
    observer.metrics.flush()?;
    drop(observer.progress);
    let (em_seconds, iterations, e_steps) = observer.totals;
    run.write_json(MODEL_FILE, &outcome.model)?;
    let mut summary = outcome.summary;
    if let Value::Object(map) = &mut summary {
        map.insert("iterations_total".into(), iterations.into());
        if e_steps > iterations {
            map.insert("e_steps_total".into(), e_steps.into());
        }
        let per = if iterations == 0 {
            0.0
        } else {
            em_seconds / iterations as f64
        };
        map.insert("seconds_per_iteration".into(), per.into());
        map.insert("seconds".into(), wall.into());
        map.insert("warnings".into(), outcome.warnings.clone().into());
    }
    run.write_json(RunDir::SUMMARY, &summary)?;
    tracing::info!("done: {}; wrote {}", outcome.headline, run.root().display());
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    Ok(())
}

/// Reads the run's model file: JSON of `J`, validated into `M` (errors name the key), and checked
/// against the checksum the run recorded (a valid edit is refused too).
pub fn load_model<J, M>(run: &RunDir, what: &str) -> CliResult<M>
where
    J: DeserializeOwned,
    M: TryFrom<J, Error = emvae_core::config::InvalidParam>,
{
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
    let json: J = serde_json::from_str(&text).map_err(|e| {
        CliError::user(format!(
            "{}: not a {what} model file: {e}; {fix}",
            path.display()
        ))
    })?;
    let model = M::try_from(json).map_err(|e| {
        CliError::user(format!(
            "{}: key `{}`: {}; {fix}",
            path.display(),
            e.key,
            e.message
        ))
    })?;
    run.verify(MODEL_FILE, text.as_bytes())
        .map_err(CliError::user)?;
    Ok(model)
}

/// The warning of a fit whose best restart did not converge; `key` is the model's config table.
pub fn warn_unconverged(converged: bool, max_iter: usize, key: &str) -> Vec<String> {
    if converged {
        Vec::new()
    } else {
        vec![format!(
            "the best initialisation did not converge in max_iter = {max_iter} iterations; increase \
             {key}.max_iter or {key}.tol"
        )]
    }
}

/// The rows of `eval` / `predict` / `encode`: the run's data or `--data`, read with the run's options;
/// labels optional, and the run's `labels_path` (which belongs to the training rows) not applied.
pub fn rows(loaded: &crate::runconfig::LoadedConfig) -> CliResult<emvae_core::data::Dataset> {
    let mut config = loaded.config.data.clone();
    config.labels_path = None;
    Ok(config.load_optional_labels()?)
}

/// `predict`'s rows: the most probable component and the posterior over components of every row.
pub fn write_responsibilities(
    proba: &emvae_core::data::Matrix,
    out: &crate::args::OutputArgs,
) -> CliResult<()> {
    use crate::output::{RowWriter, num};
    let k = proba.n_cols;
    let mut header = vec!["row".to_string(), "label".to_string()];
    header.extend((0..k).map(|j| format!("p{j}")));
    let mut writer = RowWriter::new(out.format, &header);
    for (i, r) in proba.rows().enumerate() {
        let label = r
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(j, _)| j);
        writer.row(
            serde_json::json!({"row": i, "label": label, "responsibilities": r}),
            [i.to_string(), label.to_string()]
                .into_iter()
                .chain(r.iter().map(|&v| num(v))),
        );
    }
    writer.finish(out.output.as_deref())
}

/// The latent side of drawn rows.
pub enum Drawn<'a> {
    /// The component of each row.
    Component(&'a [usize]),
    /// The continuous latent vector of each row (`[n, q]`).
    Z(&'a emvae_core::data::Matrix),
}

/// `sample`'s rows: each draw with the latent value it came from.
pub fn write_draws(
    x: &emvae_core::data::Matrix,
    latent: Drawn<'_>,
    out: &crate::args::OutputArgs,
) -> CliResult<()> {
    use crate::output::{RowWriter, num};
    let mut header = match latent {
        Drawn::Component(_) => vec!["component".to_string()],
        Drawn::Z(z) => (0..z.n_cols).map(|j| format!("z{j}")).collect(),
    };
    header.extend((0..x.n_cols).map(|a| format!("x{a}")));
    let mut writer = RowWriter::new(out.format, &header);
    for (i, row) in x.rows().enumerate() {
        let (object, cells): (Value, Vec<String>) = match latent {
            Drawn::Component(c) => (
                serde_json::json!({"component": c[i], "x": row}),
                vec![c[i].to_string()],
            ),
            Drawn::Z(z) => (
                serde_json::json!({"z": z.row(i), "x": row}),
                z.row(i).iter().map(|&v| num(v)).collect(),
            ),
        };
        writer.row(object, cells.into_iter().chain(row.iter().map(|&v| num(v))));
    }
    writer.finish(out.output.as_deref())
}

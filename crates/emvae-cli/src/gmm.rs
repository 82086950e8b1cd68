//! `emvae` commands for Gaussian mixtures.

use emvae_core::data::Dataset;
use emvae_core::run::RunDir;
use emvae_core::tensor::Compute;
use emvae_em::EmError;
use emvae_em::driver;
use emvae_em::gmm::{
    EmObserver, GaussianMixture, GaussianMixtureJson, GmmCheckpoint, GmmValidParams,
    IterationRecord, Selection,
};
use serde_json::json;

use crate::args::{EvalArgs, PredictArgs, SampleArgs};
use crate::error::{CliError, CliResult};
use crate::exact::{self, CHECKPOINT_FILE, Job, Outcome, TrainObserver};
use crate::output::{RowWriter, num};
use crate::runconfig::LoadedConfig;
use crate::runs::{TrainTarget, open_run, open_run_data};

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

pub(crate) fn compute(
    loaded: &LoadedConfig,
    backend: Option<crate::backend::Backend>,
) -> CliResult<(Compute, String)> {
    let backend = backend.unwrap_or(loaded.backend());
    let compute = backend.compute(loaded.precision())?;
    Ok((compute, backend.name().to_string()))
}

/// The Gaussian mixture's observer is the flow's.
impl EmObserver for TrainObserver<'_> {
    fn on_iteration(
        &mut self,
        record: &IterationRecord,
        checkpoint: &GmmCheckpoint,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        driver::EmObserver::on_iteration(self, record, checkpoint)
    }
}

/// The run file of a `[gmm.select]` sweep's fitted candidates, written before the winner is refitted so
/// that a resumed run skips the sweep.
pub const SELECTION_FILE: &str = "selection.json";

/// Runs a `[gmm.select]` sweep, or reads the one a previous session of this run wrote (when resuming),
/// and returns it with the winner's parameters.
fn sweep<'v>(
    valid: &'v GmmValidParams,
    data: &Dataset,
    compute: &Compute,
    observer: &TrainObserver<'_>,
    resuming: bool,
) -> Result<(Selection, &'v GmmValidParams), EmError> {
    let run = observer.run();
    let earlier = resuming
        .then(|| std::fs::read(run.path(SELECTION_FILE)).ok())
        .flatten()
        .and_then(|bytes| serde_json::from_slice::<Selection>(&bytes).ok())
        .filter(|s| valid.selected(s).is_ok());
    let selection = match earlier {
        Some(s) => {
            tracing::info!("the sweep's selection read from {SELECTION_FILE}");
            s
        }
        None => {
            let s = valid.select(data, compute, &mut |c| {
                tracing::info!(
                    "k = {:>2}, {:<9}: log-likelihood {:.6}, BIC {:.2}, AIC {:.2} ({} iterations)",
                    c.n_components,
                    c.covariance_type.name(),
                    c.log_likelihood,
                    c.bic,
                    c.aic,
                    c.n_iter
                );
            })?;
            run.write_json(SELECTION_FILE, &s)
                .map_err(|e| EmError::Observer(Box::new(e)))?;
            s
        }
    };
    let best = selection.best();
    tracing::info!(
        "{} selects {} components ({}); refitting it",
        selection.criterion.name(),
        best.n_components,
        best.covariance_type
    );
    let winner = valid.selected(&selection)?;
    Ok((selection, winner))
}

pub fn train(target: &TrainTarget, force: bool, stop_after: Option<usize>) -> CliResult<()> {
    let loaded = &target.loaded;
    let params = loaded.gmm_params();
    let valid: GmmValidParams = params
        .check()
        .map_err(|e| loaded.invalid(e.within("gmm")))?;
    if valid.params().online.is_some() {
        let error = |e| em_error(loaded, None, e);
        return crate::gmm_online::train(target, &valid, force, stop_after, &error);
    }
    let data = loaded.config.data.load()?;
    valid
        .check_data(&data)
        .map_err(|e| em_error(loaded, Some(&data), e))?;
    let (compute, backend) = compute(loaded, None)?;
    let p = valid.params();
    let what = match &p.select {
        None => format!(
            "fitting a {}-component {} Gaussian mixture to",
            p.n_components, p.covariance_type
        ),
        Some(s) => format!(
            "selecting by {} among {:?} components ({}) a Gaussian mixture for",
            s.criterion.name(),
            s.n_components,
            s.covariance_types_or(p.covariance_type)
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let description = format!(
        "{what} {} rows x {} features ({} labelled) from {} on {backend} ({})",
        data.n_rows(),
        data.n_cols(),
        data.n_labelled(),
        data.source.display(),
        compute.precision,
    );
    let error = |e| em_error(loaded, Some(&data), e);
    let selection = std::cell::RefCell::new(None);
    let job = Job {
        description,
        max_iter: p.max_iter,
        n_init: p.n_init,
        files: Vec::new(),
        fit: Box::new(|observer, resume| {
            if valid.selection_criterion().is_none() {
                return valid.fit_with(&data, &compute, observer, resume);
            }
            let (s, winner) = sweep(&valid, &data, &compute, observer, resume.is_some())?;
            selection.replace(Some(s));
            winner.fit_with(&data, &compute, observer, resume)
        }),
        error: &error,
        finish: Box::new(|model: &GaussianMixture| {
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
            let score = model.score(&data.x, &compute).map_err(&error)?;
            let (bic, aic) = model.criteria(score, data.n_rows());
            let covariance_type = model.parameters.covariance_type;
            let mut summary = json!({
                    "model": "gmm",
                    "covariance_type": covariance_type,
                    "n_components": model.n_components(),
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
                    "backend": backend,
                    "precision": compute.precision,
            });
            let mut headline = format!(
                "log-likelihood {score:.6}, {} iterations, converged: {}",
                model.n_iter, model.converged
            );
            if let Some(s) = selection.take() {
                headline = format!(
                    "{} selected {} components ({}); {headline}",
                    s.criterion.name(),
                    model.n_components(),
                    covariance_type
                );
                summary["selection"] = serde_json::to_value(&s).map_err(|e| {
                    CliError::runtime(format!("cannot serialise the selection: {e}"))
                })?;
            }
            Ok(Outcome {
                model: serde_json::to_value(GaussianMixtureJson::from(model))
                    .map_err(|e| CliError::runtime(format!("cannot serialise the model: {e}")))?,
                summary,
                warnings,
                headline,
            })
        }),
    };
    exact::train(target, force, stop_after, job)
}

fn load_model(run: &RunDir) -> CliResult<GaussianMixture> {
    exact::load_model::<GaussianMixtureJson, _>(run, "Gaussian-mixture")
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

/// What `emvae plot` draws of a Gaussian-mixture run: the training rows (at most 5,000, evenly spaced),
/// each row's most probable component and every component's mean and full covariance.
pub(crate) struct MixtureView {
    pub x: emvae_core::data::Matrix,
    pub assigned: Vec<usize>,
    pub means: Vec<Vec<f64>>,
    /// Row-major `d x d` each (diagonal, spherical and tied covariances expanded).
    pub covariances: Vec<Vec<f64>>,
}

pub(crate) fn view(dir: &std::path::Path) -> CliResult<MixtureView> {
    const ROWS: usize = 5000;
    let (loaded, run) = open_run(dir, None)?;
    let model = load_model(&run)?;
    let data = eval_data(&loaded, None)?;
    let (n, d) = (data.n_rows(), data.n_cols());
    let step = n.div_ceil(ROWS).max(1);
    let values: Vec<f64> = (0..n)
        .step_by(step)
        .flat_map(|i| data.x.row(i).to_vec())
        .collect();
    let x = emvae_core::data::Matrix::new(values.len() / d.max(1), d, values);
    let (compute, _) = compute(&loaded, None)?;
    let assigned = model
        .predict(&x, &compute)
        .map_err(|e| em_error(&loaded, Some(&data), e))?;
    let k = model.n_components();
    Ok(MixtureView {
        x,
        assigned,
        means: (0..k).map(|j| model.parameters.mean(j).to_vec()).collect(),
        covariances: (0..k)
            .map(|j| model.parameters.covariance_matrix(j))
            .collect(),
    })
}

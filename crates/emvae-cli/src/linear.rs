//! `emvae` commands for probabilistic PCA and factor analysis (`x = W z + mu + eps`): `train` by EM (or
//! SQUAREM), `eval`, `sample` (with the z each row came from) and `encode` (the exact posterior of z).

use emvae_em::linear::{LinearGaussian, LinearGaussianJson};
use serde_json::json;

use crate::args::{EncodeArgs, EvalArgs, SampleArgs};
use crate::error::{CliError, CliResult};
use crate::exact::{self, Drawn, Job, Outcome, load_model, rows};
use crate::mixtures::em_error;
use crate::output::{RowWriter, num};
use crate::runconfig::LoadedConfig;
use crate::runs::{TrainTarget, open_run, open_run_data};

fn what(loaded: &LoadedConfig) -> &'static str {
    match loaded.config.model {
        crate::runconfig::ModelKind::Fa => "factor-analysis",
        _ => "probabilistic-PCA",
    }
}

pub fn train(target: &TrainTarget, force: bool, stop_after: Option<usize>) -> CliResult<()> {
    let loaded = &target.loaded;
    let key = loaded.config.model.name();
    let valid = loaded
        .linear_params()
        .check()
        .map_err(|e| loaded.invalid(e.within(key)))?;
    let data = loaded.config.data.load()?;
    let error = |e| em_error(loaded, e);
    valid.check_data(&data).map_err(error)?;
    let p = valid.params().clone();
    let job = Job {
        description: format!(
            "fitting {} with {} latent dimensions to {} rows x {} features from {} (acceleration: {:?})",
            if key == "fa" {
                "factor analysis"
            } else {
                "probabilistic PCA"
            },
            p.n_components,
            data.n_rows(),
            data.n_cols(),
            data.source.display(),
            p.acceleration
        ),
        max_iter: p.max_iter,
        n_init: p.n_init,
        files: Vec::new(),
        fit: Box::new(|observer, resume| valid.fit_with(&data, observer, resume)),
        error: &error,
        finish: Box::new(|model: &LinearGaussian| {
            let score = model.score(&data.x).map_err(error)?;
            let (bic, aic) = model.criteria(score, data.n_rows());
            let warnings = exact::warn_unconverged(model.converged, p.max_iter, key)
                .into_iter()
                .map(|w| format!("{w}, or set {key}.acceleration = \"squarem\""))
                .collect();
            Ok(Outcome {
                model: serde_json::to_value(LinearGaussianJson::from(model))
                    .map_err(|e| CliError::runtime(format!("cannot serialise the model: {e}")))?,
                summary: json!({
                    "model": key,
                    "n_components": p.n_components,
                    "n_samples": data.n_rows(),
                    "n_features": data.n_cols(),
                    "log_likelihood": score,
                    "lower_bound": model.lower_bound,
                    "noise_variance": model.parameters.noise_variances,
                    "bic": bic,
                    "aic": aic,
                    "n_parameters": model.n_parameters(),
                    "n_iter": model.n_iter,
                    "e_steps": model.e_steps,
                    "acceleration": p.acceleration,
                    "converged": model.converged,
                    "best_restart": model.best_restart,
                }),
                warnings,
                headline: format!(
                    "log-likelihood {score:.8}, {} iterations ({} E-steps), converged: {}",
                    model.n_iter, model.e_steps, model.converged
                ),
            })
        }),
    };
    exact::train(target, force, stop_after, job)
}

pub fn eval(args: &EvalArgs) -> CliResult<()> {
    let (loaded, run) = open_run_data(&args.run)?;
    let model: LinearGaussian = load_model::<LinearGaussianJson, _>(&run, what(&loaded))?;
    let data = rows(&loaded)?;
    let score = model.score(&data.x).map_err(|e| em_error(&loaded, e))?;
    let (bic, aic) = model.criteria(score, data.n_rows());
    let report = json!({
        "data": data.source.display().to_string(),
        "n_samples": data.n_rows(),
        "log_likelihood": score,
        "bic": bic,
        "aic": aic,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    Ok(())
}

pub fn sample(args: &SampleArgs) -> CliResult<()> {
    let (loaded, run) = open_run(&args.run, None)?;
    let model: LinearGaussian = load_model::<LinearGaussianJson, _>(&run, what(&loaded))?;
    let (x, z) = model.sample(args.n_samples, args.seed);
    exact::write_draws(&x, Drawn::Z(&z), &args.out)
}

/// The exact posterior `z | x ~ N(m, C)` of every row: its mean and (the same for every row) the
/// diagonal of its covariance, as log-variances like a VAE's encoder.
pub fn encode(args: &EncodeArgs) -> CliResult<()> {
    let (loaded, run) = open_run_data(&args.run)?;
    let model: LinearGaussian = load_model::<LinearGaussianJson, _>(&run, what(&loaded))?;
    let data = rows(&loaded)?;
    let posterior = model.posterior(&data.x).map_err(|e| em_error(&loaded, e))?;
    let q = posterior.means.n_cols;
    let log_var: Vec<f64> = (0..q)
        .map(|j| posterior.covariance[j * q + j].ln())
        .collect();
    let mut header = vec!["row".to_string()];
    header.extend((0..q).map(|j| format!("z{j}")));
    header.extend((0..q).map(|j| format!("log_var{j}")));
    let mut out = RowWriter::new(args.out.format, &header);
    for (i, m) in posterior.means.rows().enumerate() {
        out.row(
            json!({"row": i, "z": m, "log_var": log_var}),
            std::iter::once(i.to_string()).chain(m.iter().chain(&log_var).map(|&x| num(x))),
        );
    }
    out.finish(args.out.output.as_deref())
}

/// The posterior means of the factors of the run's rows, row-major `[n, q]`, and `q` (for `emvae plot`).
pub(crate) fn posterior_means(dir: &std::path::Path) -> CliResult<(Vec<f64>, usize)> {
    let (loaded, run) = open_run(dir, None)?;
    let model: LinearGaussian = load_model::<LinearGaussianJson, _>(&run, what(&loaded))?;
    let data = rows(&loaded)?;
    let posterior = model.posterior(&data.x).map_err(|e| em_error(&loaded, e))?;
    Ok((posterior.means.values, posterior.means.n_cols))
}

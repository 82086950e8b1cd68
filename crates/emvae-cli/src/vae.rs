//! `emvae` commands for variational autoencoders.

use burn::tensor::Device;
use emvae_core::data::{Binarize, Dataset, Matrix};
use emvae_core::run::{MetricsLog, RunDir};
use emvae_vae::data::{Binarization, VaeData};
use emvae_vae::diagnostics::{DiagnoseOptions, amortization_gap, diagnose};
use emvae_vae::inference::{PosteriorSource, decode, held_out_posteriors, sample_prior};
use emvae_vae::train::{
    AmortizedTrainer, EpochRecord, Outcome, TrainObserver, TrainState, Trainer, load_model,
};
use emvae_vae::{AmortizedModel, ModelConfig};
use emvae_vae::{Vae, VaeConfig, VaeError};
use serde_json::json;

use crate::args::{DecodeArgs, EncodeArgs, EvalArgs, SampleArgs};
use crate::backend::Backend;
use crate::error::{CliError, CliResult};
use crate::output::{RowWriter, num};
use crate::progress::Progress;
use crate::runconfig::{LoadedConfig, RunSettings};
use crate::runs::{TrainTarget, already_complete, open_run, open_run_data, read_checkpoint};

pub const CHECKPOINT_FILE: &str = "checkpoint.bin";
pub const MODEL_FILE: &str = "model.bpk";
/// The model at its best held-out evaluation (lowest held-out loss).
pub const BEST_MODEL_FILE: &str = "model_best.bpk";

/// Which of a run's saved models a command uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModelFile {
    /// `model.bpk`: the model when training finished.
    Last,
    /// `model_best.bpk`: the model of the best held-out evaluation.
    Best,
    /// `model_epoch<N>.bpk`: the model after epoch N (`run.keep_epochs`).
    Epoch(u64),
}

impl ModelFile {
    /// The `--best` and `--epoch` flags of a command (clap makes them exclusive).
    pub fn chosen(best: bool, epoch: Option<u64>) -> Self {
        match (epoch, best) {
            (Some(n), _) => Self::Epoch(n),
            (None, true) => Self::Best,
            (None, false) => Self::Last,
        }
    }

    pub fn name(self) -> String {
        match self {
            Self::Last => MODEL_FILE.to_string(),
            Self::Best => BEST_MODEL_FILE.to_string(),
            Self::Epoch(n) => format!("model_epoch{n}.bpk"),
        }
    }
}

fn vae_error(loaded: &LoadedConfig, e: VaeError) -> CliError {
    amortized_error(loaded, "vae", e)
}

/// An error of the amortized machinery as the CLI reports it; config keys are located under `table`.
pub(crate) fn amortized_error(loaded: &LoadedConfig, table: &str, e: VaeError) -> CliError {
    match e {
        VaeError::InvalidParam(p) => loaded.invalid(p.within(table)),
        VaeError::Data(d) => d.into(),
        VaeError::Checkpoint(m) => CliError::user(format!("checkpoint: {m}")),
        VaeError::Diverged(m) => CliError::user(m),
        VaeError::Observer(inner) => CliError::runtime(inner),
    }
}

fn binarization(loaded: &LoadedConfig) -> Binarization {
    match &loaded.config.data.binarize {
        Some(Binarize {
            stochastic: true,
            seed,
            ..
        }) => Binarization::Stochastic {
            seed: seed.unwrap_or(loaded.config.seed),
        },
        _ => Binarization::None,
    }
}

/// The training and held-out data of a run.
fn load_data(loaded: &LoadedConfig) -> CliResult<(Dataset, VaeData, Option<VaeData>)> {
    let (train, test) = loaded.config.data.load_split()?;
    let b = binarization(loaded);
    let train_data = VaeData::new(&train.x, b);
    let test_data = test.as_ref().map(|t| VaeData::new(&t.x, b));
    Ok((train, train_data, test_data))
}

/// The autodiff device of `backend`, else of the config's backend, and which backend that is.
pub(crate) fn device(
    loaded: &LoadedConfig,
    backend: Option<Backend>,
) -> CliResult<(Device, Backend)> {
    let backend = backend.unwrap_or(loaded.backend());
    Ok((backend.device()?.autodiff(), backend))
}

/// Writes metrics, checkpoints and the best model of any amortized run as it trains.
struct Observer<'a> {
    pub run: &'a RunDir,
    pub metrics: MetricsLog,
    pub every: usize,
    pub keep_epochs: &'a [u64],
    pub epochs_since: usize,
    pub progress: Progress,
}

impl<M: AmortizedModel> TrainObserver<M> for Observer<'_> {
    fn on_step(&mut self, state: &TrainState) {
        if self.progress.is_drawn() {
            let s = &state.sums;
            let loss = if s.rows > 0 {
                s.loss / s.rows as f64
            } else {
                0.0
            };
            self.progress.update(
                state.step,
                format!("epoch {} loss {loss:.3}", state.epoch + 1),
            );
        }
    }

    fn on_epoch(
        &mut self,
        record: &EpochRecord,
        trainer: &AmortizedTrainer<M>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.metrics.push(record);
        if record.best == Some(true) {
            self.run.write(BEST_MODEL_FILE, &trainer.model_bytes()?)?;
        }
        if self.keep_epochs.contains(&record.epoch) {
            let name = ModelFile::Epoch(record.epoch).name();
            self.run.write(&name, &trainer.model_bytes()?)?;
        }
        let held_out = record.eval.as_ref().map_or(String::new(), |d| {
            let iw = d.iw.map_or(String::new(), |w| {
                format!(" NLL(IW-{}) {:.3}", w.samples, w.nll)
            });
            format!(
                "; held-out ELBO {:.3} KL {:.3} active units {} MI {:.3}{iw}",
                d.elbo, d.kl, d.active_units, d.mutual_information
            )
        });
        tracing::info!(
            "epoch {:>4} step {:>7}: ELBO {:.3} (rec {:.3}, KL {:.3}, beta {:.3}, lr {:.2e}) {:.0} ex/s{}{held_out}",
            record.epoch,
            record.step,
            record.elbo,
            record.reconstruction,
            record.kl,
            record.beta,
            record.lr,
            record.examples_per_second,
            record
                .units_per_second
                .map_or(String::new(), |u| format!(" ({u:.0} tokens/s)"))
        );
        self.epochs_since += 1;
        if self.epochs_since >= self.every || trainer.state.finished {
            write_checkpoint(self.run, &self.metrics, trainer)?;
            self.epochs_since = 0;
        }
        Ok(())
    }
}

/// An error resuming from the run's checkpoint: a damaged or foreign checkpoint names its file; others go
/// through `error`.
pub(crate) fn resume_error(
    run: &RunDir,
    e: VaeError,
    error: &dyn Fn(VaeError) -> CliError,
) -> CliError {
    match e {
        VaeError::Checkpoint(m) => {
            CliError::user(format!("{}: {m}", run.path(CHECKPOINT_FILE).display()))
        }
        other => error(other),
    }
}

/// Trains in `run` until done or `stop_after` steps: metrics appended, checkpoints every
/// `settings.checkpoint_every` epochs (the best model at each improvement, the models of
/// `settings.keep_epochs`) through [`Observer`], a checkpoint at the end, and the trained model once
/// finished.
pub(crate) fn run_training<M: AmortizedModel>(
    trainer: &mut AmortizedTrainer<M>,
    run: &RunDir,
    settings: &RunSettings,
    stop_after: Option<usize>,
    error: &dyn Fn(VaeError) -> CliError,
) -> CliResult<Outcome> {
    let metrics = MetricsLog::resume(run.path(RunDir::METRICS), records_covered(&trainer.state))?;
    if trainer.state.step > 0 {
        tracing::info!(
            "resuming at step {} (epoch {})",
            trainer.state.step,
            trainer.state.epoch + 1
        );
    }
    let mut observer = Observer {
        run,
        metrics,
        every: settings.checkpoint_every,
        keep_epochs: &settings.keep_epochs,
        epochs_since: 0,
        progress: Progress::new(trainer.total_steps(), "steps", true),
    };
    observer.progress.update(trainer.state.step, String::new());
    let outcome = trainer
        .run(&mut observer, stop_after.map(|s| s as u64))
        .map_err(error)?;
    drop(observer.progress);
    write_checkpoint(run, &observer.metrics, trainer).map_err(CliError::runtime)?;
    if outcome == Outcome::Stopped {
        tracing::info!(
            "stopped after step {} as asked; continue with: emvae train --out {} --resume",
            trainer.state.step,
            run.root().display()
        );
    } else {
        run.write(MODEL_FILE, &trainer.model_bytes().map_err(error)?)?;
        tracing::info!(
            "final evaluation (IW-{} NLL)",
            trainer.config.eval().final_iw_samples
        );
    }
    Ok(outcome)
}

/// Metrics first, then the checkpoint: on resume the metrics are cut back to what it covers.
fn write_checkpoint<M: AmortizedModel>(
    run: &RunDir,
    metrics: &MetricsLog,
    trainer: &AmortizedTrainer<M>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    metrics.flush()?;
    let bytes = trainer.checkpoint_bytes()?;
    run.write(CHECKPOINT_FILE, &bytes)?;
    Ok(())
}

/// Epoch records a checkpoint's state covers.
fn records_covered(state: &TrainState) -> usize {
    state.epoch as usize + usize::from(state.finished && state.batch_in_epoch > 0)
}

pub fn train(target: &TrainTarget, force: bool, stop_after: Option<usize>) -> CliResult<()> {
    let (loaded, run, resume) = (&target.loaded, &target.run, target.resume);
    let config: VaeConfig = loaded.vae().clone();
    let (train_set, train, test) = load_data(loaded)?;
    let (device, backend) = device(loaded, None)?;
    let seed = loaded.config.seed;
    Trainer::check_data(&config, &train).map_err(|e| vae_error(loaded, e))?;
    if already_complete(run, MODEL_FILE, resume) {
        return Ok(());
    }
    let checkpoint = read_checkpoint(run, CHECKPOINT_FILE, resume)?;
    let mut trainer = match &checkpoint {
        Some(bytes) => Trainer::resume(config.clone(), seed, device.clone(), train, test, bytes)
            .map_err(|e| resume_error(run, e, &|e| vae_error(loaded, e)))?,
        None => Trainer::new(config.clone(), seed, device.clone(), train, test)
            .map_err(|e| vae_error(loaded, e))?,
    };
    trainer.eval_values = backend.eval_values();
    target.prepare(force)?;
    tracing::info!(
        "training a {} VAE ({} strategy, {:?} objective) on {} rows x {} columns from {} ({} held out) on {backend}; \
         {} steps of {} rows",
        config
            .encoder
            .sizes
            .iter()
            .chain(&config.decoder.sizes[1..])
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("-"),
        serde_json::to_value(config.estep.strategy)
            .unwrap_or_default()
            .as_str()
            .unwrap_or("?"),
        config.objective.kind,
        trainer.train.n,
        trainer.train.d,
        train_set.source.display(),
        trainer.test.as_ref().map_or(0, |t| t.n),
        trainer.total_steps(),
        config.train.batch_size
    );
    if run_training(&mut trainer, run, &loaded.config.run, stop_after, &|e| {
        vae_error(loaded, e)
    })? == Outcome::Stopped
    {
        return Ok(());
    }
    let (diag, gap) = trainer
        .final_diagnostics()
        .map_err(|e| vae_error(loaded, e))?;
    let s = &trainer.state;
    let summary = json!({
        "model": "vae",
        "architecture": {
            "encoder": config.encoder.sizes,
            "decoder": config.decoder.sizes,
            "likelihood": config.likelihood.kind,
            "prior": config.prior.kind,
        },
        "strategy": config.estep.strategy,
        "objective": config.objective.kind,
        "n_train": trainer.train.n,
        "n_test": trainer.test.as_ref().map(|t| t.n),
        "evaluated_on": if trainer.test.is_some() { "test" } else { "train" },
        "epochs": s.epoch + u64::from(s.batch_in_epoch > 0),
        "steps": s.step,
        "training_seconds": s.seconds,
        "examples_per_second": s.rows as f64 / s.seconds.max(1e-12),
        "elbo": diag.elbo,
        "reconstruction": diag.reconstruction,
        "kl": diag.kl,
        "kl_per_dim": diag.kl_per_dim,
        "active_units": diag.active_units,
        "mutual_information": diag.mutual_information,
        "iw_nll": diag.iw.map(|w| w.nll),
        "iw_samples": diag.iw.map(|w| w.samples),
        "iw_nll_std_err": diag.iw.map(|w| w.std_err),
        "amortization_gap": gap.map(|(enc, opt)| json!({"encoder_elbo": enc, "optimised_elbo": opt, "gap": opt - enc})),
        "backend": backend,
        "precision": "f32",
        "seed": seed,
    });
    run.write_json(RunDir::SUMMARY, &summary)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    Ok(())
}

/// The parameters of one of a run's saved models (`model.bpk`, `model_best.bpk` or an epoch's).
/// Returns the file's path and bytes.
pub(crate) fn read_model_bytes(
    run: &RunDir,
    which: ModelFile,
) -> CliResult<(std::path::PathBuf, Vec<u8>)> {
    let name = which.name();
    let path = run.path(&name);
    let dir = run.root().display();
    use emvae_core::run::ReadError;
    match run.read_verified(&name) {
        Ok(bytes) => Ok((path, bytes)),
        Err(ReadError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(CliError::user(match which {
                ModelFile::Best => {
                    format!("{dir} has no {name}: the run had no held-out evaluation yet")
                }
                ModelFile::Epoch(n) => format!(
                    "{dir} has no {name}: the run kept no model after epoch {n} (run.keep_epochs of its \
                     config.toml), or has not reached it"
                ),
                ModelFile::Last => format!(
                    "{dir} has no {name}: the run has not finished (resume it with emvae train --out {dir} --resume)"
                ),
            }))
        }
        Err(e) => Err(CliError::user(e)),
    }
}

/// A trained model of a run (see [`read_model_bytes`]).
fn load_trained(
    loaded: &LoadedConfig,
    run: &RunDir,
    device: &Device,
    which: ModelFile,
) -> CliResult<Vae> {
    let fresh = Vae::new(loaded.vae(), loaded.config.seed, device);
    let (path, bytes) = read_model_bytes(run, which)?;
    load_model(fresh, &bytes).map_err(|e| CliError::user(format!("{}: {e}", path.display())))
}

/// Data for a command on a finished run: `--data` (read with the run's options) or the held-out data
/// (else the training data).
fn command_data(loaded: &LoadedConfig, explicit: bool) -> CliResult<(VaeData, String)> {
    let b = binarization(loaded);
    let (set, name) = if explicit {
        // A file given on the command line is used whole.
        (loaded.config.data.load()?, "data")
    } else {
        match loaded.config.data.load_split()? {
            (_, Some(test)) => (test, "test"),
            (train, None) => (train, "train"),
        }
    };
    let data = VaeData::new(&set.x, b).fixed(0);
    let d = loaded.vae().data_dim();
    if data.d != d {
        return Err(CliError::user(format!(
            "data error: {}: {} columns, but the model takes {d}",
            set.source.display(),
            data.d
        )));
    }
    Ok((data, format!("{} ({name})", set.source.display())))
}

fn source_for(
    loaded: &LoadedConfig,
    model: &Vae,
    data: &VaeData,
    device: &Device,
) -> PosteriorSource {
    let config = loaded.vae();
    match config.estep.strategy {
        emvae_vae::config::Strategy::NonAmortized => {
            held_out_posteriors(model, config, data, loaded.config.seed, device)
        }
        _ => PosteriorSource::Encoder,
    }
}

pub fn eval(args: &EvalArgs) -> CliResult<()> {
    let (loaded, run) = open_run_data(&args.run)?;
    let (device, backend) = device(&loaded, args.run.backend)?;
    let model = load_trained(&loaded, &run, &device, args.which.file())?;
    let (data, name) = command_data(&loaded, args.run.data.is_some())?;
    let config = loaded.vae();
    let k = args.iw_samples.unwrap_or(config.eval.final_iw_samples);
    let source = source_for(&loaded, &model, &data, &device);
    let plain = device.clone().without_autodiff();
    let diag = diagnose(
        &burn::module::Module::valid(&model),
        &data,
        &source,
        &plain,
        DiagnoseOptions {
            elbo_samples: 1,
            iw_samples: Some(k),
            seed: loaded.config.seed,
            values_per_evaluation: backend.eval_values(),
            ..Default::default()
        },
    );
    let gap = (args.amortization_gap || config.eval.amortization_gap).then(|| {
        amortization_gap(
            &model,
            &data,
            config.eval.gap_steps,
            config.eval.gap_lr,
            config.objective.samples.max(10),
            loaded.config.seed,
            backend.eval_values(),
            &device,
        )
    });
    let mut report = serde_json::to_value(&diag).unwrap_or_default();
    report["data"] = json!(name);
    report["model_file"] = json!(args.which.file().name());
    report["backend"] = json!(backend);
    if let Some((enc, opt)) = gap {
        report["amortization_gap"] =
            json!({"encoder_elbo": enc, "optimised_elbo": opt, "gap": opt - enc});
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    Ok(())
}

/// A finished run's model, the rows a command works on (`--data`, else the held-out or training rows)
/// and their posteriors (`mean`, `log_var`, row-major `[n, latent]`).
struct Encoded {
    model: Vae,
    device: Device,
    data: VaeData,
    latent: usize,
    mean: Vec<f64>,
    log_var: Vec<f64>,
}

fn encode_rows(args: &crate::args::RunDataArgs, which: ModelFile) -> CliResult<Encoded> {
    let (loaded, run) = open_run_data(args)?;
    let (device, _) = device(&loaded, args.backend)?;
    let model = load_trained(&loaded, &run, &device, which)?;
    let (data, _) = command_data(&loaded, args.data.is_some())?;
    let source = source_for(&loaded, &model, &data, &device);
    let (mean, log_var) = emvae_vae::diagnostics::encode_all(&model, &data, &source, &device);
    Ok(Encoded {
        model,
        device,
        data,
        latent: loaded.vae().latent_dim(),
        mean,
        log_var,
    })
}

pub fn encode(args: &EncodeArgs) -> CliResult<()> {
    let e = encode_rows(&args.run, args.which.file())?;
    let l = e.latent;
    let mut header = vec!["row".to_string()];
    header.extend((0..l).map(|j| format!("z{j}")));
    header.extend((0..l).map(|j| format!("log_var{j}")));
    let mut out = RowWriter::new(args.out.format, &header);
    for i in 0..e.data.n {
        let (m, v) = (&e.mean[i * l..(i + 1) * l], &e.log_var[i * l..(i + 1) * l]);
        out.row(
            json!({"row": i, "z": m, "log_var": v}),
            std::iter::once(i.to_string()).chain(m.iter().chain(v).map(|&x| num(x))),
        );
    }
    out.finish(args.out.output.as_deref())
}

fn write_decoded(
    rows: impl Iterator<Item = (usize, Vec<f64>, Vec<f64>)>,
    l: usize,
    d: usize,
    args_format: crate::args::OutputFormat,
    output: Option<&std::path::Path>,
) -> CliResult<()> {
    let mut header = vec!["row".to_string()];
    header.extend((0..l).map(|j| format!("z{j}")));
    header.extend((0..d).map(|j| format!("x{j}")));
    let mut out = RowWriter::new(args_format, &header);
    for (i, z, x) in rows {
        out.row(
            json!({"row": i, "z": z, "x": x}),
            std::iter::once(i.to_string()).chain(z.iter().chain(&x).map(|&v| num(v))),
        );
    }
    out.finish(output)
}

pub fn decode_cmd(args: &DecodeArgs) -> CliResult<()> {
    let (loaded, run) = open_run(&args.run, None)?;
    let (device, _) = device(&loaded, args.backend)?;
    let model = load_trained(&loaded, &run, &device, args.which.file())?;
    let l = loaded.vae().latent_dim();
    let z = emvae_core::data::load(&args.z, emvae_core::data::Format::Auto, &Default::default())?;
    if z.n_cols() != l {
        return Err(CliError::user(format!(
            "data error: {}: {} columns, but the latent space has {l} dimensions",
            args.z.display(),
            z.n_cols()
        )));
    }
    let x = decode(&model, &z.x, &device);
    write_decoded(
        (0..z.n_rows()).map(|i| (i, z.x.row(i).to_vec(), x.row(i).to_vec())),
        l,
        x.n_cols,
        args.out.format,
        args.out.output.as_deref(),
    )
}

pub fn reconstruct(args: &EncodeArgs) -> CliResult<()> {
    let e = encode_rows(&args.run, args.which.file())?;
    let z = Matrix::new(e.data.n, e.latent, e.mean);
    let x = decode(&e.model, &z, &e.device);
    write_decoded(
        (0..z.n_rows).map(|i| (i, z.row(i).to_vec(), x.row(i).to_vec())),
        e.latent,
        x.n_cols,
        args.out.format,
        args.out.output.as_deref(),
    )
}

pub fn sample(args: &SampleArgs) -> CliResult<()> {
    let (loaded, run) = open_run(&args.run, None)?;
    let (device, _) = device(&loaded, None)?;
    let model = load_trained(&loaded, &run, &device, args.which.file())?;
    let z = sample_prior(&model.prior, args.n_samples, args.seed, &device);
    let l = loaded.vae().latent_dim();
    let z = Matrix::new(args.n_samples, l, emvae_core::tensor::tensor_to_vec(z));
    let x = decode(&model, &z, &device);
    write_decoded(
        (0..z.n_rows).map(|i| (i, z.row(i).to_vec(), x.row(i).to_vec())),
        l,
        x.n_cols,
        args.out.format,
        args.out.output.as_deref(),
    )
}

/// What `emvae plot` draws of a finished VAE run: posterior means of the held-out rows (else the
/// training rows) with their labels, samples from the prior, a few inputs with their reconstructions
/// and a few decoded prior samples (the likelihood's means).
pub(crate) struct VaeView {
    pub latent: usize,
    /// `"held-out"` or `"training"`.
    pub split: &'static str,
    /// Row-major `[n, latent]`.
    pub means: Vec<f64>,
    pub labels: Option<Vec<Option<usize>>>,
    /// Names of the labels' values, where known (else "label j").
    pub label_names: Option<Vec<String>>,
    /// Row-major `[m, latent]`.
    pub prior: Vec<f64>,
    pub inputs: Vec<Vec<f64>>,
    pub reconstructions: Vec<Vec<f64>>,
    pub samples: Vec<Vec<f64>>,
}

/// Rows of the latent map at most; images of each grid.
pub(crate) const VIEW_ROWS: usize = 2000;
const VIEW_IMAGES: usize = 16;

pub(crate) fn view(dir: &std::path::Path) -> CliResult<VaeView> {
    let (loaded, run) = open_run(dir, None)?;
    let (device, _) = device(&loaded, None)?;
    let model = load_trained(&loaded, &run, &device, ModelFile::Last)?;
    let (set, split) = match loaded.config.data.load_split()? {
        (_, Some(test)) => (test, "held-out"),
        (train, None) => (train, "training"),
    };
    let n = set.n_rows().min(VIEW_ROWS);
    let x = Matrix::new(n, set.n_cols(), set.x.values[..n * set.n_cols()].to_vec());
    let data = VaeData::new(&x, binarization(&loaded)).fixed(0);
    let l = loaded.vae().latent_dim();
    let source = source_for(&loaded, &model, &data, &device);
    let (means, _) = emvae_vae::diagnostics::encode_all(&model, &data, &source, &device);
    let prior = emvae_core::tensor::tensor_to_vec(sample_prior(
        &model.prior,
        n,
        loaded.config.seed,
        &device,
    ));
    let k = n.min(VIEW_IMAGES);
    let d = data.d;
    let rows: Vec<usize> = (0..k).collect();
    let inputs: Vec<Vec<f64>> = data
        .rows(&rows, 0)
        .chunks(d)
        .map(|r| r.iter().map(|&v| f64::from(v)).collect())
        .collect();
    let decoded = |z: &[f64]| -> Vec<Vec<f64>> {
        let m = Matrix::new(k, l, z[..k * l].to_vec());
        let x = decode(&model, &m, &device);
        (0..k).map(|i| x.row(i).to_vec()).collect()
    };
    let reconstructions = decoded(&means);
    let samples = decoded(&prior);
    Ok(VaeView {
        latent: l,
        split,
        labels: set.labels.map(|ls| ls[..n].to_vec()),
        label_names: None,
        means,
        prior,
        inputs,
        reconstructions,
        samples,
    })
}

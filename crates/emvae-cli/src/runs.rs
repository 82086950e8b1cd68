//! Finding, creating and reopening run directories.

use std::path::{Path, PathBuf};

use emvae_core::run::RunDir;

use crate::args::{RunDataArgs, TrainArgs};
use crate::error::{CliError, CliResult};
use crate::logging;
use crate::runconfig::{LoadedConfig, Overrides};

/// What `train` works with.
pub struct TrainTarget {
    pub loaded: LoadedConfig,
    pub run: RunDir,
    pub resume: bool,
}

/// Decides the config and run directory of `emvae train`, refusing to overwrite a run unless asked.
pub fn train_target(args: &TrainArgs) -> CliResult<TrainTarget> {
    let overrides = Overrides {
        seed: args.seed,
        data: args.data.clone(),
        backend: args.backend,
    };
    let out = match (&args.out, &args.config) {
        (Some(o), _) => o.clone(),
        (None, Some(c)) => PathBuf::from("runs").join(c.file_stem().unwrap_or_default()),
        (None, None) => {
            return Err(CliError::user(
                "give --config (a new run) or --out with --resume (continue a run)",
            ));
        }
    };
    let run = RunDir::open(&out);
    let existing = run.exists(RunDir::CONFIG);
    if args.resume {
        if !existing {
            return Err(CliError::user(format!(
                "cannot resume: {} holds no run (no {})",
                out.display(),
                RunDir::CONFIG
            )));
        }
        let saved = LoadedConfig::load(&run.path(RunDir::CONFIG), &overrides)?;
        if let Some(config) = &args.config {
            let given = LoadedConfig::load(config, &overrides)?;
            if given.config != saved.config {
                return Err(CliError::user(format!(
                    "cannot resume: {} differs from the run's {} (a resumed run keeps its config; \
                     start a new run with --out to change it)",
                    config.display(),
                    run.path(RunDir::CONFIG).display()
                )));
            }
        }
        return Ok(TrainTarget {
            loaded: saved,
            run,
            resume: true,
        });
    }
    let config = args.config.as_ref().ok_or_else(|| {
        CliError::user("give --config (or --resume to continue the run in --out)")
    })?;
    let loaded = LoadedConfig::load(config, &overrides)?;
    if existing && !args.force {
        return Err(CliError::user(format!(
            "{} already holds a run: pass --resume to continue it, --force to replace it, or --out to choose \
             another directory",
            out.display()
        )));
    }
    Ok(TrainTarget {
        loaded,
        run,
        resume: false,
    })
}

impl TrainTarget {
    /// Creates the run directory (once the data have loaded, so a bad input leaves nothing behind),
    /// starts its log and writes the resolved config; with `--force`, clears the previous run's files.
    pub fn prepare(&self, force: bool) -> CliResult<()> {
        let run = RunDir::create(self.run.root())?;
        if force {
            for name in [
                RunDir::SUMMARY,
                RunDir::METRICS,
                "checkpoint.json",
                "model.json",
                "model.bpk",
                "optimizer.bpk",
                "model_best.bpk",
                "vocab.json",
                "checkpoint.bin",
            ] {
                let _ = std::fs::remove_file(run.path(name));
            }
        }
        start_log(&run);
        if !self.resume {
            run.write(RunDir::CONFIG, self.loaded.resolved_toml()?.as_bytes())?;
        }
        Ok(())
    }
}

/// Opens a finished run for eval / predict / sample.
pub fn open_run(dir: &Path, data: Option<&Path>) -> CliResult<(LoadedConfig, RunDir)> {
    let run = RunDir::open(dir);
    if !run.exists(RunDir::CONFIG) {
        return Err(CliError::user(format!(
            "{} is not a run directory (no {})",
            dir.display(),
            RunDir::CONFIG
        )));
    }
    let overrides = Overrides {
        data: data.map(Path::to_path_buf),
        ..Default::default()
    };
    let loaded = LoadedConfig::load(&run.path(RunDir::CONFIG), &overrides)?;
    Ok((loaded, run))
}

/// Opens the run of `args`.
pub fn open_run_data(args: &RunDataArgs) -> CliResult<(LoadedConfig, RunDir)> {
    open_run(&args.run, args.data.as_deref())
}

/// The run's checkpoint `name` when resuming: `None` for a new run or one interrupted before its first
/// checkpoint (which then starts over).
pub fn read_checkpoint(run: &RunDir, name: &str, resume: bool) -> CliResult<Option<Vec<u8>>> {
    if !resume {
        return Ok(None);
    }
    match std::fs::read(run.path(name)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::runtime(format!(
            "{}: {e}",
            run.path(name).display()
        ))),
    }
}

/// Whether a resumed run has already finished (its model and summary written).
pub fn already_complete(run: &RunDir, model_file: &str, resume: bool) -> bool {
    let done = resume && run.exists(RunDir::SUMMARY) && run.exists(model_file);
    if done {
        tracing::info!(
            "{} is already complete: nothing to resume",
            run.root().display()
        );
    }
    done
}

/// Starts the run's log file.
pub fn start_log(run: &RunDir) {
    if let Err(e) = logging::log_to_file(&run.path(RunDir::LOG)) {
        tracing::warn!("cannot open {}: {e}", run.path(RunDir::LOG).display());
    }
}

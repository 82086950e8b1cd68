//! Finding, creating and reopening run directories.

use std::path::{Path, PathBuf};

use emvae_core::run::{LockError, RunDir, RunLock};

use crate::args::{RunDataArgs, TrainArgs};
use crate::error::{CliError, CliResult};
use crate::logging;
use crate::runconfig::{LoadedConfig, Overrides};

/// What `train` works with.
pub struct TrainTarget {
    pub loaded: LoadedConfig,
    pub run: RunDir,
    pub resume: bool,
    /// Held while training: a second `train` on the same directory is refused.
    _lock: RunLock,
}

/// Keys a resumed run may change (after a divergence, or to train longer).
const RESUMABLE_CHANGES: [&str; 5] = [
    "run.plot",
    "train.lr",
    "train.grad_clip",
    "train.epochs",
    "train.max_steps",
];

/// The dotted keys whose values differ between two resolved configs.
fn config_changes(a: &LoadedConfig, b: &LoadedConfig) -> CliResult<Vec<String>> {
    let table = |c: &LoadedConfig| -> CliResult<toml::Table> {
        toml::Table::try_from(&c.config)
            .map_err(|e| CliError::runtime(format!("cannot compare configs: {e}")))
    };
    fn diff(prefix: &str, a: &toml::Table, b: &toml::Table, out: &mut Vec<String>) {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match (a.get(key), b.get(key)) {
                (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                    diff(&path, x, y, out)
                }
                (x, y) if x != y => out.push(path),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    diff("", &table(a)?, &table(b)?, &mut out);
    Ok(out)
}

/// Locks the run directory `out` for this process and repairs what a killed replacing run left.
fn lock_run(out: &Path) -> CliResult<RunLock> {
    if out.exists() && !out.is_dir() {
        return Err(CliError::user(format!(
            "--out {} is a file, not a run directory: choose another path",
            out.display()
        )));
    }
    let lock = RunLock::acquire(out).map_err(|e| match e {
        LockError::Busy { .. } => CliError::user(e),
        LockError::Io(io) => CliError::runtime(format!("cannot lock the run directory: {io}")),
    })?;
    if let Some(message) = RunDir::recover(out)? {
        tracing::warn!("{message}");
    }
    Ok(lock)
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
    let lock = lock_run(&out)?;
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
        let mut loaded = saved;
        if let Some(config) = &args.config {
            let given = LoadedConfig::load(config, &overrides)?;
            if given.config != loaded.config {
                let changes = config_changes(&loaded, &given)?;
                let fixed: Vec<&String> = changes
                    .iter()
                    .filter(|key| !RESUMABLE_CHANGES.iter().any(|k| key.ends_with(k)))
                    .collect();
                if !fixed.is_empty() {
                    return Err(CliError::user(format!(
                        "cannot resume: {} differs from the run's {} in {} (a resumed run keeps its model \
                         and data; only the learning rate, gradient clipping and the training budget \
                         may change: start a new run with --out to change the rest)",
                        config.display(),
                        run.path(RunDir::CONFIG).display(),
                        fixed
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                tracing::info!("continuing with the changed {}", changes.join(", "));
                run.write(RunDir::CONFIG, given.resolved_toml()?.as_bytes())?;
                loaded = given;
            }
        }
        return Ok(TrainTarget {
            loaded,
            run,
            resume: true,
            _lock: lock,
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
        _lock: lock,
    })
}

impl TrainTarget {
    /// Creates the run directory (once the data have loaded, so a bad input leaves nothing behind),
    /// starts its log and writes the resolved config. With `--force` over a run, the previous run is set
    /// aside until this one has written its first checkpoint (see [`TrainTarget::failed`]).
    pub fn prepare(&self, force: bool) -> CliResult<()> {
        if force && !self.resume && self.run.root().exists() {
            self.run.replace()?;
        } else {
            RunDir::create(self.run.root())?;
        }
        start_log(&self.run);
        if !self.resume {
            self.run
                .write(RunDir::CONFIG, self.loaded.resolved_toml()?.as_bytes())?;
        }
        Ok(())
    }

    /// A training run failed with `error`: the run's log records why, and a previous run that this one
    /// was replacing, set aside until this one's first checkpoint, comes back as it was.
    pub fn failed(&self, error: CliError) -> CliError {
        logging::append_to_file(&format!("ERROR training failed: {error}"));
        let note = match self.run.restore_previous() {
            Ok(None) => return error,
            Ok(Some(attempt)) => format!(
                "the previous run in {} is unchanged; this attempt and its log are in {}",
                self.run.root().display(),
                attempt.display()
            ),
            Err(io) => format!("and the previous run could not be put back: {io}"),
        };
        error.map_message(|message| format!("{message}\n{note}"))
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

//! The `emvae` command line: `train`, `eval`, `predict`, `sample`, `generate`, `bench`.
//!
//! This crate is the edge of the system: it reads configs and arguments, chooses the backend (the only
//! place that names one) and turns every error into a message and an exit code (2 for bad input, 1 for
//! other failures).

mod args;
mod backend;
mod bench;
mod denormals;
mod error;
mod generate;
mod gmm;
mod logging;
mod output;
mod progress;
mod runconfig;
mod runs;
mod vae;

use std::process::ExitCode;

use clap::Parser;

pub use backend::Backend;
pub use error::CliError;
pub use runconfig::{ModelKind, RunConfig};

use args::{BenchWhich, Cli, Command};
use error::CliResult;

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(if cli.quiet {
        -1
    } else {
        cli.verbose.min(3) as i8
    });
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The model a run directory holds.
fn model_of(dir: &std::path::Path) -> CliResult<ModelKind> {
    Ok(runs::open_run(dir, None)?.0.config.model)
}

fn vae_only(dir: &std::path::Path, command: &str) -> CliResult<()> {
    match model_of(dir)? {
        ModelKind::Vae => Ok(()),
        ModelKind::Gmm => Err(CliError::user(format!(
            "{command} applies to VAEs; {} holds a Gaussian mixture (use predict or sample)",
            dir.display()
        ))),
    }
}

fn run(command: Command) -> CliResult<()> {
    match command {
        Command::Train(args) => {
            let target = runs::train_target(&args)?;
            match target.loaded.config.model {
                ModelKind::Gmm => gmm::train(&target, args.force, args.stop_after),
                ModelKind::Vae => {
                    denormals::flush_to_zero();
                    vae::train(&target, args.force, args.stop_after)
                }
            }
        }
        Command::Eval(args) => match model_of(&args.run.run)? {
            ModelKind::Gmm => gmm::eval(&args),
            ModelKind::Vae => vae::eval(&args),
        },
        Command::Predict(args) => match model_of(&args.run.run)? {
            ModelKind::Gmm => gmm::predict(&args),
            ModelKind::Vae => Err(CliError::user(
                "predict applies to mixtures; for a VAE use encode",
            )),
        },
        Command::Sample(args) => match model_of(&args.run)? {
            ModelKind::Gmm => gmm::sample(&args),
            ModelKind::Vae => vae::sample(&args),
        },
        Command::Encode(args) => vae_only(&args.run.run, "encode").and_then(|_| vae::encode(&args)),
        Command::Decode(args) => vae_only(&args.run, "decode").and_then(|_| vae::decode_cmd(&args)),
        Command::Reconstruct(args) => {
            vae_only(&args.run.run, "reconstruct").and_then(|_| vae::reconstruct(&args))
        }
        Command::Generate(args) => generate::generate(&args),
        Command::Bench(args) => match args.which {
            BenchWhich::Gmm(a) => bench::gmm(&a),
            BenchWhich::Vae(a) => {
                denormals::flush_to_zero();
                bench::vae(&a)
            }
        },
    }
}

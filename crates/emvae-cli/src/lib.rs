//! The `emvae` command line: `train`, `eval`, `predict`, `sample`, `generate`, `bench`.
//!
//! This crate is the edge of the system: it reads configs and arguments, chooses the backend (the only
//! place that names one) and turns every error into a message and an exit code (2 for bad input, 1 for
//! other failures).

mod args;
mod backend;
mod bench;
mod error;
mod generate;
mod gmm;
mod logging;
mod output;
mod progress;
mod runconfig;
mod runs;

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

fn run(command: Command) -> CliResult<()> {
    match command {
        Command::Train(args) => {
            let target = runs::train_target(&args)?;
            match target.loaded.config.model {
                ModelKind::Gmm => gmm::train(&target, args.force, args.stop_after),
                ModelKind::Vae => Err(CliError::user("model = \"vae\" is not available yet")),
            }
        }
        Command::Eval(args) => match runs::open_run_data(&args.run)?.0.config.model {
            ModelKind::Gmm => gmm::eval(&args),
            ModelKind::Vae => Err(CliError::user("model = \"vae\" is not available yet")),
        },
        Command::Predict(args) => match runs::open_run_data(&args.run)?.0.config.model {
            ModelKind::Gmm => gmm::predict(&args),
            ModelKind::Vae => Err(CliError::user(
                "predict applies to mixtures; for a VAE use encode",
            )),
        },
        Command::Sample(args) => match runs::open_run(&args.run, None)?.0.config.model {
            ModelKind::Gmm => gmm::sample(&args),
            ModelKind::Vae => Err(CliError::user("model = \"vae\" is not available yet")),
        },
        Command::Generate(args) => generate::generate(&args),
        Command::Bench(args) => match args.which {
            BenchWhich::Gmm(a) => bench::gmm(&a),
        },
    }
}

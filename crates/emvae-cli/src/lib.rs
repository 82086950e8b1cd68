//! The `emvae` command line: `train`, `eval`, `predict`, `sample`, `encode`, `decode`, `reconstruct`,
//! `interpolate`, `plot`, `generate`, `bench`.
//!
//! This crate is the edge of the system: it reads configs and arguments, chooses the backend (the only
//! place that names one) and turns every error into a message and an exit code (2 for bad input, 1 for
//! other failures).

mod args;
mod backend;
mod bench;
mod bench_exact;
mod corpus;
mod denormals;
mod error;
mod exact;
mod fuzz;
mod generate;
mod gmm;
mod gmm_online;
mod hmm;
mod linear;
mod logging;
mod mixtures;
mod output;
mod plot;
mod progress;
mod runconfig;
mod runs;
mod text;
mod text_label;
mod text_view;
mod vae;

use std::process::ExitCode;

use clap::Parser;

pub use backend::Backend;
pub use error::CliError;
pub use runconfig::{ModelKind, RunConfig};

use args::{BenchWhich, Cli, Command};
use error::CliResult;
use vae::ModelFile;

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

/// Refuses a latent-code command on a Gaussian-mixture run.
fn latent_model(dir: &std::path::Path, command: &str) -> CliResult<ModelKind> {
    match model_of(dir)? {
        ModelKind::Gmm
        | ModelKind::BernoulliMixture
        | ModelKind::MultinomialMixture
        | ModelKind::Hmm => Err(CliError::user(format!(
            "{command} applies to models with a continuous latent; {} holds a mixture (use predict or \
                 sample)",
            dir.display()
        ))),
        other => Ok(other),
    }
}

/// Refuses a decoding command on a model without a decoder network.
fn decoder_model(dir: &std::path::Path, command: &str) -> CliResult<ModelKind> {
    match latent_model(dir, command)? {
        ModelKind::Ppca | ModelKind::Fa => Err(CliError::user(format!(
            "{command} applies to VAEs and text models; {} holds a linear-Gaussian model (use encode or \
             sample)",
            dir.display()
        ))),
        other => Ok(other),
    }
}

/// `--best` or `--epoch` on a run of an exact model, which keeps one fitted model.
fn one_model_file() -> error::CliError {
    error::CliError::user(
        "--best and --epoch apply to the amortized models (vae, text); an exact model's run keeps one fit",
    )
}

fn run(command: Command) -> CliResult<()> {
    match command {
        Command::Train(args) => {
            let target = runs::train_target(&args)?;
            let stop_after = args.stop_after.map(|s| s as usize);
            let result = match target.loaded.config.model {
                ModelKind::Gmm => gmm::train(&target, args.force, stop_after),
                ModelKind::Vae => {
                    denormals::flush_to_zero();
                    vae::train(&target, args.force, stop_after)
                }
                ModelKind::Text => {
                    denormals::flush_to_zero();
                    text::train(&target, args.force, stop_after)
                }
                ModelKind::BernoulliMixture | ModelKind::MultinomialMixture => {
                    mixtures::train(&target, args.force, stop_after)
                }
                ModelKind::Ppca | ModelKind::Fa => linear::train(&target, args.force, stop_after),
                ModelKind::Hmm => hmm::train(&target, args.force, stop_after),
            };
            result.map_err(|e| target.failed(e))?;
            plot::after_train(target.run.root());
            Ok(())
        }
        Command::Plot(args) => plot::plot(&args),
        Command::Eval(args) => match model_of(&args.run.run)? {
            kind if kind.is_exact() && args.which.file() != ModelFile::Last => {
                Err(one_model_file())
            }
            ModelKind::Gmm => gmm::eval(&args),
            ModelKind::Vae => vae::eval(&args),
            ModelKind::Text => text::eval(&args),
            ModelKind::BernoulliMixture | ModelKind::MultinomialMixture => mixtures::eval(&args),
            ModelKind::Ppca | ModelKind::Fa => linear::eval(&args),
            ModelKind::Hmm => hmm::eval(&args),
        },
        Command::Predict(args) => match model_of(&args.run.run)? {
            ModelKind::Gmm => gmm::predict(&args),
            ModelKind::BernoulliMixture | ModelKind::MultinomialMixture => mixtures::predict(&args),
            ModelKind::Hmm => hmm::predict(&args),
            ModelKind::Vae | ModelKind::Text | ModelKind::Ppca | ModelKind::Fa => {
                Err(CliError::user(
                    "predict applies to mixtures and HMMs; for a continuous latent use encode",
                ))
            }
        },
        Command::Sample(args) => match model_of(&args.run)? {
            kind if kind != ModelKind::Text && args.decoding.label.is_some() => Err(
                CliError::user("--label applies to text models with a label latent ([text.label])"),
            ),
            kind if kind.is_exact() && args.which.file() != ModelFile::Last => {
                Err(one_model_file())
            }
            ModelKind::Gmm => gmm::sample(&args),
            ModelKind::Vae => vae::sample(&args),
            ModelKind::Text => text::sample(&args),
            ModelKind::BernoulliMixture | ModelKind::MultinomialMixture => mixtures::sample(&args),
            ModelKind::Ppca | ModelKind::Fa => linear::sample(&args),
            ModelKind::Hmm => hmm::sample(&args),
        },
        Command::Encode(args) => match latent_model(&args.run.run, "encode")? {
            kind if kind.is_exact() && args.which.file() != ModelFile::Last => {
                Err(one_model_file())
            }
            ModelKind::Text => text::encode_cmd(&args),
            ModelKind::Ppca | ModelKind::Fa => linear::encode(&args),
            _ => vae::encode(&args),
        },
        Command::Decode(args) => match decoder_model(&args.run, "decode")? {
            ModelKind::Text => text::decode_cmd(&args),
            _ => vae::decode_cmd(&args),
        },
        Command::Reconstruct(args) => match decoder_model(&args.encode.run.run, "reconstruct")? {
            ModelKind::Text => text::reconstruct(&args),
            _ => vae::reconstruct(&args.encode),
        },
        Command::Interpolate(args) => match decoder_model(&args.run, "interpolate")? {
            ModelKind::Text => text::interpolate(&args),
            _ => Err(CliError::user(
                "interpolate applies to text models (for an MLP VAE, decode codes of your choice)",
            )),
        },
        Command::Classify(args) => match model_of(&args.encode.run.run)? {
            ModelKind::Text => text_label::classify(&args),
            _ => Err(CliError::user(
                "classify applies to text models with a label latent ([text.label]); for mixtures use predict",
            )),
        },
        Command::Transfer(args) => match model_of(&args.encode.run.run)? {
            ModelKind::Text => text_label::transfer(&args),
            _ => Err(CliError::user(
                "transfer applies to text models with a label latent ([text.label])",
            )),
        },
        Command::Generate(args) => generate::generate(&args),
        Command::Bench(args) => match args.which {
            None => {
                denormals::flush_to_zero();
                bench::all(args.quick)
            }
            Some(BenchWhich::Gmm(a)) => bench::gmm(&a),
            Some(BenchWhich::Vae(a)) => {
                denormals::flush_to_zero();
                bench::vae(&a)
            }
            Some(BenchWhich::Text(a)) => {
                denormals::flush_to_zero();
                bench::text(&a)
            }
            Some(BenchWhich::Fuzz(a)) => fuzz::run(&a),
            Some(BenchWhich::Exact(a)) => bench_exact::exact(&a),
        },
    }
}

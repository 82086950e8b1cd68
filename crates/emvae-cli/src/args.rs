//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::backend::Backend;

#[derive(Debug, Parser)]
#[command(
    name = "emvae",
    version,
    about = "Latent-variable models trained by expectation maximisation: exact EM (Gaussian mixtures) and \
             amortized variational EM (VAEs).",
    after_help = "Examples:\n  emvae train --config configs/gmm-full.toml\n  emvae eval --run runs/gmm-full\n  \
                  emvae sample --run runs/gmm-full -n 5\n\nExit codes: 0 success, 2 bad input (arguments, config, \
                  data, checkpoint), 1 other failures."
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model from a config file into a run directory.
    #[command(
        after_help = "Examples:\n  emvae train --config configs/gmm-full.toml\n  \
                            emvae train --config configs/gmm-diag.toml --data my.csv --out runs/mine --seed 3\n  \
                            emvae train --out runs/mine --resume\n\n\
                            The run directory receives config.toml (resolved), metrics.jsonl, model.json, \
                            checkpoint.json, summary.json and train.log."
    )]
    Train(TrainArgs),
    /// Evaluate a trained model on data (the training data by default).
    #[command(after_help = "Example:\n  emvae eval --run runs/gmm-full --data held_out.csv")]
    Eval(EvalArgs),
    /// Most probable component and responsibilities of every row.
    #[command(
        after_help = "Examples:\n  emvae predict --run runs/gmm-full --data new.csv\n  \
                            emvae predict --run runs/gmm-full --format csv --output labels.csv"
    )]
    Predict(PredictArgs),
    /// Draw samples from a trained model (a VAE: z from the prior, decoded).
    #[command(
        after_help = "Examples:\n  emvae sample --run runs/gmm-full -n 1000 --seed 7 --format csv --output draws.csv\n  \
                            emvae sample --run runs/vae-digits -n 16"
    )]
    Sample(SampleArgs),
    /// VAE: posterior mean and log-variance of every row (JSON lines with z).
    #[command(
        after_help = "Example:\n  emvae encode --run runs/vae-digits --data digits.csv --format csv --output codes.csv"
    )]
    Encode(EncodeArgs),
    /// VAE: decode latent codes into the likelihood's mean.
    #[command(after_help = "Example:\n  emvae decode --run runs/vae-digits --z codes.csv")]
    Decode(DecodeArgs),
    /// VAE: encode rows (posterior mean) and decode them again.
    #[command(
        after_help = "Examples:\n  emvae reconstruct --run runs/vae-digits --output recon.jsonl\n  \
                            emvae reconstruct --run runs/text-vae-synthetic --text sentences.txt --beam 5"
    )]
    Reconstruct(ReconstructArgs),
    /// Text VAE: sentences decoded along the line between two sentences' posterior means (Bowman et al.
    /// 2016's homotopy).
    #[command(
        after_help = "Example:\n  emvae interpolate --run runs/text-vae-synthetic --from \"the soup was awful\" \
                            --to \"the film was wonderful\" --steps 8"
    )]
    Interpolate(InterpolateArgs),
    /// Text model with a label latent: q(y | x) and the model's p(y | x) per sentence (JSON lines), and
    /// the accuracy where the corpus has labels.
    #[command(
        after_help = "Example:\n  emvae classify --run runs/text-ssvae-mr --text ../shared/data/mr/mr.test.tsv"
    )]
    Classify(ClassifyArgs),
    /// Text model with a label latent: encode each sentence's z and decode it with another class y
    /// (the content kept, the label changed).
    #[command(
        after_help = "Example:\n  emvae transfer --run runs/text-ssvae-synthetic --text sentences.txt --label neg"
    )]
    Transfer(ReconstructArgs),
    /// Pictures of a run (PNG and SVG) and its self-contained report.html.
    #[command(
        after_help = "Examples:\n  emvae plot --run runs/gmm-full\n  emvae plot --run runs/vae-synthetic --out figures\n\n\
                            Writes training curves, and by model: a mixture's ellipses, a latent map, KL per latent \
                            dimension, image grids; report.html goes into the run directory (into --out when given). \
                            `train` does the same at its end unless the config has [run] plot = false."
    )]
    Plot(PlotArgs),
    /// Write a synthetic Gaussian-mixture data set as CSV.
    #[command(
        after_help = "Examples:\n  emvae generate --n-samples 5000 --n-features 2 --n-components 3 --label-fraction 0.05 \
                            --output data.csv\n  emvae generate --text --n-samples 2000 --label both --output corpus.txt"
    )]
    Generate(GenerateArgs),
    /// Benchmarks, printed as JSON lines.
    #[command(
        after_help = "Examples:\n  emvae bench                 # every benchmark on every backend in this build, then a table\n  emvae bench gmm\n  emvae bench gmm --backend flex --backend ndarray --n 100000 --d 16 --k 16\n  emvae bench vae --shards 1 --shards 2"
    )]
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Config file (TOML). With --resume, optional: the run's own config.toml is used.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Data file, replacing the config's [data] path or synthetic table.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run directory (default: runs/<config file name>).
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Seed, replacing the config's.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Compute backend, replacing the config's (default flex).
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Replace an existing run directory's run.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Stop after this many iterations (gmm) or optimisation steps (vae) in this session, checkpointed;
    /// continue later with --resume (for time-limited jobs). At least 1.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub stop_after: Option<u64>,
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Run directory of a trained model.
    #[arg(short, long)]
    pub run: PathBuf,
    /// Directory of the pictures (default: RUN/plots); report.html goes there too when given.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunDataArgs {
    /// Run directory of a trained model.
    #[arg(short, long)]
    pub run: PathBuf,
    /// Data file, read with the run's [data] options (default: the run's training data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Compute backend (default: the run's).
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub run: RunDataArgs,
    /// VAE: importance samples K of the NLL estimate (default: the config's eval.final_iw_samples).
    #[arg(long)]
    pub iw_samples: Option<usize>,
    /// VAE: also measure the amortization gap (per-point optimised posteriors vs the encoder's).
    #[arg(long)]
    pub amortization_gap: bool,
    #[command(flatten)]
    pub which: ModelChoiceArgs,
}

/// Which of a run's saved models a command uses (default: the last).
#[derive(Debug, Clone, Copy, Args)]
pub struct ModelChoiceArgs {
    /// Use the model of the best held-out evaluation (model_best.bpk) instead of the last.
    #[arg(long)]
    pub best: bool,
    /// Use the model kept after epoch N (model_epoch<N>.bpk, written for the config's run.keep_epochs).
    #[arg(long, conflicts_with = "best", value_parser = clap::value_parser!(u64).range(1..))]
    pub epoch: Option<u64>,
}

impl ModelChoiceArgs {
    pub fn file(self) -> crate::vae::ModelFile {
        crate::vae::ModelFile::chosen(self.best, self.epoch)
    }
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    pub run: RunDataArgs,
    /// Text models: a corpus file (one sentence per line); default: the run's held-out sentences.
    #[arg(long, conflicts_with = "data")]
    pub text: Option<PathBuf>,
    #[command(flatten)]
    pub which: ModelChoiceArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub encode: EncodeArgs,
    /// Draws of z from the guide for the model's posterior p(y | x) (importance sampling).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub samples: u64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct ReconstructArgs {
    #[command(flatten)]
    pub encode: EncodeArgs,
    #[command(flatten)]
    pub decoding: DecodingArgs,
}

/// How a text model turns latent codes into words.
#[derive(Debug, Args)]
pub struct DecodingArgs {
    /// Text: sample each word from the softmax at this temperature (the default for `sample`, at 1).
    #[arg(long, conflicts_with_all = ["greedy", "beam"])]
    pub temperature: Option<f64>,
    /// Text: take the most probable word at each step (the default for decode, reconstruct,
    /// interpolate).
    #[arg(long, conflicts_with = "beam")]
    pub greedy: bool,
    /// Text: beam search of this width.
    #[arg(long)]
    pub beam: Option<usize>,
    /// Text: longest generated sentence, in words.
    #[arg(long, default_value_t = 50)]
    pub max_words: usize,
    /// Text model with a label latent ([text.label]): the class y to decode with (default: sample and
    /// decode draw y from p(y); reconstruct and interpolate take the guide's most probable class).
    #[arg(long)]
    pub label: Option<String>,
    /// Text model with a label latent: label guidance, how far each word's distribution is pushed away
    /// from the other classes' (default: the run's [text.label] guidance; 0 decodes from the model's
    /// own p(x | y, z)).
    #[arg(long)]
    pub guidance: Option<f64>,
}

#[derive(Debug, Args)]
pub struct InterpolateArgs {
    /// Run directory of a trained text VAE.
    #[arg(short, long)]
    pub run: PathBuf,
    /// The first sentence (white-space separated words).
    #[arg(long)]
    pub from: String,
    /// The last sentence.
    #[arg(long)]
    pub to: String,
    /// Points on the line, both ends included.
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    #[command(flatten)]
    pub which: ModelChoiceArgs,
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    #[command(flatten)]
    pub decoding: DecodingArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// Run directory of a trained VAE.
    #[arg(short, long)]
    pub run: PathBuf,
    /// Latent codes, one per row (CSV or .npy, as many columns as latent dimensions; for text models
    /// also JSON lines with a "z" or "mean" array, as `encode` writes).
    #[arg(long, visible_alias = "latents")]
    pub z: PathBuf,
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    #[command(flatten)]
    pub which: ModelChoiceArgs,
    #[command(flatten)]
    pub decoding: DecodingArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header.
    Csv,
}

/// Where and how row-wise results are written.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output file (default: standard output).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub run: RunDataArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Run directory of a trained model.
    #[arg(short, long)]
    pub run: PathBuf,
    /// Number of samples.
    #[arg(short = 'n', long = "n-samples", default_value_t = 10)]
    pub n_samples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// HMM: steps per sampled sequence (a model of a corpus: --max-words).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub length: u64,
    #[command(flatten)]
    pub which: ModelChoiceArgs,
    #[command(flatten)]
    pub decoding: DecodingArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Rows (mixture data) or sentences (`--text`).
    #[arg(long)]
    pub n_samples: usize,
    #[arg(long, required_unless_present = "text")]
    pub n_features: Option<usize>,
    #[arg(long, required_unless_present = "text")]
    pub n_components: Option<usize>,
    /// Write a text corpus from the built-in grammar (sentences with a sentiment and a topic) instead of
    /// mixture data.
    #[arg(long, conflicts_with_all = ["n_features", "n_components"])]
    pub text: bool,
    /// Text: which factor to write as the label (`label<TAB>sentence`): none, sentiment, topic, both.
    #[arg(long, default_value = "sentiment")]
    pub label: String,
    /// Spread of the means relative to the components' scale.
    #[arg(long, default_value_t = 4.0)]
    pub separation: f64,
    /// Fraction of rows that keep their true component in a `label` column.
    #[arg(long, default_value_t = 0.0)]
    pub label_fraction: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output file (CSV, or the corpus with `--text`).
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Without a benchmark: all of them on every backend in this build, then a summary table.
    #[command(subcommand)]
    pub which: Option<BenchWhich>,
    /// With no benchmark named: smaller sizes and fewer steps (a smoke test of the table, not figures).
    #[arg(long)]
    pub quick: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhich {
    /// Seconds per EM iteration of a Gaussian mixture (synthetic data, explicit initialisation).
    Gmm(BenchGmmArgs),
    /// Training throughput (examples per second) of an MLP VAE with a Bernoulli decoder.
    Vae(BenchVaeArgs),
    /// Training throughput (tokens per second) of the sentence VAE (PTB-shaped by default).
    Text(BenchTextArgs),
    /// Random and mutated inputs fed to every loader of user-controlled bytes (config, CSV, NPY, IDX,
    /// GMM model and checkpoint, VAE checkpoint, vocabulary): counts panics, errors and the slowest
    /// case; exit code 1 on a panic or a hang, the input written to fuzz-failure-TARGET.bin.
    #[command(
        after_help = "Examples:\n  emvae bench fuzz                       # 100,000 cases per target\n  \
                      emvae bench fuzz --cases 3000 --target csv --target npy --seed 7"
    )]
    Fuzz(BenchFuzzArgs),
    /// The exact-EM family: pPCA and factor-analysis fit times, seconds per Baum-Welch iteration
    /// (peers: benches/peers/sklearn_linear_bench.py, benches/peers/hmmlearn_bench.py).
    #[command(
        after_help = "Examples:\n  emvae bench exact\n  emvae bench exact --linear-n 10000 --linear-d 20 --linear-q 5"
    )]
    Exact(BenchExactArgs),
}

#[derive(Debug, Args)]
pub struct BenchExactArgs {
    /// pPCA / FA: rows, features and latent dimensions.
    #[arg(long, default_value_t = 100_000)]
    pub linear_n: usize,
    #[arg(long, default_value_t = 50)]
    pub linear_d: usize,
    #[arg(long, default_value_t = 10)]
    pub linear_q: usize,
    /// Fits per linear model (the best is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// HMM: sequences, steps per sequence, states, Gaussian features, categorical symbols.
    #[arg(long, default_value_t = 100)]
    pub hmm_sequences: usize,
    #[arg(long, default_value_t = 1000)]
    pub hmm_length: usize,
    #[arg(long, default_value_t = 8)]
    pub hmm_states: usize,
    #[arg(long, default_value_t = 8)]
    pub hmm_d: usize,
    #[arg(long, default_value_t = 50)]
    pub hmm_symbols: usize,
    /// Timed Baum-Welch iterations (after one warm-up).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
}

#[derive(Debug, Args)]
pub struct BenchFuzzArgs {
    /// Inputs per target.
    #[arg(long, default_value_t = 100_000)]
    pub cases: usize,
    /// Seed of the input generator (the same seed gives the same inputs).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Targets to fuzz (repeat the flag; default: all): config, csv, npy, idx, gmm-model,
    /// gmm-checkpoint, vae-checkpoint, vocab.
    #[arg(long = "target")]
    pub target: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BenchTextArgs {
    #[arg(long, default_value_t = 10_000)]
    pub vocab: usize,
    #[arg(long, default_value_t = 256)]
    pub embedding: usize,
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    #[arg(long, default_value_t = 32)]
    pub latent: usize,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Sentence lengths in words are drawn uniformly from [min_words, max_words].
    #[arg(long, default_value_t = 12)]
    pub min_words: usize,
    #[arg(long, default_value_t = 32)]
    pub max_words: usize,
    /// `lstm` or `gru`.
    #[arg(long, default_value = "lstm")]
    pub cell: String,
    /// Timed optimisation steps (after `--warmup` untimed ones).
    #[arg(long, default_value_t = 40)]
    pub steps: usize,
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Backends to time (repeat the flag).
    #[arg(long, value_enum, default_values = ["flex"])]
    pub backend: Vec<Backend>,
    /// Data-parallel shards of each minibatch (`train.shards`: 0 chooses as `train` does; repeat the
    /// flag to compare).
    #[arg(long, default_values_t = [0])]
    pub shards: Vec<usize>,
}

#[derive(Debug, Args)]
pub struct BenchVaeArgs {
    /// Layer widths of the encoder, data to latent (the decoder mirrors it).
    #[arg(long, value_delimiter = ',', default_values_t = [784usize, 512, 256, 32])]
    pub sizes: Vec<usize>,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Timed optimisation steps (after `--warmup` untimed ones).
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    #[arg(long, default_value_t = 30)]
    pub warmup: usize,
    /// Backends to time (repeat the flag).
    #[arg(long, value_enum, default_values = ["flex", "ndarray"])]
    pub backend: Vec<Backend>,
    /// Data-parallel shards of each minibatch (`train.shards`: 0 chooses as `train` does; repeat the
    /// flag to compare).
    #[arg(long, default_values_t = [0])]
    pub shards: Vec<usize>,
}

#[derive(Debug, Args)]
pub struct BenchGmmArgs {
    #[arg(long, default_value_t = 100_000)]
    pub n: usize,
    #[arg(long, default_value_t = 16)]
    pub d: usize,
    #[arg(long, default_value_t = 16)]
    pub k: usize,
    /// Covariance types to time (repeat the flag).
    #[arg(long = "covariance", default_values = ["full", "diag"])]
    pub covariance: Vec<String>,
    /// Timed EM iterations per measurement (after one warm-up iteration).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Backends to time (repeat the flag).
    #[arg(long, value_enum, default_values = ["flex", "ndarray"])]
    pub backend: Vec<Backend>,
    /// Float precision: f64 or f32.
    #[arg(long, default_value = "f64")]
    pub precision: String,
}

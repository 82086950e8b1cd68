//! `emvae bench`: machine-readable speed figures (JSON lines on standard output).

use emvae_core::data::synthetic::SyntheticMixture;
use emvae_core::tensor::Precision;
use emvae_em::gmm::profile::{self, PhaseSeconds};
use emvae_em::gmm::{
    ArrayInit, CovarianceType, EmObserver, GmmCheckpoint, GmmParams, IterationRecord,
};
use serde_json::json;

use crate::args::{BenchGmmArgs, BenchVaeArgs};
use crate::error::{CliError, CliResult};

/// Every iteration's seconds, and the host E-step's phases within it.
#[derive(Default)]
struct Timer {
    seconds: Vec<f64>,
    phases: Vec<PhaseSeconds>,
}

impl EmObserver for Timer {
    fn on_iteration(
        &mut self,
        record: &IterationRecord,
        _: &GmmCheckpoint,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.seconds.push(record.seconds);
        self.phases.push(profile::take());
        Ok(())
    }
}

/// Median seconds per iteration of each phase: thread-seconds (summed over threads) of the host
/// E-step's phases, the wall time of its pass, and of everything else (the weights, the M-step's
/// parameters and Cholesky factors, the driver). All zero but `rest` on the tensor path.
fn phase_line(seconds: &[f64], phases: &[PhaseSeconds]) -> serde_json::Value {
    let of = |f: fn(&PhaseSeconds) -> f64| median(&phases.iter().map(f).collect::<Vec<_>>());
    let rest: Vec<f64> = seconds
        .iter()
        .zip(phases)
        .map(|(s, p)| s - p.pass)
        .collect();
    json!({
        "features": of(|p| p.features),
        "log_joint_gemm": of(|p| p.log_joint),
        "normalise": of(|p| p.normalise),
        "moments_gemm": of(|p| p.moments),
        "e_step_pass_wall": of(|p| p.pass),
        "rest_wall": median(&rest),
    })
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        0.5 * (s[m - 1] + s[m])
    }
}

/// Seconds per EM iteration (E-step + M-step + log-likelihood) on a synthetic mixture, from explicit
/// initial parameters (so no initialisation is timed), `tol = 0` so every iteration runs; the median of
/// `iters` iterations after one warm-up iteration.
pub fn gmm(args: &BenchGmmArgs) -> CliResult<()> {
    gmm_lines(args, &mut |line| println!("{line}"))
}

fn gmm_lines(args: &BenchGmmArgs, emit: &mut dyn FnMut(serde_json::Value)) -> CliResult<()> {
    let precision = match args.precision.as_str() {
        "f64" => Precision::F64,
        "f32" => Precision::F32,
        other => {
            return Err(CliError::user(format!(
                "--precision: expected f64 or f32, got {other}"
            )));
        }
    };
    if args.iters == 0 || args.n < args.k || args.d == 0 || args.k == 0 {
        return Err(CliError::user(
            "bench gmm needs --iters >= 1, --d >= 1, --k >= 1 and --n >= --k",
        ));
    }
    let spec = SyntheticMixture {
        n_samples: args.n,
        n_features: args.d,
        n_components: args.k,
        separation: 4.0,
        label_fraction: 0.0,
        seed: 1,
    };
    let generated = spec.generate();
    let (d, k) = (args.d, args.k);
    // Start from the truth's means, shifted, with unit precisions: a realistic EM trajectory.
    let means: Vec<Vec<f64>> = generated
        .truth
        .means
        .chunks_exact(d)
        .map(|m| m.iter().map(|v| v + 0.5).collect())
        .collect();
    let eye: Vec<Vec<f64>> = (0..d)
        .map(|i| (0..d).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for backend in &args.backend {
        let compute = backend.compute(precision)?;
        for name in &args.covariance {
            let cov: CovarianceType = serde_json::from_value(json!(name)).map_err(|_| {
                CliError::user(format!(
                    "--covariance: expected full, diag, tied or spherical, got {name}"
                ))
            })?;
            let precisions = match cov {
                CovarianceType::Full => ArrayInit::Stack(vec![eye.clone(); k]),
                CovarianceType::Tied => ArrayInit::Matrix(eye.clone()),
                CovarianceType::Diag => ArrayInit::Matrix(vec![vec![1.0; d]; k]),
                CovarianceType::Spherical => ArrayInit::Vector(vec![1.0; k]),
            };
            let params = GmmParams::new(k)
                .covariance_type(cov)
                .tol(0.0)
                .max_iter(args.iters + 1)
                .weights_init(vec![1.0 / k as f64; k])
                .means_init(means.clone())
                .precisions_init(precisions)
                .check()
                .map_err(CliError::user)?;
            let mut timer = Timer::default();
            profile::set_enabled(true);
            profile::take();
            let fitted = params.fit_with(&generated.data, &compute, &mut timer, None);
            profile::set_enabled(false);
            fitted.map_err(|e| CliError::runtime(format!("benchmark fit failed: {e}")))?;
            let timed = &timer.seconds[1..];
            let line = json!({
                "bench": "gmm_em_iteration",
                "impl": "emvae",
                "backend": backend.name(),
                "precision": precision,
                "covariance_type": cov,
                "n": args.n,
                "d": d,
                "k": k,
                "iters": timed.len(),
                "sec_per_iter": median(timed),
                "samples": timed,
                "phases": phase_line(timed, &timer.phases[1..]),
                "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
            });
            emit(line);
        }
    }
    Ok(())
}

/// Examples per second of VAE training (forward, backward and Adam step of the ELBO with one sample),
/// on random binary data of the encoder's input width, through the same trainer `emvae train` uses.
pub fn vae(args: &BenchVaeArgs) -> CliResult<()> {
    vae_lines(args, &mut |line| println!("{line}"))
}

fn vae_lines(args: &BenchVaeArgs, emit: &mut dyn FnMut(serde_json::Value)) -> CliResult<()> {
    use emvae_core::data::Matrix;
    use emvae_vae::data::{Binarization, VaeData};
    use emvae_vae::train::Trainer;
    if args.sizes.len() < 2 || args.sizes.contains(&0) || args.batch == 0 || args.steps == 0 {
        return Err(CliError::user(
            "bench vae needs --sizes with two or more widths >= 1, --batch >= 1, --steps >= 1",
        ));
    }
    let d = args.sizes[0];
    let decoder: Vec<usize> = args.sizes.iter().rev().copied().collect();
    let rows = args.batch * 20;
    let mut rng = emvae_core::rng::rng_for(0, b"bench-vae-data", 0);
    let values = (0..rows * d)
        .map(|_| {
            if rand::Rng::random::<f64>(&mut rng) < 0.3 {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let data = VaeData::new(&Matrix::new(rows, d, values), Binarization::None);
    let text = format!(
        "[encoder]\nsizes = {:?}\n[decoder]\nsizes = {decoder:?}\n[likelihood]\nkind = \"bernoulli\"\n\
         [train]\nbatch_size = {}\nepochs = 1000000\nmax_steps = {}\n[eval]\nevery = 1000000\n",
        args.sizes,
        args.batch,
        // One step more than run: training stops on --steps, before its final evaluation.
        args.warmup + args.steps + 1
    );
    let config: emvae_vae::VaeConfig =
        toml::from_str(&text).map_err(|e| CliError::runtime(format!("bench config: {e}")))?;
    for (backend, &shards) in args
        .backend
        .iter()
        .flat_map(|b| args.shards.iter().map(move |s| (b, s)))
    {
        let mut config = config.clone();
        config.train.shards = shards;
        let device = backend.device()?.autodiff();
        let mut trainer = Trainer::new(config, 0, device, data.clone(), None)
            .map_err(|e| CliError::runtime(format!("bench: {e}")))?;
        let timed = time_steps(&mut trainer, args.warmup, args.steps)?;
        let line = json!({
            "bench": "vae_training_throughput",
            "impl": "emvae",
            "backend": backend.name(),
            "sizes": args.sizes,
            "batch": args.batch,
            "shards": trainer.shards,
            "steps": args.steps,
            "examples_per_second": timed.rows as f64 / timed.stepping,
            "seconds_in_steps": timed.stepping,
            "seconds": timed.wall,
            "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        });
        emit(line);
    }
    Ok(())
}

/// What the timed steps of a training benchmark did.
struct Timed {
    /// Seconds inside optimisation steps, and wall-clock seconds of the timed run.
    stepping: f64,
    wall: f64,
    /// Rows (examples, sentences) and throughput units (examples, tokens) processed.
    rows: u64,
    units: u64,
}

/// Runs `warmup` untimed steps, then `steps` timed ones.
fn time_steps<M: emvae_vae::AmortizedModel>(
    trainer: &mut emvae_vae::train::AmortizedTrainer<M>,
    warmup: usize,
    steps: usize,
) -> CliResult<Timed> {
    let run = |trainer: &mut emvae_vae::train::AmortizedTrainer<M>, n: usize| {
        trainer
            .run(&mut (), Some(n as u64))
            .map_err(|e| CliError::runtime(format!("bench: {e}")))
    };
    run(trainer, warmup)?;
    let before = trainer.state.clone();
    let start = std::time::Instant::now();
    run(trainer, steps)?;
    Ok(Timed {
        stepping: trainer.state.seconds - before.seconds,
        wall: start.elapsed().as_secs_f64(),
        rows: trainer.state.rows - before.rows,
        units: trainer.state.units - before.units,
    })
}

/// `emvae bench text`: training tokens per second of the sentence VAE on random sentences of a
/// PTB-shaped vocabulary (the shape of `benches/peers/torch_text_vae_bench.py`).
pub fn text(args: &crate::args::BenchTextArgs) -> CliResult<()> {
    text_lines(args, &mut |line| println!("{line}"))
}

fn text_lines(
    args: &crate::args::BenchTextArgs,
    emit: &mut dyn FnMut(serde_json::Value),
) -> CliResult<()> {
    use emvae_text::batch::TextData;
    use emvae_text::{TextDataset, TextTrainer, TextVaeConfig};
    if args.vocab < 5
        || args.batch == 0
        || args.steps == 0
        || args.min_words == 0
        || args.max_words < args.min_words
    {
        return Err(CliError::user(
            "bench text needs --vocab >= 5, --batch >= 1, --steps >= 1 and 1 <= --min-words <= --max-words",
        ));
    }
    if !matches!(args.cell.as_str(), "lstm" | "gru") {
        return Err(CliError::user("--cell: lstm or gru"));
    }
    // Enough sentences for the timed steps without repeating an epoch's bucketing draw.
    let n = args.batch * (args.warmup + args.steps + 2).max(60);
    let mut rng = emvae_core::rng::rng_for(0, b"bench-text-data", 0);
    let sentences: Vec<Vec<u32>> = (0..n)
        .map(|_| {
            let len = rand::Rng::random_range(&mut rng, args.min_words..=args.max_words);
            (0..len)
                .map(|_| rand::Rng::random_range(&mut rng, 4..args.vocab as u32))
                .collect()
        })
        .collect();
    let data = TextData {
        sentences,
        labels: None,
        label_names: Vec::new(),
    };
    let text = format!(
        "latent = {}\nembedding = {}\ndropout = 0.5\nword_dropout = 0.0\n\
         [encoder]\ncell = \"{cell}\"\nhidden = {}\n[decoder]\ncell = \"{cell}\"\nhidden = {}\n\
         [train]\nbatch_size = {}\nepochs = 1000000\nmax_steps = {}\n[eval]\nevery = 1000000\n",
        args.latent,
        args.embedding,
        args.hidden,
        args.hidden,
        args.batch,
        args.warmup + args.steps + 1,
        cell = args.cell,
    );
    let mut config: TextVaeConfig =
        toml::from_str(&text).map_err(|e| CliError::runtime(format!("bench config: {e}")))?;
    config.vocab_size = args.vocab;
    for (backend, &shards) in args
        .backend
        .iter()
        .flat_map(|b| args.shards.iter().map(move |s| (b, s)))
    {
        let mut config = config.clone();
        config.train.shards = shards;
        config.host_kernels = backend.text_kernels();
        let device = backend.device()?.autodiff();
        let set = TextDataset::training(data.clone(), args.vocab, 0);
        let mut trainer = TextTrainer::new(config, 0, device, set, None)
            .map_err(|e| CliError::runtime(format!("bench: {e}")))?;
        let timed = time_steps(&mut trainer, args.warmup, args.steps)?;
        let (stepping, tokens, rows) = (timed.stepping, timed.units, timed.rows);
        let line = json!({
            "bench": "text_vae_training_throughput",
            "impl": "emvae",
            "backend": backend.name(),
            "cell": args.cell,
            "vocab": args.vocab,
            "embedding": args.embedding,
            "hidden": args.hidden,
            "latent": args.latent,
            "batch": args.batch,
            "shards": trainer.shards,
            "steps": args.steps,
            "tokens_per_second": tokens as f64 / stepping,
            "sentences_per_second": rows as f64 / stepping,
            "seconds_per_step": stepping / args.steps as f64,
            "mean_tokens_per_sentence": tokens as f64 / rows as f64,
            "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        });
        emit(line);
    }
    Ok(())
}

/// The arguments of a benchmark with every default, as `emvae bench NAME` parses them.
fn defaults<T: clap::Args + clap::FromArgMatches>() -> CliResult<T> {
    let matches = T::augment_args(clap::Command::new("bench"))
        .try_get_matches_from(["bench"])
        .map_err(|e| CliError::runtime(format!("bench defaults: {e}")))?;
    T::from_arg_matches(&matches).map_err(|e| CliError::runtime(format!("bench defaults: {e}")))
}

/// `emvae bench` with no subcommand: every benchmark (the mixture's EM iteration, the MLP VAE and the
/// sentence VAE, at their default sizes) on every backend this binary was built with, and the exact-EM
/// family (pPCA, FA, HMMs) on the host, as JSON lines,
/// then one summary line per model and backend (`"bench": "summary"`) and a table on standard error.
pub fn all(quick: bool) -> CliResult<()> {
    use crate::args::BenchTextArgs;
    use crate::backend::Backend;
    let backends: Vec<Backend> = [Backend::Flex, Backend::Ndarray, Backend::Wgpu]
        .into_iter()
        .filter(|b| b.device().is_ok())
        .collect();
    let mut summary: Vec<(String, String, f64, &'static str)> = Vec::new();
    for &backend in &backends {
        // f64 where the backend has it (parity with scikit-learn), and f32 (what GPUs are fast at).
        for precision in ["f64", "f32"] {
            let mut args: BenchGmmArgs = defaults()?;
            args.backend = vec![backend];
            args.precision = precision.into();
            args.covariance = vec!["full".into()];
            if quick {
                args.n = 10_000;
                args.iters = 3;
            }
            let result = gmm_lines(&args, &mut |line| {
                let seconds = line["sec_per_iter"].as_f64().unwrap_or(f64::NAN);
                summary.push((
                    format!("gmm-full-{precision}"),
                    backend.name().into(),
                    1.0 / seconds,
                    "EM iterations/s",
                ));
                println!("{line}");
            });
            if let Err(e) = result {
                tracing::info!("bench gmm on {backend} in {precision}: skipped ({e})");
            }
        }
        let mut args: BenchVaeArgs = defaults()?;
        args.backend = vec![backend];
        if quick {
            args.steps = 20;
            args.warmup = 3;
        }
        vae_lines(&args, &mut |line| {
            let rate = line["examples_per_second"].as_f64().unwrap_or(f64::NAN);
            summary.push(("mlp-vae".into(), backend.name().into(), rate, "examples/s"));
            println!("{line}");
        })?;
        let mut args: BenchTextArgs = defaults()?;
        args.backend = vec![backend];
        if quick {
            args.steps = 3;
            args.warmup = 1;
            args.vocab = 2_000;
        }
        text_lines(&args, &mut |line| {
            let rate = line["tokens_per_second"].as_f64().unwrap_or(f64::NAN);
            summary.push(("text-vae".into(), backend.name().into(), rate, "tokens/s"));
            println!("{line}");
        })?;
    }
    // The exact-EM family runs on the host, whatever the backend.
    let mut args: crate::args::BenchExactArgs = defaults()?;
    if quick {
        (args.linear_n, args.linear_d, args.linear_q) = (10_000, 20, 5);
        (
            args.hmm_sequences,
            args.hmm_length,
            args.iters,
            args.repeats,
        ) = (20, 200, 3, 1);
    }
    crate::bench_exact::exact_lines(&args, &mut |line| {
        let (model, rate, unit) = if line["bench"] == "linear_fit" {
            let seconds = line["seconds"].as_f64().unwrap_or(f64::NAN);
            (
                format!("{}-fit", line["model"].as_str().unwrap_or("?")),
                1.0 / seconds,
                "fits/s",
            )
        } else {
            let seconds = line["seconds_per_iteration"].as_f64().unwrap_or(f64::NAN);
            let emission = line["emission"].as_str().unwrap_or("?");
            (format!("hmm-{emission}"), 1.0 / seconds, "EM iterations/s")
        };
        summary.push((model, "host".into(), rate, unit));
        println!("{line}");
    })?;
    eprintln!(
        "{:<16} {:<8} {:>14}  unit",
        "model", "backend", "throughput"
    );
    for (model, backend, rate, unit) in &summary {
        println!(
            "{}",
            json!({"bench": "summary", "model": model, "backend": backend, "throughput": rate, "unit": unit})
        );
        eprintln!("{model:<16} {backend:<8} {rate:>14.1}  {unit}");
    }
    Ok(())
}

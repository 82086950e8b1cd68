//! `emvae` commands for text models: training the sentence VAE (or the recurrent language model) on a
//! corpus, and the latent-code commands on its checkpoints (sample, encode, decode, reconstruct,
//! interpolate, eval).

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use emvae_core::run::RunDir;
use emvae_text::batch::TextData;
use emvae_text::classify::guide_classes;
use emvae_text::corpus::{Corpus, CorpusOptions, parse_corpus, parse_sentence, read_corpus};
use emvae_text::grammar::{GrammarSpec, generate_kind, to_lines};
use emvae_text::guidance::calibrate_guidance;
use emvae_text::inference::{Decoding, decode, encode, homotopy, latent_tensor};
use emvae_text::vocab::Vocab;
use emvae_text::{TextDataset, TextError, TextTrainer, TextVae, TextVaeConfig};
use emvae_vae::diagnostics::{DiagnoseOptions, diagnose};
use emvae_vae::inference::{PosteriorSource, sample_prior};
use emvae_vae::train::{Outcome, load_model, model_bytes};
use emvae_vae::{AmortizedModel, TrainData, VaeError};
use serde_json::json;

use crate::args::{
    DecodeArgs, DecodingArgs, EncodeArgs, EvalArgs, InterpolateArgs, ReconstructArgs, SampleArgs,
};
use crate::error::{CliError, CliResult};
use crate::output::RowWriter;
use crate::runconfig::LoadedConfig;
use crate::runs::{TrainTarget, already_complete, open_run, read_checkpoint};
use crate::text_label;
use crate::vae::{
    BEST_MODEL_FILE, CHECKPOINT_FILE, MODEL_FILE, ModelFile, amortized_error, device,
    read_model_bytes, resume_error, run_training,
};

/// The run's vocabulary, built from its training split.
pub const VOCAB_FILE: &str = "vocab.json";

fn text_error(loaded: &LoadedConfig, e: TextError) -> CliError {
    match e {
        TextError::InvalidParam(p) => loaded.invalid(p.within("text")),
        TextError::Vae(v) => vae_error(loaded, v),
        other => CliError::user(other),
    }
}

fn vae_error(loaded: &LoadedConfig, e: VaeError) -> CliError {
    amortized_error(loaded, "text", e)
}

/// The training corpus and the held-out one.
pub(crate) struct Corpora {
    pub train: Corpus,
    pub test: Option<Corpus>,
}

fn corpus_options(config: &TextVaeConfig) -> CorpusOptions {
    CorpusOptions {
        max_length: config.max_length,
        overlong: config.overlong,
    }
}

pub(crate) fn load_corpora(loaded: &LoadedConfig) -> CliResult<Corpora> {
    let config = loaded.text();
    let opts = corpus_options(config);
    let err = |e| text_error(loaded, e);
    if let Some(g) = &config.generated {
        let sentences = generate_kind(
            g.grammar,
            &GrammarSpec {
                n_sentences: g.n_sentences + g.n_held_out,
                seed: g.seed,
            },
        );
        let text = to_lines(&sentences, g.labels);
        let all = parse_corpus(text.as_bytes(), Path::new("<generated>"), &opts).map_err(err)?;
        if g.n_held_out == 0 {
            return Ok(Corpora {
                train: all,
                test: None,
            });
        }
        let (train, test) = all.split_last(g.n_held_out).map_err(err)?;
        return Ok(Corpora {
            train,
            test: Some(test),
        });
    }
    let data = &loaded.config.data;
    let path = data.path.as_ref().ok_or_else(|| {
        CliError::user("a text model needs [data] path (checked when the config was read)")
    })?;
    let train = read_corpus(path, &opts).map_err(err)?;
    match (&data.test_path, data.test_rows) {
        (Some(p), _) => Ok(Corpora {
            train,
            test: Some(read_corpus(p, &opts).map_err(err)?),
        }),
        (None, Some(n)) => {
            let (train, test) = train.split_last(n).map_err(err)?;
            Ok(Corpora {
                train,
                test: Some(test),
            })
        }
        (None, None) => Ok(Corpora { train, test: None }),
    }
}

fn label_names(corpora: &[&Corpus]) -> Vec<String> {
    let mut names: Vec<String> = corpora.iter().flat_map(|c| c.label_names()).collect();
    names.sort();
    names.dedup();
    names
}

fn read_vocab(run: &RunDir) -> CliResult<Vocab> {
    let path = run.path(VOCAB_FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        CliError::user(format!(
            "{}: cannot read the run's vocabulary ({e}); a text run keeps it beside its checkpoints",
            path.display()
        ))
    })?;
    Vocab::from_json_bytes(&bytes).map_err(|e| CliError::user(format!("{}: {e}", path.display())))
}

pub fn train(target: &TrainTarget, force: bool, stop_after: Option<usize>) -> CliResult<()> {
    let (loaded, run, resume) = (&target.loaded, &target.run, target.resume);
    let mut config = loaded.text().clone();
    let seed = loaded.config.seed;
    let corpora = load_corpora(loaded)?;
    if already_complete(run, MODEL_FILE, resume) {
        return Ok(());
    }
    let checkpoint = read_checkpoint(run, CHECKPOINT_FILE, resume)?;
    let vocab = if checkpoint.is_some() {
        read_vocab(run)?
    } else {
        Vocab::build(
            &corpora.train.sentences,
            config.vocab.max_size,
            config.vocab.min_count,
        )
    };
    config.vocab_size = vocab.len();
    // A label latent's classes are the config's: a corpus label outside them is an error naming its line.
    let labels = match &config.label {
        Some(l) => l.classes.clone(),
        None => label_names(
            &[&corpora.train]
                .into_iter()
                .chain(&corpora.test)
                .collect::<Vec<_>>(),
        ),
    };
    let err = |e| text_error(loaded, e);
    let train_data = TextData::new(&corpora.train, &vocab, &labels).map_err(err)?;
    let test_data = match &corpora.test {
        Some(c) => Some(TextData::new(c, &vocab, &labels).map_err(err)?),
        None => None,
    };
    let ((train_data, train_oov), test_data, hidden) =
        text_label::hide_labels(&config, seed, train_data, test_data);
    let v = vocab.len();
    let n_tokens_train = train_data.n_tokens(&(0..train_data.len()).collect::<Vec<_>>());
    let train = TextDataset::training(train_data, v, seed);
    let test = test_data.map(|(d, oov)| (TextDataset::evaluation(d, v), oov));
    let test_oov = test.as_ref().map_or(0, |t| t.1);
    let test = test.map(|t| t.0);
    let (device, backend) = device(loaded, None)?;
    config.host_kernels = backend.text_kernels();
    let mut trainer = match &checkpoint {
        Some(bytes) => {
            TextTrainer::resume(config.clone(), seed, device.clone(), train, test, bytes)
                .map_err(|e| resume_error(run, e, &|e| vae_error(loaded, e)))?
        }
        None => TextTrainer::new(config.clone(), seed, device.clone(), train, test)
            .map_err(|e| vae_error(loaded, e))?,
    };
    trainer.eval_values = backend.eval_values();
    target.prepare(force)?;
    if checkpoint.is_none() {
        run.write(VOCAB_FILE, &vocab.to_json_bytes())?;
    }
    let what = if config.has_latent() {
        format!(
            "a sentence VAE ({:?} encoder {}, {:?} decoder {}, z = {})",
            config.encoder.cell,
            config.encoder.hidden,
            config.decoder.cell,
            config.decoder.hidden,
            config.latent
        )
    } else {
        format!(
            "a {:?} language model ({} hidden units, no latent code)",
            config.decoder.cell, config.decoder.hidden
        )
    };
    tracing::info!(
        "training {what} on {} sentences ({n_tokens_train} tokens; {} held out) from {}; vocabulary {v} \
         ({train_oov} training tokens now <unk>, {test_oov} held-out); {} truncated at max_length; {} steps of {} \
         sentences on {backend}",
        trainer.train.len(),
        trainer.test.as_ref().map_or(0, |t| t.len()),
        corpora.train.path.display(),
        corpora.train.truncated,
        trainer.total_steps(),
        config.train.batch_size
    );
    if run_training(&mut trainer, run, &loaded.config.run, stop_after, &|e| {
        vae_error(loaded, e)
    })? == Outcome::Stopped
    {
        return Ok(());
    }
    refit_best_model(run, &config, &trainer, seed).map_err(|e| vae_error(loaded, e))?;
    let (diag, _) = trainer
        .final_diagnostics()
        .map_err(|e| vae_error(loaded, e))?;
    let eval_set = trainer
        .test
        .clone()
        .unwrap_or_else(|| trainer.train.for_evaluation());
    let eval_tokens = eval_set.units(&(0..eval_set.len()).collect::<Vec<_>>());
    let mut model = trainer.model.valid();
    let plain = device.clone().without_autodiff();
    let guidance = calibrate_run_guidance(run, &config, &mut model, seed, &plain)?;
    let z = sample_prior(model.prior(), 5, seed, &plain);
    let z = model.condition(z, &text_label::prior_classes(&model, 5, seed));
    let samples: Vec<String> = decode(&model, z, Decoding::Greedy, 50)
        .iter()
        .map(|ids| vocab.decode(ids).join(" "))
        .collect();
    let s = &trainer.state;
    let nll = diag.iw.map(|w| w.nll);
    let classification = text_label::scores(&config, &model, &trainer, &hidden, &plain, seed);
    let shown = crate::text_view::shown_sentences(&model, &vocab, &eval_set.data, &plain);
    let summary = json!({
        "model": "text",
        "architecture": {
            "latent": config.latent,
            "embedding": config.embedding,
            "encoder": config.has_latent().then_some(&config.encoder),
            "decoder": config.decoder,
            "conditioning": config.has_latent().then_some(&config.conditioning),
            "vocabulary": v,
        },
        "strategy": config.estep.strategy,
        "objective": config.objective.kind,
        "n_train": trainer.train.len(),
        "n_test": trainer.test.as_ref().map(|t| t.len()),
        "evaluated_on": if trainer.test.is_some() { "test" } else { "train" },
        "tokens_evaluated": eval_tokens,
        "epochs": s.epoch + u64::from(s.batch_in_epoch > 0),
        "steps": s.step,
        "early_stopped": s.finished && s.step < trainer.total_steps(),
        "best_heldout_loss": s.best_loss,
        "training_seconds": s.seconds,
        "tokens_per_second": s.units as f64 / s.seconds.max(1e-12),
        "elbo": diag.elbo,
        "reconstruction": diag.reconstruction,
        "kl": diag.kl,
        "kl_per_dim": diag.kl_per_dim,
        "active_units": if config.has_latent() { diag.active_units } else { 0 },
        "mutual_information": diag.mutual_information,
        "iw_nll": nll,
        "iw_samples": diag.iw.map(|w| w.samples),
        "iw_nll_std_err": diag.iw.map(|w| w.std_err),
        "perplexity": nll.map(|n| (n * eval_set.len() as f64 / eval_tokens.max(1) as f64).exp()),
        "greedy_samples": samples,
        "reconstructions": shown.reconstructions,
        "interpolation": shown.interpolation,
        "classification": classification,
        "guidance_calibration": guidance,
        "backend": backend,
        "seed": seed,
    });
    run.write_json(RunDir::SUMMARY, &summary)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    Ok(())
}

/// Gives the best model of an earlier epoch (`model_best.bpk`) the end-of-training refit of q(y | x)
/// that the last one got (see `emvae_text::refit`); nothing where the last epoch was the best (the two
/// files are the same) or without a label latent.
fn refit_best_model(
    run: &RunDir,
    config: &TextVaeConfig,
    trainer: &TextTrainer,
    seed: u64,
) -> Result<(), VaeError> {
    let io = |e: std::io::Error| VaeError::Checkpoint(format!("{BEST_MODEL_FILE}: {e}"));
    if config.label.is_none() || !run.exists(BEST_MODEL_FILE) {
        return Ok(());
    }
    let best = std::fs::read(run.path(BEST_MODEL_FILE)).map_err(io)?;
    if best == std::fs::read(run.path(MODEL_FILE)).map_err(io)? {
        return Ok(());
    }
    let plain = trainer.device.clone().without_autodiff();
    let fresh = TextVae::new(config, config.vocab_size, seed, &plain);
    let mut model = load_model(fresh, &best)?;
    if let Some(r) = model.refit_classifier(&trainer.train.data, seed) {
        tracing::info!(
            "{BEST_MODEL_FILE} (an earlier epoch's) refitted likewise: q(y | x) agrees with its posterior on \
             {:.1}% of the unlabelled sentences",
            100.0 * r.agreement_after
        );
        run.write(BEST_MODEL_FILE, &model_bytes(model)?)
            .map_err(|e| VaeError::Checkpoint(format!("{BEST_MODEL_FILE}: {e}")))?;
    }
    Ok(())
}

/// A trained text model of a run directory with its vocabulary.
pub(crate) struct Trained {
    pub loaded: LoadedConfig,
    pub run: RunDir,
    pub vocab: Vocab,
    pub model: TextVae,
    pub device: Device,
    pub backend: crate::backend::Backend,
}

pub(crate) fn open_trained(
    dir: &Path,
    which: ModelFile,
    backend: Option<crate::backend::Backend>,
) -> CliResult<Trained> {
    let (loaded, run) = open_run(dir, None)?;
    let vocab = read_vocab(&run)?;
    let mut config = loaded.text().clone();
    config.vocab_size = vocab.len();
    let (device, backend) = device(&loaded, backend)?;
    config.host_kernels = backend.text_kernels();
    let device = device.without_autodiff();
    let (path, bytes) = read_model_bytes(&run, which)?;
    let fresh = TextVae::new(&config, vocab.len(), loaded.config.seed, &device);
    let model = load_model(fresh, &bytes).map_err(|e| {
        CliError::user(format!(
            "{}: {e} (does {VOCAB_FILE} belong to this run?)",
            path.display()
        ))
    })?;
    let mut model = model.valid();
    if config.label.as_ref().is_some_and(|l| l.guidance.is_none()) {
        model.shape.guidance = match stored_guidance(&run)? {
            Some(g) => g,
            None => {
                let g = calibrate_guidance(&model, loaded.config.seed, &device).guidance;
                tracing::warn!(
                    "{} has no {DECODING_FILE} (its training did not finish writing it): the label guidance, \
                     calibrated now, is {g}",
                    run.root().display()
                );
                g
            }
        };
    }
    Ok(Trained {
        loaded,
        run,
        vocab,
        model,
        device,
        backend,
    })
}

/// The label guidance a run calibrated when its training ended (`[text.label]` without `guidance`),
/// beside its model files; `None` where the file is absent.
const DECODING_FILE: &str = "decoding.json";

fn stored_guidance(run: &RunDir) -> CliResult<Option<f64>> {
    if !run.exists(DECODING_FILE) {
        return Ok(None);
    }
    let path = run.path(DECODING_FILE);
    let bad = |why: String| CliError::user(format!("{}: {why}", path.display()));
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    match value["guidance"].as_f64() {
        Some(g) if g.is_finite() && g >= 0.0 => Ok(Some(g)),
        _ => Err(bad("\"guidance\" must be a number >= 0".into())),
    }
}

/// Calibrates `model`'s label guidance where the config leaves it to calibration, and records it in
/// the run directory for later commands; returns the calibration's JSON (`Null` otherwise).
fn calibrate_run_guidance(
    run: &RunDir,
    config: &TextVaeConfig,
    model: &mut TextVae,
    seed: u64,
    device: &Device,
) -> CliResult<serde_json::Value> {
    if config.label.as_ref().is_none_or(|l| l.guidance.is_some()) {
        return Ok(serde_json::Value::Null);
    }
    let c = calibrate_guidance(model, seed, device);
    model.shape.guidance = c.guidance;
    let tried: Vec<serde_json::Value> = c
        .tried
        .iter()
        .map(|(g, a)| json!({"guidance": g, "guide_agreement": a}))
        .collect();
    let record = json!({
        "guidance": c.guidance,
        "criterion": format!(
            "the smallest guidance at which q(y | x) assigns at least {} of each class's {} samples to it, \
             sampled at temperature 1 and decoded greedily (the worst class and decoding)",
            emvae_text::guidance::TARGET,
            emvae_text::guidance::SAMPLES_PER_CLASS
        ),
        "tried": tried,
    });
    tracing::info!(
        "label guidance calibrated to {} (q(y | x)'s agreement with the samples' classes, worst class and \
         decoding, per guidance: {})",
        c.guidance,
        c.tried
            .iter()
            .map(|(g, a)| format!("{g}: {:.0}%", 100.0 * a))
            .collect::<Vec<_>>()
            .join(", ")
    );
    run.write_json(DECODING_FILE, &record)?;
    Ok(record)
}

/// `t` with `--guidance` in place of the run's label guidance, where given.
pub(crate) fn with_guidance(mut t: Trained, args: &DecodingArgs) -> CliResult<Trained> {
    if let Some(g) = args.guidance {
        if !(g.is_finite() && g >= 0.0) {
            return Err(CliError::user(format!(
                "--guidance: must be a number >= 0, got {g}"
            )));
        }
        if t.model.n_classes() == 0 {
            return Err(CliError::user(format!(
                "--guidance: the model of {} has no label latent ([text.label]) to guide",
                t.run.root().display()
            )));
        }
        t.model.shape.guidance = g;
    }
    Ok(t)
}

pub(crate) fn decoding_of(
    args: &DecodingArgs,
    sampling_default: bool,
    seed: u64,
) -> CliResult<Decoding> {
    if let Some(b) = args.beam {
        if b == 0 {
            return Err(CliError::user("--beam: the width must be at least 1"));
        }
        return Ok(Decoding::Beam { width: b });
    }
    if let Some(t) = args.temperature {
        if !(t.is_finite() && t > 0.0) {
            return Err(CliError::user(format!(
                "--temperature: must be a number > 0, got {t}"
            )));
        }
        return Ok(Decoding::Sample {
            temperature: t,
            seed,
        });
    }
    if sampling_default && !args.greedy {
        return Ok(Decoding::Sample {
            temperature: 1.0,
            seed,
        });
    }
    Ok(Decoding::Greedy)
}

/// The sentences a command reads: `--text FILE`, else the run's held-out (or training) sentences.
pub(crate) fn command_sentences(
    t: &Trained,
    text: Option<&Path>,
) -> CliResult<(Corpus, TextData, Vec<Vec<String>>)> {
    let opts = CorpusOptions {
        max_length: t.loaded.text().max_length,
        ..Default::default()
    };
    let corpus = match text {
        Some(p) => read_corpus(p, &opts).map_err(CliError::user)?,
        None => {
            let c = load_corpora(&t.loaded)?;
            c.test.unwrap_or(c.train)
        }
    };
    let (data, _) =
        TextData::new(&corpus, &t.vocab, &corpus.label_names()).map_err(CliError::user)?;
    let unknown = corpus
        .sentences
        .iter()
        .map(|s| t.vocab.encode(s).1)
        .collect::<Vec<_>>();
    let n_unknown: usize = unknown.iter().map(Vec::len).sum();
    if n_unknown > 0 {
        tracing::warn!(
            "{n_unknown} words are not in the run's vocabulary and were read as <unk> (listed per sentence as \
             \"unknown_words\")"
        );
    }
    Ok((corpus, data, unknown))
}

pub(crate) fn words(vocab: &Vocab, ids: &[u32]) -> String {
    vocab.decode(ids).join(" ")
}

pub fn encode_cmd(args: &EncodeArgs) -> CliResult<()> {
    let t = open_trained(&args.run.run, args.which.file(), args.run.backend)?;
    let (corpus, data, unknown) =
        command_sentences(&t, args.text.as_deref().or(args.run.data.as_deref()))?;
    let (mean, log_var) = encode(&t.model, &data, &t.device);
    let l = t.model.shape.latent;
    let mut header: Vec<String> = vec!["index".into()];
    header.extend((0..l).map(|i| format!("mean{i}")));
    header.extend((0..l).map(|i| format!("log_var{i}")));
    let mut w = RowWriter::new(args.out.format, &header);
    for i in 0..data.len() {
        let (m, lv) = (&mean[i * l..(i + 1) * l], &log_var[i * l..(i + 1) * l]);
        w.row(
            json!({"index": i, "text": corpus.sentences[i].join(" "), "z": m, "mean": m, "log_var": lv,
                   "unknown_words": unknown[i]}),
            std::iter::once(i.to_string())
                .chain(m.iter().chain(lv).map(|v| crate::output::num(*v))),
        );
    }
    w.finish(args.out.output.as_deref())
}

/// Latent codes of a file: JSON lines with a `z` (or `mean`) array, or comma/space-separated numbers.
fn read_latents(path: &Path, latent: usize) -> CliResult<Vec<Vec<f64>>> {
    let bytes =
        std::fs::read(path).map_err(|e| CliError::user(format!("{}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::user(format!("{}: not UTF-8 text", path.display())))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = |m: String| CliError::user(format!("{}:{}: {m}", path.display(), i + 1));
        let row: Vec<f64> = if line.starts_with('{') {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| at(format!("not JSON: {e}")))?;
            let arr = v
                .get("z")
                .or_else(|| v.get("mean"))
                .and_then(|a| a.as_array())
                .ok_or_else(|| at("a JSON line needs a \"z\" (or \"mean\") array".into()))?;
            arr.iter()
                .map(|x| {
                    x.as_f64()
                        .ok_or_else(|| at(format!("`{x}` is not a number")))
                })
                .collect::<CliResult<_>>()?
        } else {
            let cells: Vec<&str> = line
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|c| !c.is_empty())
                .collect();
            if rows.is_empty() && cells.iter().all(|c| c.parse::<f64>().is_err()) {
                continue; // a CSV header
            }
            cells
                .iter()
                .map(|c| {
                    c.parse::<f64>()
                        .map_err(|_| at(format!("`{c}` is not a number")))
                })
                .collect::<CliResult<_>>()?
        };
        if row.len() != latent {
            return Err(at(format!(
                "{} values, but the model's latent code has {latent} dimensions",
                row.len()
            )));
        }
        if let Some(bad) = row.iter().find(|x| !x.is_finite()) {
            return Err(at(format!("{bad} is not a finite number")));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(CliError::user(format!(
            "{}: no latent codes",
            path.display()
        )));
    }
    Ok(rows)
}

/// Decodes codes `z` (with classes `classes` of y for a model with a label latent) and writes one row
/// per sentence, with `extra(i)`'s fields.
pub(crate) fn write_sentences(
    t: &Trained,
    z: &[Vec<f64>],
    classes: &[usize],
    decoding: Decoding,
    max_words: usize,
    extra: impl Fn(usize) -> serde_json::Value,
    out: &crate::args::OutputArgs,
) -> CliResult<()> {
    let c = t.model.condition(latent_tensor(z, &t.device), classes);
    let ids = decode(&t.model, c, decoding, max_words);
    let class_names = t.loaded.text().label.as_ref().map(|l| &l.classes);
    let mut w = RowWriter::new(out.format, &["index".into(), "text".into()]);
    for (i, s) in ids.iter().enumerate() {
        let text = words(&t.vocab, s);
        let mut j = json!({"index": i, "text": text, "z": z[i]});
        if let (Some(names), Some(obj)) = (class_names, j.as_object_mut()) {
            obj.insert("label".into(), json!(names[classes[i]]));
        }
        if let (Some(obj), serde_json::Value::Object(more)) = (j.as_object_mut(), extra(i)) {
            obj.extend(more);
        }
        w.row(
            j,
            [i.to_string(), format!("\"{}\"", text.replace('"', "\"\""))],
        );
    }
    w.finish(out.output.as_deref())
}

pub fn sample(args: &SampleArgs) -> CliResult<()> {
    let t = with_guidance(
        open_trained(&args.run, args.which.file(), None)?,
        &args.decoding,
    )?;
    if args.n_samples == 0 {
        return Err(CliError::user("-n: at least one sample"));
    }
    let decoding = decoding_of(&args.decoding, true, args.seed)?;
    let z = sample_prior(t.model.prior(), args.n_samples, args.seed, &t.device);
    let l = t.model.shape.latent;
    let rows: Vec<Vec<f64>> = emvae_core::tensor::tensor_to_vec(z)
        .chunks(l)
        .map(<[f64]>::to_vec)
        .collect();
    let classes = text_label::classes_for(&t, rows.len(), &args.decoding, || {
        Ok(text_label::prior_classes(&t.model, rows.len(), args.seed))
    })?;
    write_sentences(
        &t,
        &rows,
        &classes,
        decoding,
        args.decoding.max_words,
        |_| json!({}),
        &args.out,
    )
}

pub fn decode_cmd(args: &DecodeArgs) -> CliResult<()> {
    let t = with_guidance(
        open_trained(&args.run, args.which.file(), args.backend)?,
        &args.decoding,
    )?;
    let z = read_latents(&args.z, t.model.shape.latent)?;
    let decoding = decoding_of(&args.decoding, false, 0)?;
    let classes = text_label::classes_for(&t, z.len(), &args.decoding, || {
        Err(text_label::label_needed(&t, "decode"))
    })?;
    write_sentences(
        &t,
        &z,
        &classes,
        decoding,
        args.decoding.max_words,
        |_| json!({}),
        &args.out,
    )
}

pub fn reconstruct(args: &ReconstructArgs) -> CliResult<()> {
    let e = &args.encode;
    let t = with_guidance(
        open_trained(&e.run.run, e.which.file(), e.run.backend)?,
        &args.decoding,
    )?;
    reencode(&t, args)
}

/// Encodes each sentence (posterior mean) and decodes it again: with `--label` as y where given (a
/// transfer), else the guide's most probable class, which a model with a label latent reports as
/// `from`.
pub(crate) fn reencode(t: &Trained, args: &ReconstructArgs) -> CliResult<()> {
    let e = &args.encode;
    let (corpus, data, unknown) =
        command_sentences(t, e.text.as_deref().or(e.run.data.as_deref()))?;
    let (mean, _) = encode(&t.model, &data, &t.device);
    let l = t.model.shape.latent;
    let z: Vec<Vec<f64>> = mean.chunks(l).map(<[f64]>::to_vec).collect();
    let decoding = decoding_of(&args.decoding, false, 0)?;
    let guide = guide_classes(&t.model, &data, &t.device);
    let classes = text_label::classes_for(t, z.len(), &args.decoding, || Ok(guide.clone()))?;
    let names = t.loaded.text().label.as_ref().map(|l| &l.classes);
    write_sentences(
        t,
        &z,
        &classes,
        decoding,
        args.decoding.max_words,
        |i| {
            let mut row =
                json!({"input": corpus.sentences[i].join(" "), "unknown_words": unknown[i]});
            if let (Some(names), Some(obj)) = (names, row.as_object_mut()) {
                obj.insert("from".into(), json!(names[guide[i]]));
            }
            row
        },
        &e.out,
    )
}

pub fn interpolate(args: &InterpolateArgs) -> CliResult<()> {
    let t = with_guidance(
        open_trained(&args.run, args.which.file(), args.backend)?,
        &args.decoding,
    )?;
    if !t.model.shape.has_latent {
        return Err(CliError::user(format!(
            "{} is a language model without a latent code: nothing to interpolate",
            args.run.display()
        )));
    }
    if args.steps < 2 {
        return Err(CliError::user("--steps: at least 2 (both ends)"));
    }
    let mut ends = Vec::new();
    for (flag, text) in [("--from", &args.from), ("--to", &args.to)] {
        let s = parse_sentence(text);
        if s.is_empty() {
            return Err(CliError::user(format!("{flag}: the sentence is empty")));
        }
        let (_, unknown) = t.vocab.encode(&s);
        if !unknown.is_empty() {
            tracing::warn!(
                "{flag}: not in the vocabulary, read as <unk>: {}",
                unknown.join(" ")
            );
        }
        ends.push((s, unknown));
    }
    let line = ends
        .iter()
        .map(|(s, _)| s.join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    let corpus = parse_corpus(
        line.as_bytes(),
        Path::new("<command line>"),
        &CorpusOptions::default(),
    )
    .map_err(CliError::user)?;
    let (data, _) = TextData::new(&corpus, &t.vocab, &[]).map_err(CliError::user)?;
    let (mean, _) = encode(&t.model, &data, &t.device);
    let l = t.model.shape.latent;
    let z = homotopy(&mean[..l], &mean[l..2 * l], args.steps);
    let decoding = decoding_of(&args.decoding, false, 0)?;
    let steps = args.steps;
    let unknown: Vec<String> = ends.iter().flat_map(|(_, u)| u.clone()).collect();
    let classes = text_label::classes_for(&t, z.len(), &args.decoding, || {
        // The class the guide gives the first sentence, along the whole line.
        let first = guide_classes(&t.model, &data, &t.device)
            .first()
            .copied()
            .unwrap_or(0);
        Ok(vec![first; steps])
    })?;
    write_sentences(
        &t,
        &z,
        &classes,
        decoding,
        args.decoding.max_words,
        |i| json!({"t": i as f64 / (steps - 1) as f64, "unknown_words": unknown}),
        &args.out,
    )
}

pub fn eval(args: &EvalArgs) -> CliResult<()> {
    let t = open_trained(&args.run.run, args.which.file(), args.run.backend)?;
    let (_, data, _) = command_sentences(&t, args.run.data.as_deref())?;
    let v = t.vocab.len();
    let set = TextDataset::evaluation(data, v);
    let k = args
        .iw_samples
        .unwrap_or(t.loaded.text().eval.final_iw_samples);
    let d = diagnose(
        &t.model,
        &set,
        &PosteriorSource::Encoder,
        &t.device,
        DiagnoseOptions {
            iw_samples: Some(k),
            seed: t.loaded.config.seed,
            values_per_evaluation: t.backend.eval_values(),
            ..Default::default()
        },
    );
    let tokens = set.units(&(0..set.len()).collect::<Vec<_>>());
    let nll = d.iw.map(|w| w.nll);
    let out = json!({
        "run": t.run.root(),
        "model_file": args.which.file().name(),
        "n": set.len(),
        "tokens": tokens,
        "elbo": d.elbo,
        "kl": d.kl,
        "active_units": if t.model.shape.has_latent { d.active_units } else { 0 },
        "mutual_information": d.mutual_information,
        "iw_nll": nll,
        "iw_samples": k,
        "perplexity": nll.map(|n| (n * set.len() as f64 / tokens.max(1) as f64).exp()),
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

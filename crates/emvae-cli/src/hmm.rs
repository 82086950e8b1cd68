//! `emvae` commands for hidden Markov models: `train` (Baum-Welch), `eval` (log-likelihood; per-sentence
//! NLL and perplexity on a corpus), `predict` (Viterbi paths) and `sample`.
//!
//! Observations are the rows of `[data]` cut into sequences by `[sequences]` (a lengths file or a fixed
//! length; one sequence without it), or, under `[corpus]`, the sentences of a text corpus as words.

use emvae_core::data::Dataset;
use emvae_core::run::RunDir;
use emvae_em::hmm::{Emission, Hmm, HmmJson, Observations, Sequences, read_lengths};
use serde_json::{Value, json};

use crate::args::{EvalArgs, PredictArgs, SampleArgs};
use crate::corpus::{self, Symbols};
use crate::error::{CliError, CliResult};
use crate::exact::{self, Job, Outcome, load_model};
use crate::mixtures::em_error;
use crate::output::{RowWriter, num};
use crate::runconfig::LoadedConfig;
use crate::runs::{TrainTarget, open_run, open_run_data};

/// Sequences of a corpus, with the symbols they came from (for perplexity).
fn from_symbols(
    loaded: &LoadedConfig,
    symbols: &Symbols,
    n_symbols: usize,
) -> CliResult<Sequences> {
    Sequences::categorical(&symbols.sequences, n_symbols, &symbols.source)
        .map_err(|e| em_error(loaded, e.into()))
}

/// The lengths of `[sequences]` for `n` rows.
fn lengths(loaded: &LoadedConfig, n: usize) -> CliResult<Option<Vec<usize>>> {
    let Some(s) = &loaded.config.sequences else {
        return Ok(None);
    };
    if let Some(path) = &s.lengths_path {
        return Ok(Some(read_lengths(path)?));
    }
    Ok(s.length.map(|l| {
        let mut v = vec![l; n / l];
        if !n.is_multiple_of(l) {
            v.push(n % l);
        }
        v
    }))
}

/// The observations of a data file (rows, or one column of symbols).
fn from_rows(loaded: &LoadedConfig, data: &Dataset, emission: Emission) -> CliResult<Sequences> {
    let lengths = lengths(loaded, data.n_rows())?;
    let n_symbols = loaded.config.sequences.as_ref().and_then(|s| s.n_symbols);
    let seqs = match emission {
        Emission::Gaussian => Sequences::from_dataset(data, lengths),
        Emission::Categorical => Sequences::categorical_from_dataset(data, lengths, n_symbols),
    };
    let lengths_path = loaded
        .config
        .sequences
        .as_ref()
        .and_then(|s| s.lengths_path.as_ref());
    seqs.map_err(|e| {
        let err = em_error(loaded, e.into());
        match lengths_path {
            Some(p) => err.map_message(|m| format!("{m} (sequence lengths from {})", p.display())),
            None => err,
        }
    })
}

/// Per-sentence NLL and perplexity of `seqs` (a corpus's sentences) under `model`.
fn text_figures(model: &Hmm, seqs: &Sequences, symbols: &Symbols) -> CliResult<Value> {
    let per = model
        .score_sequences(seqs)
        .map_err(|e| CliError::runtime(e.to_string()))?;
    Ok(corpus::text_figures(&per, symbols))
}

pub fn train(target: &TrainTarget, force: bool, stop_after: Option<usize>) -> CliResult<()> {
    let loaded = &target.loaded;
    let params = loaded
        .config
        .hmm
        .clone()
        .ok_or_else(|| CliError::user("model = \"hmm\" needs [hmm]"))?
        .seed(loaded.config.seed);
    let valid = params
        .check()
        .map_err(|e| loaded.invalid(e.within("hmm")))?;
    let emission = valid.emission();
    let (data, text) = if loaded.config.corpus.is_some() {
        let (vocab, train, test) = corpus::training(loaded)?;
        let seqs = from_symbols(loaded, &train, vocab.len())?;
        let test_seqs = match &test {
            Some(t) => Some(from_symbols(loaded, t, vocab.len())?),
            None => None,
        };
        (seqs, Some((vocab, train, test, test_seqs)))
    } else {
        let rows = loaded.config.data.load()?;
        (from_rows(loaded, &rows, emission)?, None)
    };
    let error = |e| em_error(loaded, e);
    valid.check_data(&data).map_err(error)?;
    let p = valid.params().clone();
    let job = Job {
        description: format!(
            "fitting a {}-state HMM with {} emissions to {} sequences ({} observations) from {}",
            p.n_states,
            emission,
            data.n_sequences(),
            data.n_observations(),
            data.source().display()
        ),
        max_iter: p.max_iter,
        n_init: p.n_init,
        files: text
            .iter()
            .map(|(vocab, ..)| (corpus::VOCAB_FILE, vocab.to_json_bytes()))
            .collect(),
        fit: Box::new(|observer, resume| valid.fit_with(&data, observer, resume)),
        error: &error,
        finish: Box::new(|model: &Hmm| {
            let total = model.total_score(&data).map_err(error)?;
            let n = data.n_observations();
            let (bic, aic) = model.criteria(total, n);
            let mut summary = json!({
                "model": "hmm",
                "emission": emission.to_string(),
                "n_states": p.n_states,
                "n_sequences": data.n_sequences(),
                "n_observations": n,
                "log_likelihood": total / n as f64,
                "log_likelihood_total": total,
                "lower_bound": model.lower_bound,
                "bic": bic,
                "aic": aic,
                "n_parameters": model.n_parameters(),
                "n_iter": model.n_iter,
                "converged": model.converged,
                "best_restart": model.best_restart,
            });
            if let Some((_, train, test, test_seqs)) = &text {
                summary["train"] = text_figures(model, &data, train)?;
                if let (Some(t), Some(s)) = (test, test_seqs) {
                    summary["test"] = text_figures(model, s, t)?;
                }
            }
            let warnings = exact::warn_unconverged(model.converged, p.max_iter, "hmm");
            Ok(Outcome {
                model: serde_json::to_value(HmmJson::from(model))
                    .map_err(|e| CliError::runtime(format!("cannot serialise the model: {e}")))?,
                summary,
                warnings,
                headline: format!(
                    "log-likelihood {:.6} per observation, {} iterations, converged: {}",
                    total / n as f64,
                    model.n_iter,
                    model.converged
                ),
            })
        }),
    };
    exact::train(target, force, stop_after, job)
}

/// The sequences of `eval` / `predict`: the run's data or `--data`, cut as in training.
fn sequences(
    loaded: &LoadedConfig,
    run: &RunDir,
    model: &Hmm,
) -> CliResult<(Sequences, Option<Symbols>)> {
    if loaded.config.corpus.is_some() {
        let (vocab, symbols) = corpus::evaluation(loaded, run)?;
        let seqs = from_symbols(loaded, &symbols, vocab.len())?;
        return Ok((seqs, Some(symbols)));
    }
    let rows = exact::rows(loaded)?;
    let emission = match model.parameters.emissions() {
        emvae_em::hmm::Emissions::Gaussian(_) => Emission::Gaussian,
        emvae_em::hmm::Emissions::Categorical(_) => Emission::Categorical,
    };
    Ok((from_rows(loaded, &rows, emission)?, None))
}

pub fn eval(args: &EvalArgs) -> CliResult<()> {
    let (loaded, run) = open_run_data(&args.run)?;
    let model: Hmm = load_model::<HmmJson, _>(&run, "hidden-Markov-model")?;
    let (seqs, symbols) = sequences(&loaded, &run, &model)?;
    let total = model.total_score(&seqs).map_err(|e| em_error(&loaded, e))?;
    let n = seqs.n_observations();
    let (bic, aic) = model.criteria(total, n);
    let mut report = json!({
        "data": seqs.source().display().to_string(),
        "n_sequences": seqs.n_sequences(),
        "n_observations": n,
        "log_likelihood": total / n as f64,
        "log_likelihood_total": total,
        "bic": bic,
        "aic": aic,
    });
    if let Some(s) = &symbols {
        report["text"] = text_figures(&model, &seqs, s)?;
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    Ok(())
}

/// The Viterbi path of every sequence, with `log p(x, z*)`.
pub fn predict(args: &PredictArgs) -> CliResult<()> {
    let (loaded, run) = open_run_data(&args.run)?;
    let model: Hmm = load_model::<HmmJson, _>(&run, "hidden-Markov-model")?;
    let (seqs, _) = sequences(&loaded, &run, &model)?;
    let decoded = model.decode(&seqs).map_err(|e| em_error(&loaded, e))?;
    let header = ["sequence", "log_prob", "states"].map(String::from);
    let mut out = RowWriter::new(args.out.format, &header);
    for (i, d) in decoded.iter().enumerate() {
        let states: Vec<String> = d.states.iter().map(ToString::to_string).collect();
        out.row(
            json!({"sequence": i, "log_prob": d.log_prob, "states": d.states}),
            [i.to_string(), num(d.log_prob), states.join(" ")],
        );
    }
    out.finish(args.out.output.as_deref())
}

/// Sequences drawn from the model: `-n` of `--length` steps (a corpus model: `--max-words` words, cut at
/// the first `<eos>`), with their state paths.
pub fn sample(args: &SampleArgs) -> CliResult<()> {
    let (loaded, run) = open_run(&args.run, None)?;
    let model: Hmm = load_model::<HmmJson, _>(&run, "hidden-Markov-model")?;
    let text = loaded.config.corpus.is_some();
    let length = if text {
        args.decoding.max_words
    } else {
        args.length as usize
    };
    let (seqs, states) = model
        .sample(args.n_samples, length, args.seed)
        .map_err(|e| em_error(&loaded, e))?;
    let vocab = if text {
        Some(corpus::run_vocab(&run)?)
    } else {
        None
    };
    let header = ["states", "x"].map(String::from);
    let mut out = RowWriter::new(args.out.format, &header);
    let offsets = seqs.offsets();
    for (i, z) in states.iter().enumerate() {
        let mut range = offsets[i]..offsets[i] + seqs.lengths()[i];
        // A sentence ends at its first `<eos>`: so do its states.
        if let (Observations::Categorical { symbols, .. }, true) = (seqs.observations(), text) {
            let eos = emvae_text::vocab::EOS as usize;
            if let Some(p) = symbols[range.clone()].iter().position(|&s| s == eos) {
                range.end = range.start + p + 1;
            }
        }
        let z = &z[..range.len()];
        let (x, cell): (Value, String) = match (seqs.observations(), &vocab) {
            (Observations::Categorical { symbols, .. }, Some(v)) => {
                let text = corpus::decode(v, &symbols[range]);
                (json!(text), text)
            }
            (Observations::Categorical { symbols, .. }, None) => {
                let s = &symbols[range];
                (
                    json!(s),
                    s.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            }
            (Observations::Gaussian(m), _) => {
                let rows: Vec<&[f64]> = range.map(|r| m.row(r)).collect();
                (
                    json!(rows),
                    serde_json::to_string(&rows).unwrap_or_default(),
                )
            }
        };
        let key = if vocab.is_some() { "text" } else { "x" };
        let mut object = serde_json::Map::new();
        object.insert("states".into(), json!(z));
        object.insert(key.into(), x);
        let states: Vec<String> = z.iter().map(ToString::to_string).collect();
        out.row(Value::Object(object), [states.join(" "), cell]);
    }
    out.finish(args.out.output.as_deref())
}

//! `emvae` commands for the discrete mixtures: multivariate Bernoullis (binary rows) and multinomials
//! (bag-of-words count rows, or a text corpus under `[corpus]`: the mixture of unigrams).

use emvae_core::data::Dataset;
use emvae_core::run::RunDir;
use emvae_em::EmError;
use emvae_em::discrete::bernoulli::{BernoulliMixture, BernoulliMixtureJson};
use emvae_em::discrete::multinomial::{BagOfWords, MultinomialMixture, MultinomialMixtureJson};
use serde_json::{Value, json};

use crate::args::{EvalArgs, PredictArgs, SampleArgs};
use crate::corpus::{self, Symbols};
use crate::error::{CliError, CliResult};
use crate::exact::{self, Drawn, Job, Outcome, load_model, rows};
use crate::runconfig::{LoadedConfig, ModelKind};
use crate::runs::{TrainTarget, open_run, open_run_data};

/// Turns a model error into a message, locating parameter errors in the config.
pub fn em_error(loaded: &LoadedConfig, e: EmError) -> CliError {
    match e {
        EmError::InvalidParam(p) => loaded.invalid(p.within(loaded.config.model.name())),
        EmError::Data(d) => d.into(),
        EmError::FeatureMismatch { expected, found } => CliError::user(format!(
            "data error: {found} features, but the model was fitted on {expected}"
        )),
        EmError::IllConditioned { .. } => CliError::user(format!("fit failed: {e}")),
        EmError::Checkpoint(m) => CliError::user(format!(
            "cannot resume from {}: {m}",
            exact::CHECKPOINT_FILE
        )),
        EmError::Observer(inner) => CliError::runtime(inner),
    }
}

fn to_value<T: serde::Serialize>(t: &T) -> CliResult<Value> {
    serde_json::to_value(t)
        .map_err(|e| CliError::runtime(format!("cannot serialise the model: {e}")))
}

pub fn train(target: &TrainTarget, force: bool, stop_after: Option<usize>) -> CliResult<()> {
    match target.loaded.config.model {
        ModelKind::BernoulliMixture => train_bernoulli(target, force, stop_after),
        _ => train_multinomial(target, force, stop_after),
    }
}

fn train_bernoulli(target: &TrainTarget, force: bool, stop_after: Option<usize>) -> CliResult<()> {
    let loaded = &target.loaded;
    let mut params =
        loaded.config.bernoulli_mixture.clone().ok_or_else(|| {
            CliError::user("model = \"bernoulli_mixture\" needs [bernoulli_mixture]")
        })?;
    params = params.seed(loaded.config.seed);
    let valid = params
        .check()
        .map_err(|e| loaded.invalid(e.within("bernoulli_mixture")))?;
    if let Some(settings) = &valid.params().online {
        let error = |e| em_error(loaded, e);
        return crate::gmm_online::train_discrete(
            target,
            force,
            stop_after,
            settings,
            &mut |rows, observer| {
                let (model, summary) = valid.fit_online(rows, settings, observer)?;
                Ok((
                    serde_json::to_value(BernoulliMixtureJson::from(&model)).unwrap_or_default(),
                    summary,
                ))
            },
            &error,
        );
    }
    let data = loaded.config.data.load()?;
    let p = valid.params().clone();
    let error = |e| em_error(loaded, e);
    let job = Job {
        description: format!(
            "fitting a {}-component Bernoulli mixture to {} binary rows x {} features ({} labelled) from {}",
            p.n_components,
            data.n_rows(),
            data.n_cols(),
            data.n_labelled(),
            data.source.display()
        ),
        max_iter: p.max_iter,
        n_init: p.n_init,
        files: Vec::new(),
        fit: Box::new(|observer, resume| valid.fit_with(&data, observer, resume)),
        error: &error,
        finish: Box::new(|model: &BernoulliMixture| {
            let score = model.score(&data).map_err(&error)?;
            let (bic, aic) = model.criteria(score, data.n_rows());
            Ok(Outcome {
                model: to_value(&BernoulliMixtureJson::from(model))?,
                summary: json!({
                    "model": "bernoulli_mixture",
                    "n_components": p.n_components,
                    "n_samples": data.n_rows(),
                    "n_features": data.n_cols(),
                    "n_labelled": data.n_labelled(),
                    "log_likelihood": score,
                    "lower_bound": model.lower_bound,
                    "bic": bic,
                    "aic": aic,
                    "n_parameters": model.n_parameters(),
                    "n_iter": model.n_iter,
                    "converged": model.converged,
                    "best_restart": model.best_restart,
                }),
                warnings: exact::warn_unconverged(model.converged, p.max_iter, "bernoulli_mixture"),
                headline: format!(
                    "log-likelihood {score:.6}, {} iterations, converged: {}",
                    model.n_iter, model.converged
                ),
            })
        }),
    };
    exact::train(target, force, stop_after, job)
}

/// Per-sentence NLL and perplexity (words plus `<eos>`) of `docs` under `model`.
fn text_figures(
    model: &MultinomialMixture,
    docs: &BagOfWords,
    symbols: &Symbols,
) -> CliResult<Value> {
    let per_doc = model
        .score_samples(docs)
        .map_err(|e| CliError::runtime(e.to_string()))?;
    Ok(corpus::text_figures(&per_doc, symbols))
}

fn train_multinomial(
    target: &TrainTarget,
    force: bool,
    stop_after: Option<usize>,
) -> CliResult<()> {
    let loaded = &target.loaded;
    let params = loaded
        .config
        .multinomial_mixture
        .clone()
        .ok_or_else(|| {
            CliError::user("model = \"multinomial_mixture\" needs [multinomial_mixture]")
        })?
        .seed(loaded.config.seed);
    let valid = params
        .check()
        .map_err(|e| loaded.invalid(e.within("multinomial_mixture")))?;
    let error = |e| em_error(loaded, e);
    if let Some(settings) = &valid.params().online {
        if loaded.config.corpus.is_some() {
            return Err(loaded.invalid(emvae_core::config::InvalidParam::new(
                "multinomial_mixture.online",
                "online EM streams count rows from a CSV or .npy file, not a [corpus]",
            )));
        }
        return crate::gmm_online::train_discrete(
            target,
            force,
            stop_after,
            settings,
            &mut |rows, observer| {
                let (model, summary) = valid.fit_online(rows, settings, observer)?;
                Ok((
                    serde_json::to_value(MultinomialMixtureJson::from(&model)).unwrap_or_default(),
                    summary,
                ))
            },
            &error,
        );
    }
    // A corpus (words as symbols) or a count matrix.
    let (docs, text) = if loaded.config.corpus.is_some() {
        let (vocab, train, test) = corpus::training(loaded)?;
        let docs = BagOfWords::from_token_sequences(&train.sequences, vocab.len(), &train.source)
            .map_err(|e| error(e.into()))?;
        let test_docs = match &test {
            Some(t) => Some(
                BagOfWords::from_token_sequences(&t.sequences, vocab.len(), &t.source)
                    .map_err(|e| error(e.into()))?,
            ),
            None => None,
        };
        (docs, Some((vocab, train, test, test_docs)))
    } else {
        let data: Dataset = loaded.config.data.load()?;
        (
            BagOfWords::from_dataset(&data).map_err(|e| error(e.into()))?,
            None,
        )
    };
    let p = valid.params().clone();
    let job = Job {
        description: format!(
            "fitting a {}-component multinomial mixture to {} documents over {} words from {}",
            p.n_components,
            docs.n_documents(),
            docs.vocab_size(),
            docs.source.display()
        ),
        max_iter: p.max_iter,
        n_init: p.n_init,
        files: text
            .iter()
            .map(|(vocab, ..)| (corpus::VOCAB_FILE, vocab.to_json_bytes()))
            .collect(),
        fit: Box::new(|observer, resume| valid.fit_with(&docs, observer, resume)),
        error: &error,
        finish: Box::new(|model: &MultinomialMixture| {
            let score = model.score(&docs).map_err(&error)?;
            let (bic, aic) = model.criteria(score, docs.n_documents());
            let mut summary = json!({
                "model": "multinomial_mixture",
                "n_components": p.n_components,
                "n_documents": docs.n_documents(),
                "vocab_size": docs.vocab_size(),
                "log_likelihood": score,
                "lower_bound": model.lower_bound,
                "bic": bic,
                "aic": aic,
                "n_parameters": model.n_parameters(),
                "n_iter": model.n_iter,
                "converged": model.converged,
                "best_restart": model.best_restart,
            });
            if let Some((_, train, test, test_docs)) = &text {
                summary["train"] = text_figures(model, &docs, train)?;
                if let (Some(t), Some(d)) = (test, test_docs) {
                    summary["test"] = text_figures(model, d, t)?;
                }
            }
            Ok(Outcome {
                model: to_value(&MultinomialMixtureJson::from(model))?,
                summary,
                warnings: exact::warn_unconverged(
                    model.converged,
                    p.max_iter,
                    "multinomial_mixture",
                ),
                headline: format!(
                    "log-likelihood {score:.6} per document, {} iterations, converged: {}",
                    model.n_iter, model.converged
                ),
            })
        }),
    };
    exact::train(target, force, stop_after, job)
}

/// The documents of `eval` / `predict`: the run's corpus or count rows, or `--data`.
fn documents(loaded: &LoadedConfig, run: &RunDir) -> CliResult<(BagOfWords, Option<Symbols>)> {
    if loaded.config.corpus.is_some() {
        let (vocab, symbols) = corpus::evaluation(loaded, run)?;
        let docs =
            BagOfWords::from_token_sequences(&symbols.sequences, vocab.len(), &symbols.source)
                .map_err(|e| em_error(loaded, e.into()))?;
        Ok((docs, Some(symbols)))
    } else {
        let data = rows(loaded)?;
        let docs = BagOfWords::from_dataset(&data).map_err(|e| em_error(loaded, e.into()))?;
        Ok((docs, None))
    }
}

pub fn eval(args: &EvalArgs) -> CliResult<()> {
    let (loaded, run) = open_run_data(&args.run)?;
    let err = |e| em_error(&loaded, e);
    let report = match loaded.config.model {
        ModelKind::BernoulliMixture => {
            let model: BernoulliMixture =
                load_model::<BernoulliMixtureJson, _>(&run, "Bernoulli-mixture")?;
            let data = rows(&loaded)?;
            let score = model.score(&data).map_err(err)?;
            let (bic, aic) = model.criteria(score, data.n_rows());
            json!({"data": data.source.display().to_string(), "n_samples": data.n_rows(),
                   "log_likelihood": score, "bic": bic, "aic": aic})
        }
        _ => {
            let model: MultinomialMixture =
                load_model::<MultinomialMixtureJson, _>(&run, "multinomial-mixture")?;
            let (docs, symbols) = documents(&loaded, &run)?;
            let score = model.score(&docs).map_err(err)?;
            let (bic, aic) = model.criteria(score, docs.n_documents());
            let mut report = json!({"data": docs.source.display().to_string(),
                "n_documents": docs.n_documents(), "log_likelihood": score, "bic": bic, "aic": aic});
            if let Some(s) = &symbols {
                report["text"] = text_figures(&model, &docs, s)?;
            }
            report
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    Ok(())
}

pub fn predict(args: &PredictArgs) -> CliResult<()> {
    let (loaded, run) = open_run_data(&args.run)?;
    let err = |e| em_error(&loaded, e);
    let proba = match loaded.config.model {
        ModelKind::BernoulliMixture => {
            let model: BernoulliMixture =
                load_model::<BernoulliMixtureJson, _>(&run, "Bernoulli-mixture")?;
            model.predict_proba(&rows(&loaded)?).map_err(err)?
        }
        _ => {
            let model: MultinomialMixture =
                load_model::<MultinomialMixtureJson, _>(&run, "multinomial-mixture")?;
            model
                .predict_proba(&documents(&loaded, &run)?.0)
                .map_err(err)?
        }
    };
    exact::write_responsibilities(&proba, &args.out)
}

pub fn sample(args: &SampleArgs) -> CliResult<()> {
    let (loaded, run) = open_run(&args.run, None)?;
    match loaded.config.model {
        ModelKind::BernoulliMixture => {
            let model: BernoulliMixture =
                load_model::<BernoulliMixtureJson, _>(&run, "Bernoulli-mixture")?;
            let (x, comps) = model.sample(args.n_samples, args.seed);
            exact::write_draws(&x, Drawn::Component(&comps), &args.out)
        }
        _ => {
            let model: MultinomialMixture =
                load_model::<MultinomialMixtureJson, _>(&run, "multinomial-mixture")?;
            if loaded.config.corpus.is_none() {
                return Err(CliError::user(
                    "sample: this multinomial mixture was fitted to count rows; sampled documents need a \
                     length (fit it on a [corpus] to sample sentences)",
                ));
            }
            let vocab = corpus::run_vocab(&run)?;
            sample_sentences(&model, &vocab, args)
        }
    }
}

/// Sentences from the mixture of unigrams: a component, then words until `<eos>` (at most `--max-words`).
fn sample_sentences(
    model: &MultinomialMixture,
    vocab: &emvae_text::vocab::Vocab,
    args: &SampleArgs,
) -> CliResult<()> {
    let lengths = vec![args.decoding.max_words; args.n_samples];
    let (sequences, comps) = model.sample_sequences(&lengths, args.seed);
    let mut writer = crate::output::RowWriter::new(
        args.out.format,
        &["component".to_string(), "text".to_string()],
    );
    for (seq, c) in sequences.iter().zip(&comps) {
        let text = corpus::decode(vocab, seq);
        writer.row(
            json!({"component": c, "text": text}),
            [c.to_string(), text.clone()],
        );
    }
    writer.finish(args.out.output.as_deref())
}

/// What `emvae plot` draws of a Bernoulli-mixture run: each component's probabilities `p(x_a = 1 | z =
/// j)`, a row per component, in order of mixing weight (largest first).
pub(crate) fn bernoulli_components(dir: &std::path::Path) -> CliResult<Vec<Vec<f64>>> {
    let (_, run) = open_run(dir, None)?;
    let model: BernoulliMixture = load_model::<BernoulliMixtureJson, _>(&run, "Bernoulli-mixture")?;
    let p = &model.parameters;
    let mut order: Vec<usize> = (0..p.n_components).collect();
    order.sort_by(|&a, &b| p.weights[b].total_cmp(&p.weights[a]));
    Ok(order
        .into_iter()
        .map(|j| p.probs[j * p.n_features..(j + 1) * p.n_features].to_vec())
        .collect())
}

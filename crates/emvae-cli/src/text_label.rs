//! `emvae` for a text model's label latent (`[text.label]`, the semi-supervised sentence model): which
//! training labels a run keeps, what it scores at its end (the classifiers' accuracies beside the
//! labelled-only baseline, and whether conditional samples carry their label), `classify`, `transfer`,
//! and the class y that every decoding command conditions on.

use emvae_core::rng::rng_for;
use emvae_text::baseline::BowLogistic;
use emvae_text::batch::TextData;
use emvae_text::classify::{accuracy, argmax, guide_probabilities, model_probabilities};
use emvae_text::guidance::{checked_decodings, conditional_samples};
use emvae_text::{TextTrainer, TextVae, TextVaeConfig};
use rand::Rng as _;
use serde_json::{Value, json};

use crate::args::{ClassifyArgs, DecodingArgs, ReconstructArgs};
use crate::error::{CliError, CliResult};
use crate::output::RowWriter;
use crate::text::{Trained, command_sentences, open_trained, reencode};

/// Importance samples of z behind the model's p(y | x) in a run's end-of-training scores.
const SCORE_SAMPLES: usize = 10;
/// At most this many hidden training sentences are scored by the model's p(y | x) (all by q).
const MODEL_SCORED_ROWS: usize = 2000;
/// Conditional samples per class scored by the independent classifier.
const SAMPLES_PER_CLASS: usize = 100;
/// Inverse penalty of the bag-of-words regressions (scikit-learn's default C).
const BOW_C: f64 = 1.0;

/// The labels a run with a label latent hid from training, to score it with afterwards.
pub(crate) struct Hidden {
    /// Every training sentence's label before hiding.
    train_labels: Vec<Option<u32>>,
    /// Training rows whose label was hidden.
    hidden_rows: Vec<usize>,
    /// The held-out sentences' labels (the held-out data are scored as unlabelled, `log p(x)`).
    test_labels: Option<Vec<Option<u32>>>,
}

type Encoded = (TextData, usize);

/// With a label latent: keeps `labelled_fraction` of each class's training labels (drawn from `seed`)
/// and strips the held-out labels; without one, the data as they are.
pub(crate) fn hide_labels(
    config: &TextVaeConfig,
    seed: u64,
    train: Encoded,
    test: Option<Encoded>,
) -> (Encoded, Option<Encoded>, Option<Hidden>) {
    let Some(label) = &config.label else {
        return (train, test, None);
    };
    let (kept, train_labels) = train.0.hide_labels(label.labelled_fraction, seed);
    let hidden_rows = (0..train_labels.len())
        .filter(|&r| {
            train_labels[r].is_some() && kept.labels.as_ref().is_none_or(|l| l[r].is_none())
        })
        .collect();
    let (test, test_labels) = match test {
        Some((data, oov)) => {
            let (plain, labels) = data.without_labels();
            (Some((plain, oov)), Some(labels))
        }
        None => (None, None),
    };
    let n_kept = kept.labels.iter().flatten().flatten().count();
    tracing::info!(
        "label latent over {}: {n_kept} training labels kept, {} hidden (labelled_fraction {})",
        label.classes.join(", "),
        train_labels.iter().flatten().count() - n_kept,
        label.labelled_fraction
    );
    (
        (kept, train.1),
        test,
        Some(Hidden {
            train_labels,
            hidden_rows,
            test_labels,
        }),
    )
}

/// Classes of y for `n` codes drawn from the uniform p(y) with `seed` (zeros without a label latent).
pub(crate) fn prior_classes(model: &TextVae, n: usize, seed: u64) -> Vec<usize> {
    let k = model.n_classes();
    if k == 0 {
        return vec![0; n];
    }
    let mut rng = rng_for(seed, b"prior-classes", 0);
    (0..n).map(|_| rng.random_range(0..k)).collect()
}

/// The error of a decoding command that needs `--label`.
pub(crate) fn label_needed(t: &Trained, command: &str) -> CliError {
    CliError::user(format!(
        "{command}: {} has a label latent; name the class to decode with --label (one of {})",
        t.run.root().display(),
        class_names(t).join(", ")
    ))
}

fn class_names(t: &Trained) -> Vec<String> {
    t.loaded
        .text()
        .label
        .as_ref()
        .map(|l| l.classes.clone())
        .unwrap_or_default()
}

/// The class of y for each of `n` codes: `--label` for all, else `default` (ignored, zeros, for a
/// model without a label latent, where `--label` is an error).
pub(crate) fn classes_for(
    t: &Trained,
    n: usize,
    args: &DecodingArgs,
    default: impl FnOnce() -> CliResult<Vec<usize>>,
) -> CliResult<Vec<usize>> {
    match (&t.loaded.text().label, &args.label) {
        (None, None) => Ok(vec![0; n]),
        (None, Some(_)) => Err(CliError::user(format!(
            "--label: {} has no label latent (its config has no [text.label])",
            t.run.root().display()
        ))),
        (Some(l), Some(name)) => {
            let k = l
                .class_index(name)
                .map_err(|e| CliError::user(format!("--label: {e}")))?;
            Ok(vec![k; n])
        }
        (Some(_), None) => default(),
    }
}

fn require_label_latent(t: &Trained, command: &str) -> CliResult<()> {
    if t.model.n_classes() == 0 {
        return Err(CliError::user(format!(
            "{command}: {} has no label latent (its config has no [text.label])",
            t.run.root().display()
        )));
    }
    Ok(())
}

/// The sentences of a command encoded with the model's classes as labels (a label outside them is an
/// error naming its line).
fn labelled_sentences(
    t: &Trained,
    args: &crate::args::EncodeArgs,
) -> CliResult<(emvae_text::corpus::Corpus, TextData, Vec<Vec<String>>)> {
    let (corpus, _, unknown) =
        command_sentences(t, args.text.as_deref().or(args.run.data.as_deref()))?;
    let (data, _) = TextData::new(&corpus, &t.vocab, &class_names(t)).map_err(CliError::user)?;
    Ok((corpus, data, unknown))
}

fn by_class(names: &[String], p: &[f64]) -> Value {
    Value::Object(
        names
            .iter()
            .zip(p)
            .map(|(n, v)| (n.clone(), json!(v)))
            .collect(),
    )
}

pub fn classify(args: &ClassifyArgs) -> CliResult<()> {
    let e = &args.encode;
    let t = open_trained(&e.run.run, e.which.file(), e.run.backend)?;
    require_label_latent(&t, "classify")?;
    let (corpus, data, unknown) = labelled_sentences(&t, e)?;
    let names = class_names(&t);
    let q = guide_probabilities(&t.model, &data, &t.device);
    let p = model_probabilities(&t.model, &data, args.samples as usize, args.seed, &t.device);
    let observed = data
        .labels
        .clone()
        .unwrap_or_else(|| vec![None; data.len()]);
    let mut header = vec!["index".to_string(), "label".into(), "model_label".into()];
    header.extend(names.iter().map(|n| format!("q_{n}")));
    let mut w = RowWriter::new(e.out.format, &header);
    for i in 0..data.len() {
        let (qi, pi) = (&q[i], &p[i]);
        let mut row = json!({
            "index": i,
            "text": corpus.sentences[i].join(" "),
            "label": names[argmax(qi)],
            "q": by_class(&names, qi),
            "model_label": names[argmax(pi)],
            "posterior": by_class(&names, pi),
            "unknown_words": unknown[i],
        });
        if let (Some(y), Some(obj)) = (observed[i], row.as_object_mut()) {
            obj.insert("observed".into(), json!(names[y as usize]));
        }
        w.row(
            row,
            [
                i.to_string(),
                names[argmax(qi)].clone(),
                names[argmax(pi)].clone(),
            ]
            .into_iter()
            .chain(qi.iter().map(|v| crate::output::num(*v))),
        );
    }
    w.finish(e.out.output.as_deref())?;
    let (acc_q, n) = accuracy(&q, &observed, None);
    if n > 0 {
        let (acc_p, _) = accuracy(&p, &observed, None);
        tracing::info!(
            "accuracy on the {n} labelled sentences: q(y | x) {acc_q:.4}, the model's p(y | x) {acc_p:.4}"
        );
    }
    Ok(())
}

pub fn transfer(args: &ReconstructArgs) -> CliResult<()> {
    let e = &args.encode;
    let t = crate::text::with_guidance(
        open_trained(&e.run.run, e.which.file(), e.run.backend)?,
        &args.decoding,
    )?;
    require_label_latent(&t, "transfer")?;
    if args.decoding.label.is_none() {
        return Err(CliError::user(format!(
            "transfer: name the class to decode with, --label (one of {})",
            class_names(&t).join(", ")
        )));
    }
    reencode(&t, args)
}

/// What a run with a label latent scores at its end (`Null` without one): accuracies of q(y | x) and
/// of the model's p(y | x) on the held-out sentences and on the training sentences whose labels were
/// hidden, beside a bag-of-words logistic regression trained on the kept labels alone; and the share of
/// conditional samples that a regression trained on every training label assigns to the class they
/// were drawn with.
pub(crate) fn scores(
    config: &TextVaeConfig,
    model: &TextVae,
    trainer: &TextTrainer,
    hidden: &Option<Hidden>,
    device: &burn::tensor::Device,
    seed: u64,
) -> Value {
    let (Some(label), Some(h)) = (&config.label, hidden) else {
        return Value::Null;
    };
    let k = label.classes.len();
    let train = &trainer.train.data;
    let v = trainer.train.vocab_size;
    let q_train = guide_probabilities(model, train, device);
    // The model's p(y | x) costs SCORE_SAMPLES x classes decodings per sentence: on at most
    // MODEL_SCORED_ROWS hidden sentences, evenly spaced (q and the regressions score them all).
    let scored: Vec<usize> = h
        .hidden_rows
        .iter()
        .copied()
        .step_by(h.hidden_rows.len().div_ceil(MODEL_SCORED_ROWS).max(1))
        .collect();
    let p_hidden = model_probabilities(model, &subset(train, &scored), SCORE_SAMPLES, seed, device);
    let hidden_labels: Vec<Option<u32>> = scored.iter().map(|&r| h.train_labels[r]).collect();
    let kept = train.labels.clone().unwrap_or_default();
    let fit_on = |rows: &[usize], labels: &[Option<u32>]| {
        let rows: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&r| labels[r].is_some())
            .collect();
        let sents: Vec<&[u32]> = rows
            .iter()
            .map(|&r| train.sentences[r].as_slice())
            .collect();
        let ys: Vec<u32> = rows.iter().filter_map(|&r| labels[r]).collect();
        BowLogistic::fit(&sents, &ys, v, k, BOW_C)
    };
    let all_rows: Vec<usize> = (0..train.len()).collect();
    let baseline = fit_on(&all_rows, &kept);
    let bow_probs = |m: &BowLogistic, d: &TextData| -> Vec<Vec<f64>> {
        d.sentences.iter().map(|s| m.probabilities(s)).collect()
    };
    let (q_hidden_acc, n_hidden) = accuracy(&q_train, &h.train_labels, Some(&h.hidden_rows));
    let (bow_hidden_acc, _) = accuracy(
        &bow_probs(&baseline, train),
        &h.train_labels,
        Some(&h.hidden_rows),
    );
    let mut out = json!({
        "classes": label.classes,
        "labelled_fraction": label.labelled_fraction,
        "n_labelled": kept.iter().flatten().count(),
        "n_hidden": n_hidden,
        "hidden_train": {
            "guide_accuracy": q_hidden_acc,
            "model_accuracy": accuracy(&p_hidden, &hidden_labels, None).0,
            "model_scored": scored.len(),
            "bow_logistic_labelled_only_accuracy": bow_hidden_acc,
        },
    });
    if let (Some(test), Some(test_labels)) = (&trainer.test, &h.test_labels) {
        let q = guide_probabilities(model, &test.data, device);
        let p = model_probabilities(model, &test.data, SCORE_SAMPLES, seed, device);
        let (acc_q, n) = accuracy(&q, test_labels, None);
        out["test"] = json!({
            "n": n,
            "guide_accuracy": acc_q,
            "model_accuracy": accuracy(&p, test_labels, None).0,
            "bow_logistic_labelled_only_accuracy":
                accuracy(&bow_probs(&baseline, &test.data), test_labels, None).0,
        });
    }
    // The independent judge of conditional samples: every training label, hidden ones included.
    let judge = fit_on(&all_rows, &h.train_labels);
    let agreement = |guidance: f64| {
        let mut out = serde_json::Map::new();
        for (name, decoding) in checked_decodings(seed) {
            let (classes, ids) =
                conditional_samples(model, SAMPLES_PER_CLASS, decoding, guidance, seed, device);
            let right = ids
                .iter()
                .zip(&classes)
                .filter(|(s, c)| argmax(&judge.probabilities(s)) == **c)
                .count();
            out.insert(name.into(), json!(right as f64 / ids.len().max(1) as f64));
        }
        out
    };
    out["conditional_samples"] = json!({
        "per_class": SAMPLES_PER_CLASS,
        "judge": "bag-of-words logistic regression on every training label",
        "guidance": model.shape.guidance,
        "agreement": agreement(model.shape.guidance),
        "unguided_agreement": agreement(0.0),
    });
    out
}

/// The rows `rows` of `data`, labels dropped.
fn subset(data: &TextData, rows: &[usize]) -> TextData {
    TextData {
        sentences: rows.iter().map(|&r| data.sentences[r].clone()).collect(),
        labels: None,
        label_names: data.label_names.clone(),
    }
}

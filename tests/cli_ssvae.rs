//! The semi-supervised sentence model (`[text.label]`, a sentiment latent beside z) through the `emvae`
//! binary: on a generated corpus whose sentiment words a few labels cannot cover, the model's classifier
//! beats a bag-of-words regression trained on the same labels alone, on the unlabelled training
//! sentences and on held-out ones; `classify`, `sample --label` and `transfer` work from the checkpoint
//! in later processes; unknown labels, in the corpus or on the command line, are clear errors (exit 2).

mod common;

use std::path::Path;

use common::{Out, assert_user_error, emvae, json_lines, tempdir};
use emvae_text::grammar::{SPARSE_ADJECTIVES, SPARSE_OPENERS};

fn config(label: &str) -> String {
    format!(
        "model = \"text\"\nseed = 0\n[run]\nplot = false\n[text]\nlatent = 4\nembedding = 32\ndropout = 0.1\n\
         word_dropout = 0.2\n[text.generated]\nn_sentences = 1200\nn_held_out = 200\nseed = 1\n\
         labels = \"sentiment\"\ngrammar = \"sparse_sentiment\"\n{label}\n[text.encoder]\nhidden = 32\n\
         [text.decoder]\nhidden = 32\n[text.train]\nbatch_size = 32\nepochs = 40\nlr = 5e-3\n\
         [text.eval]\niw_samples = 3\nfinal_iw_samples = 5\n"
    )
}

const LABEL: &str = "[text.label]\nclasses = [\"neg\", \"pos\"]\nlabelled_fraction = 0.005\n";

/// Which sentiment's words (the grammar's openers and adjectives) a sentence holds: `Some(true)` positive only, `Some(false)` negative only.
fn sentiment_of(text: &str) -> Option<bool> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let has = |s: usize| {
        words
            .iter()
            .any(|w| SPARSE_ADJECTIVES[s].contains(w) || SPARSE_OPENERS[s].contains(w))
    };
    let (neg, pos) = (has(0), has(1));
    match (pos, neg) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ => None,
    }
}

fn train(d: &Path, name: &str, config: &str) -> Out {
    std::fs::write(d.join(format!("{name}.toml")), config).unwrap();
    let cfg = format!("{name}.toml");
    let out = format!("runs/{name}");
    emvae(d, &["-q", "train", "--config", &cfg, "--out", &out])
}

#[test]
fn the_sentiment_latent_learns_from_unlabelled_sentences_and_serves_its_commands() {
    let dir = tempdir();
    let d = dir.path();
    let out = train(d, "ss", &config(LABEL));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("runs/ss/summary.json")).unwrap())
            .unwrap();
    let c = &summary["classification"];
    assert_eq!(c["n_labelled"], 6, "{c}");
    assert_eq!(c["n_hidden"], 1194, "{c}");
    let f = |v: &serde_json::Value| v.as_f64().expect("a number");
    for split in ["hidden_train", "test"] {
        let s = &c[split];
        let baseline = f(&s["bow_logistic_labelled_only_accuracy"]);
        assert!(baseline < 0.9, "the labels leave words unseen: {s}");
        assert!(
            f(&s["guide_accuracy"]) > baseline + 0.05,
            "q(y | x) gains from the unlabelled sentences: {s}"
        );
        assert!(
            f(&s["model_accuracy"]) > baseline + 0.05,
            "so does the model's p(y | x): {s}"
        );
    }
    let samples = &c["conditional_samples"];
    assert!(f(&samples["agreement"]["greedy"]) >= 0.8, "{c}");
    // The guidance was calibrated (no `guidance` in the config) and recorded for later commands.
    let decoding: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("runs/ss/decoding.json")).unwrap())
            .unwrap();
    assert_eq!(samples["guidance"], decoding["guidance"], "{c}");
    assert_eq!(summary["guidance_calibration"], decoding);
    assert!(
        samples["unguided_agreement"]["temperature_1"].is_number(),
        "{c}"
    );

    // classify, from the checkpoint, on sentences with labels (and one word the vocabulary lacks).
    let sentences = "pos\tluckily , the pizza was superb and vivid .\n\
                     neg\tsadly , the game was tedious and dull .\n\
                     pos\twow , the film was gripping and zesty .\n";
    std::fs::write(d.join("labelled.txt"), sentences).unwrap();
    let out = emvae(
        d,
        &["classify", "--run", "runs/ss", "--text", "labelled.txt"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = json_lines(&out.stdout);
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(r["label"], r["observed"], "{r}");
        let q = &r["q"];
        assert!((f(&q["neg"]) + f(&q["pos"]) - 1.0).abs() < 1e-6, "{r}");
        assert!(r["posterior"]["pos"].is_number(), "{r}");
    }
    assert_eq!(rows[2]["unknown_words"], serde_json::json!(["zesty"]));
    // The best epoch's model (an earlier one here) got the same end-of-training refit of q.
    let out = emvae(
        d,
        &[
            "classify",
            "--run",
            "runs/ss",
            "--best",
            "--text",
            "labelled.txt",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    for r in json_lines(&out.stdout) {
        assert_eq!(r["label"], r["observed"], "{r}");
    }

    // Samples with a label carry it.
    for (label, want) in [("pos", true), ("neg", false)] {
        let out = emvae(
            d,
            &[
                "sample", "--run", "runs/ss", "--label", label, "-n", "20", "--greedy",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let rows = json_lines(&out.stdout);
        let agree = rows
            .iter()
            .filter(|r| {
                r["label"] == label && sentiment_of(r["text"].as_str().unwrap()) == Some(want)
            })
            .count();
        assert!(
            agree >= 16,
            "{label}: {agree}/20 samples carry it: {}",
            out.stdout
        );
    }

    // transfer keeps the frame and changes the sentiment.
    std::fs::write(
        d.join("pos.txt"),
        "happily , the pizza was lovely and superb .\nthankfully , the match was warm and clever .\n",
    )
    .unwrap();
    let out = emvae(
        d,
        &[
            "transfer", "--run", "runs/ss", "--text", "pos.txt", "--label", "neg",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = json_lines(&out.stdout);
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(
            (&r["from"], &r["label"]),
            (&"pos".into(), &"neg".into()),
            "{r}"
        );
        assert_eq!(
            sentiment_of(r["text"].as_str().unwrap()),
            Some(false),
            "{r}"
        );
    }

    // Labels the model does not know.
    std::fs::write(d.join("meh.txt"), "pos\tfine film\nmeh\tso so\n").unwrap();
    let out = emvae(d, &["classify", "--run", "runs/ss", "--text", "meh.txt"]);
    assert_user_error(&out, "an unknown corpus label", &["meh.txt:2", "meh"]);
    let out = emvae(d, &["sample", "--run", "runs/ss", "--label", "happy"]);
    assert_user_error(&out, "an unknown --label", &["happy", "neg, pos"]);
    let out = emvae(
        d,
        &[
            "sample",
            "--run",
            "runs/ss",
            "--label",
            "pos",
            "--guidance=-1",
        ],
    );
    assert_user_error(&out, "a negative --guidance", &["--guidance", "-1"]);
    let out = emvae(
        d,
        &[
            "sample",
            "--run",
            "runs/ss",
            "--label",
            "pos",
            "--guidance",
            "0",
            "-n",
            "2",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::write(d.join("z.jsonl"), "{\"z\": [0, 0, 0, 0]}\n").unwrap();
    let out = emvae(d, &["decode", "--run", "runs/ss", "--latents", "z.jsonl"]);
    assert_user_error(&out, "decode without a class", &["--label", "neg, pos"]);
    let out = emvae(
        d,
        &[
            "decode",
            "--run",
            "runs/ss",
            "--latents",
            "z.jsonl",
            "--label",
            "pos",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn label_settings_and_labels_outside_the_classes_are_refused() {
    let dir = tempdir();
    let d = dir.path();
    let cases = [
        (
            "[text.label]\nclasses = [\"pos\"]\n",
            vec!["text.label.classes", "at least 2"],
        ),
        (
            "[text.label]\nclasses = [\"pos\", \"pos\"]\n",
            vec!["text.label.classes", "twice"],
        ),
        (
            "[text.label]\nclasses = [\"neg\", \"pos\"]\nlabelled_fraction = 0\n",
            vec!["text.label.labelled_fraction"],
        ),
        (
            "[text.label]\nclasses = [\"neg\", \"pos\"]\nclassifier_weight = -1\n",
            vec!["text.label.classifier_weight"],
        ),
        (
            "[text.label]\nclasses = [\"neg\", \"pos\"]\nguidance = -0.5\n",
            vec!["text.label.guidance"],
        ),
        (
            "[text.label]\nclasses = [\"neg\", \"pos\"]\nrefit_c = 0\n",
            vec!["text.label.refit_c"],
        ),
        // The generated corpus labels sentences "neg"/"pos": a class list without "neg" cannot hold them.
        (
            "[text.label]\nclasses = [\"good\", \"pos\"]\n",
            vec!["<generated>:", "neg"],
        ),
    ];
    for (i, (label, needles)) in cases.iter().enumerate() {
        let out = train(d, &format!("bad{i}"), &config(label));
        assert_user_error(&out, label, needles);
    }
    // --label on a model without a label latent.
    let plain = config("").replace("epochs = 40", "epochs = 1");
    let out = train(d, "plain", &plain);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = emvae(d, &["sample", "--run", "runs/plain", "--label", "pos"]);
    assert_user_error(&out, "--label without a label latent", &["no label latent"]);
    let out = emvae(d, &["sample", "--run", "runs/plain", "--guidance", "2"]);
    assert_user_error(
        &out,
        "--guidance without a label latent",
        &["--guidance", "no label latent"],
    );
    let out = emvae(d, &["classify", "--run", "runs/plain"]);
    assert_user_error(
        &out,
        "classify without a label latent",
        &["no label latent"],
    );
}

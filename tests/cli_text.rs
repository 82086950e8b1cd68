//! The `emvae` binary with text models: bad corpora and bad command inputs give clear errors and exit
//! code 2 (never a panic); a run written by one process serves sample, encode, decode, reconstruct,
//! interpolate and eval in later processes; a stopped and resumed run ends where an uninterrupted one
//! ends; the language-model baseline trains from the same config with the latent switched off.

mod common;

use std::path::Path;

use common::{Out, assert_user_error, emvae, json_lines, tempdir};

fn text_config(data: &str, extra: &str) -> String {
    format!(
        "model = \"text\"\nseed = 2\n{data}\n[text]\nlatent = 4\nembedding = 16\ndropout = 0.1\nword_dropout = 0.2\n{extra}\n\
         [text.encoder]\nhidden = 24\n[text.decoder]\nhidden = 24\n\
         [text.train]\nepochs = 2\nbatch_size = 16\nlr = 0.005\n[text.eval]\niw_samples = 3\nfinal_iw_samples = 5\n"
    )
}

const GENERATED: &str = "[text.generated]\nn_sentences = 160\nn_held_out = 40\nseed = 4\n";

fn train(d: &Path, name: &str, config: &str, extra_args: &[&str]) -> Out {
    std::fs::write(d.join(format!("{name}.toml")), config).unwrap();
    let cfg = format!("{name}.toml");
    let out = format!("runs/{name}");
    let mut args = vec!["-q", "train", "--config", &cfg, "--out", &out];
    args.extend_from_slice(extra_args);
    emvae(d, &args)
}

#[test]
fn text_bad_inputs_give_clear_errors_and_exit_2() {
    let dir = tempdir();
    let d = dir.path();
    std::fs::write(d.join("empty.txt"), "").unwrap();
    std::fs::write(d.join("blank.txt"), "\n  \n\t\n").unwrap();
    std::fs::write(d.join("long.txt"), "a b c\na b c d e f g h\n").unwrap();
    std::fs::write(
        d.join("utf8.txt"),
        b"good line\nanother one\nbad \xff\xfe line\n",
    )
    .unwrap();
    std::fs::write(d.join("mixed.txt"), "pos\tgood film\nbad film\n").unwrap();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "empty corpus",
            text_config("[data]\npath = \"empty.txt\"", ""),
            vec!["empty.txt", "empty"],
        ),
        (
            "only blank lines",
            text_config("[data]\npath = \"blank.txt\"", ""),
            vec!["blank.txt", "blank"],
        ),
        (
            "a line over max_length",
            text_config(
                "[data]\npath = \"long.txt\"",
                "max_length = 5\noverlong = \"reject\"",
            ),
            vec!["long.txt:2", "max_length"],
        ),
        (
            "invalid UTF-8",
            text_config("[data]\npath = \"utf8.txt\"", ""),
            vec!["utf8.txt:3", "UTF-8"],
        ),
        (
            "labels on some lines only",
            text_config("[data]\npath = \"mixed.txt\"", ""),
            vec!["mixed.txt:2", "label"],
        ),
        ("no corpus", text_config("", ""), vec!["data.path"]),
        (
            "bad word dropout",
            text_config(GENERATED, "").replace("word_dropout = 0.2", "word_dropout = 1.5"),
            vec!["text.word_dropout"],
        ),
        (
            "bidirectional decoder",
            text_config(GENERATED, "")
                .replace("[text.decoder]\n", "[text.decoder]\nbidirectional = true\n"),
            vec!["text.decoder.bidirectional"],
        ),
    ];
    for (i, (what, config, needles)) in cases.iter().enumerate() {
        let out = train(d, &format!("bad{i}"), config, &[]);
        assert_user_error(&out, what, needles);
    }

    // Commands on a trained run.
    let out = train(d, "ok", &text_config(GENERATED, ""), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = "runs/ok";
    std::fs::write(d.join("z-wrong.jsonl"), "{\"z\": [0.1, 0.2]}\n").unwrap();
    std::fs::write(d.join("z-text.csv"), "0.1,0.2,abc,0.4\n0.1,0.2,0.3,0.4\n").unwrap();
    let out = emvae(d, &["decode", "--run", run, "--latents", "z-wrong.jsonl"]);
    assert_user_error(
        &out,
        "latents of the wrong size",
        &["z-wrong.jsonl:1", "2 values", "4 dimensions"],
    );
    let out = emvae(d, &["decode", "--run", run, "--latents", "z-text.csv"]);
    assert_user_error(&out, "a non-number in latents", &["z-text.csv:1", "abc"]);
    let out = emvae(
        d,
        &[
            "interpolate",
            "--run",
            run,
            "--from",
            "   ",
            "--to",
            "the film",
        ],
    );
    assert_user_error(
        &out,
        "interpolate from an empty sentence",
        &["--from", "empty"],
    );
    let out = emvae(d, &["sample", "--run", run, "--temperature", "0"]);
    assert_user_error(&out, "zero temperature", &["--temperature"]);
    let out = emvae(d, &["encode", "--run", run, "--text", "utf8.txt"]);
    assert_user_error(&out, "encode invalid UTF-8", &["utf8.txt:3"]);

    // A run whose vocabulary is missing, or belongs to another run.
    let other = text_config(GENERATED, "").replace("n_sentences = 160", "n_sentences = 20");
    assert_eq!(train(d, "other", &other, &[]).code, 0);
    std::fs::copy(
        d.join("runs/other/vocab.json"),
        d.join("runs/ok/vocab.json"),
    )
    .unwrap();
    let out = emvae(d, &["sample", "--run", run, "-n", "2"]);
    assert_user_error(&out, "a foreign vocabulary", &["model.bpk", "vocab.json"]);
    std::fs::remove_file(d.join("runs/ok/vocab.json")).unwrap();
    let out = emvae(d, &["encode", "--run", run]);
    assert_user_error(&out, "a missing vocabulary", &["vocab.json"]);
    std::fs::write(
        d.join("runs/ok/vocab.json"),
        "{\"format\": \"something else\"}",
    )
    .unwrap();
    let out = emvae(d, &["encode", "--run", run]);
    assert_user_error(&out, "a damaged vocabulary", &["vocab.json"]);
}

#[test]
fn text_runs_serve_latent_code_commands_and_resume_exactly() {
    let dir = tempdir();
    let d = dir.path();
    let config = text_config(GENERATED, "");
    let out = train(d, "whole", &config, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("runs/whole/summary.json")).unwrap())
            .unwrap();
    assert!(summary["iw_nll"].as_f64().unwrap() > 0.0);
    assert!(summary["perplexity"].as_f64().unwrap() > 1.0);
    for file in [
        "model.bpk",
        "model_best.bpk",
        "vocab.json",
        "checkpoint.bin",
        "metrics.jsonl",
    ] {
        assert!(d.join("runs/whole").join(file).exists(), "{file}");
    }

    // Stopped after 5 steps, resumed by a new process: the same metrics and codes (the model files'
    // parameter ids are drawn per process, so their values are compared through what they compute).
    assert_eq!(train(d, "split", &config, &["--stop-after", "5"]).code, 0);
    let out = emvae(d, &["-q", "train", "--out", "runs/split", "--resume"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let untimed = |p: &str| -> Vec<serde_json::Value> {
        json_lines(&std::fs::read_to_string(d.join(p)).unwrap())
            .into_iter()
            .map(|mut v| {
                let o = v.as_object_mut().unwrap();
                for key in ["seconds", "examples_per_second", "units_per_second"] {
                    o.remove(key);
                }
                v
            })
            .collect()
    };
    let metrics = untimed("runs/whole/metrics.jsonl");
    assert_eq!(metrics.len(), 2);
    assert_eq!(metrics, untimed("runs/split/metrics.jsonl"));
    let codes = emvae(d, &["encode", "--run", "runs/whole"]);
    assert_eq!(codes.code, 0, "{}", codes.stderr);
    assert_eq!(
        codes.stdout,
        emvae(d, &["encode", "--run", "runs/split"]).stdout
    );
    assert_eq!(
        json_lines(&codes.stdout).len(),
        40,
        "the held-out sentences"
    );

    let run = "runs/whole";
    let out = emvae(d, &["sample", "--run", run, "-n", "4", "--seed", "3"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let samples = json_lines(&out.stdout);
    assert_eq!(samples.len(), 4);
    assert!(
        samples
            .iter()
            .all(|s| s["z"].as_array().unwrap().len() == 4)
    );
    let again = emvae(d, &["sample", "--run", run, "-n", "4", "--seed", "3"]);
    assert_eq!(
        out.stdout, again.stdout,
        "sampling is reproducible from its seed"
    );
    for flags in [
        &["--greedy"][..],
        &["--beam", "3"],
        &["--temperature", "0.5"],
    ] {
        let mut args = vec!["sample", "--run", run, "-n", "2", "--best"];
        args.extend_from_slice(flags);
        let out = emvae(d, &args);
        assert_eq!(out.code, 0, "{flags:?}: {}", out.stderr);
        assert_eq!(json_lines(&out.stdout).len(), 2);
    }

    std::fs::write(d.join("s.txt"), "the film was great\nthe qwzx was dull\n").unwrap();
    let out = emvae(
        d,
        &[
            "encode",
            "--run",
            run,
            "--text",
            "s.txt",
            "--output",
            "codes.jsonl",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("<unk>"),
        "the unknown word is reported: {}",
        out.stderr
    );
    let codes = json_lines(&std::fs::read_to_string(d.join("codes.jsonl")).unwrap());
    assert_eq!(codes.len(), 2);
    let unknown = codes[1]["unknown_words"].as_array().unwrap();
    assert!(unknown.contains(&serde_json::json!("qwzx")), "{unknown:?}");
    assert_eq!(codes[0]["log_var"].as_array().unwrap().len(), 4);

    let out = emvae(d, &["decode", "--run", run, "--latents", "codes.jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json_lines(&out.stdout).len(), 2);

    let out = emvae(
        d,
        &[
            "reconstruct",
            "--run",
            run,
            "--text",
            "s.txt",
            "--beam",
            "2",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let recon = json_lines(&out.stdout);
    assert_eq!(recon[0]["input"], "the film was great");

    let out = emvae(
        d,
        &[
            "interpolate",
            "--run",
            run,
            "--from",
            "the film was great",
            "--to",
            "the food was awful",
            "--steps",
            "5",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let path = json_lines(&out.stdout);
    assert_eq!(path.len(), 5);
    assert_eq!(path[0]["t"], 0.0);
    assert_eq!(path[4]["t"], 1.0);

    let out = emvae(d, &["eval", "--run", run, "--iw-samples", "4"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let eval: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(eval["perplexity"].as_f64().unwrap() > 1.0);
    let best = emvae(d, &["eval", "--run", run, "--iw-samples", "4", "--best"]);
    assert_eq!(best.code, 0, "{}", best.stderr);
    std::fs::remove_file(d.join("runs/split/model_best.bpk")).unwrap();
    let out = emvae(d, &["encode", "--run", "runs/split", "--best"]);
    assert_user_error(&out, "no best model", &["model_best.bpk"]);

    // The language-model baseline: the same config with the latent switched off; its KL is 0.
    let lm = config.replace("latent = 4", "latent = 0");
    let out = train(d, "lm", &lm, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("runs/lm/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["kl"].as_f64().unwrap(), 0.0);
    assert_eq!(summary["active_units"].as_u64().unwrap(), 0);
    let out = emvae(
        d,
        &[
            "interpolate",
            "--run",
            "runs/lm",
            "--from",
            "a",
            "--to",
            "b",
        ],
    );
    assert_user_error(&out, "interpolate on a language model", &["latent"]);
}

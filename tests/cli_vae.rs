//! The `emvae` binary with VAE configs: bad inputs give clear errors and exit code 2; a run trains,
//! evaluates, encodes, decodes, samples and reconstructs; a stopped and resumed run ends where an
//! uninterrupted one ends.

mod common;

use common::{emvae, tempdir};

/// IDX bytes of unsigned bytes with dimensions `dims`.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// 200 binary rows of 12 columns: two prototypes with 10% of pixels flipped.
fn binary_csv() -> String {
    let mut text = String::new();
    let mut state: u64 = 7;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    for i in 0..200 {
        let row: Vec<String> = (0..12)
            .map(|j| {
                let proto = ((i % 2) + j) % 2 == 0;
                let flip = next() < 0.1;
                if proto ^ flip { "1".into() } else { "0".into() }
            })
            .collect();
        text.push_str(&row.join(","));
        text.push('\n');
    }
    text
}

fn vae_config(data: &str, extra_data: &str, encoder: &str, decoder: &str, extra: &str) -> String {
    format!(
        "model = \"vae\"\nseed = 3\n[data]\npath = \"{data}\"\n{extra_data}\n[vae.encoder]\nsizes = {encoder}\n\
         [vae.decoder]\nsizes = {decoder}\n[vae.likelihood]\nkind = \"bernoulli\"\n[vae.train]\nepochs = 6\nbatch_size = 32\nlr = 0.01\n\
         [vae.eval]\nevery = 2\niw_samples = 5\nfinal_iw_samples = 20\n{extra}"
    )
}

#[test]
fn vae_bad_inputs_give_clear_errors_and_exit_2() {
    let dir = tempdir();
    let d = dir.path();
    std::fs::write(d.join("x.csv"), binary_csv()).unwrap();
    std::fs::write(d.join("real.csv"), "0.5,2.0\n0.1,0.3\n").unwrap();
    let mut bad_magic = idx(&[4, 2, 2], &[0; 16]);
    bad_magic[2] = 0x42;
    std::fs::write(d.join("bad-magic.idx"), bad_magic).unwrap();
    std::fs::write(d.join("truncated.idx"), idx(&[4, 2, 2], &[0; 10])).unwrap();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "encoder and decoder sizes disagree",
            vae_config("x.csv", "", "[12, 16, 4]", "[3, 16, 12]", ""),
            vec![
                "c.toml:9",
                "key `vae.decoder.sizes[0]`",
                "encoder's latent size",
            ],
        ),
        (
            "latent size 0",
            vae_config("x.csv", "", "[12, 16, 0]", "[0, 16, 12]", ""),
            vec![
                "key `vae.encoder.sizes[2]`",
                "latent size must be at least 1",
            ],
        ),
        (
            "data width differs from the encoder",
            vae_config("x.csv", "", "[10, 16, 4]", "[4, 16, 10]", ""),
            vec![
                "key `vae.encoder.sizes[0]`",
                "12 columns but the encoder takes 10",
            ],
        ),
        (
            "IDX file with a wrong magic number",
            vae_config(
                "bad-magic.idx",
                "format = \"idx\"",
                "[4, 8, 2]",
                "[2, 8, 4]",
                "",
            ),
            vec!["bad-magic.idx", "wrong magic number 0x00004203"],
        ),
        (
            "epoch 0 kept",
            vae_config(
                "x.csv",
                "",
                "[12, 16, 2]",
                "[2, 16, 12]",
                "[run]\nkeep_epochs = [0, 2]\n",
            ),
            vec!["key `run.keep_epochs`", "0 is not an epoch"],
        ),
        (
            "truncated IDX file",
            vae_config("truncated.idx", "", "[4, 8, 2]", "[2, 8, 4]", ""),
            vec!["truncated.idx", "truncated IDX file"],
        ),
        (
            "Bernoulli likelihood on real values",
            vae_config("real.csv", "", "[2, 8, 2]", "[2, 8, 2]", ""),
            vec![
                "key `vae.likelihood.kind`",
                "needs data in [0, 1]",
                "data.binarize",
            ],
        ),
        (
            "KL weight with the importance-weighted bound",
            vae_config(
                "x.csv",
                "",
                "[12, 16, 4]",
                "[4, 16, 12]",
                "[vae.objective]\nkind = \"iwae\"\nbeta = 0.5\n",
            ),
            vec!["key `vae.objective.beta`", "no separate KL term"],
        ),
        (
            "unknown strategy",
            vae_config(
                "x.csv",
                "",
                "[12, 16, 4]",
                "[4, 16, 12]",
                "[vae.estep]\nstrategy = \"lazy\"\n",
            ),
            vec![
                "key `vae.estep.strategy`",
                "unknown variant `lazy`",
                "`aggressive`",
            ],
        ),
        (
            "binarize without a rule",
            vae_config("x.csv", "binarize = {}", "[12, 16, 4]", "[4, 16, 12]", ""),
            vec!["key `data.binarize`", "threshold"],
        ),
        (
            "held-out rows leave nothing",
            vae_config("x.csv", "test_rows = 500", "[12, 16, 4]", "[4, 16, 12]", ""),
            vec!["x.csv", "test_rows = 500 leaves no training rows"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, config, expected) in &cases {
        std::fs::write(d.join("c.toml"), config).unwrap();
        let out = emvae(d, &["train", "--config", "c.toml", "--out", "run"]);
        let ok = out.code == 2
            && !out.stderr.contains("panicked")
            && expected.iter().all(|e| out.stderr.contains(e));
        if !ok {
            failures.push(format!("{name}: exit {} stderr:\n{}", out.code, out.stderr));
        }
        assert!(
            !d.join("run/config.toml").exists(),
            "{name}: left a run directory behind"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A checkpoint from another model is refused on resume.
    std::fs::write(
        d.join("a.toml"),
        vae_config("x.csv", "", "[12, 16, 4]", "[4, 16, 12]", ""),
    )
    .unwrap();
    std::fs::write(
        d.join("b.toml"),
        vae_config("x.csv", "", "[12, 8, 4]", "[4, 8, 12]", ""),
    )
    .unwrap();
    assert_eq!(
        emvae(
            d,
            &[
                "train",
                "--config",
                "a.toml",
                "--out",
                "ra",
                "-q",
                "--stop-after",
                "3"
            ]
        )
        .code,
        0
    );
    assert_eq!(
        emvae(
            d,
            &[
                "train",
                "--config",
                "b.toml",
                "--out",
                "rb",
                "-q",
                "--stop-after",
                "3"
            ]
        )
        .code,
        0
    );
    std::fs::copy(d.join("ra/checkpoint.bin"), d.join("rb/checkpoint.bin")).unwrap();
    let out = emvae(d, &["train", "--out", "rb", "--resume"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("checkpoint.bin") && out.stderr.contains("different model"),
        "{}",
        out.stderr
    );
    // Truncated, edited (one byte of the model flipped), foreign and old-format checkpoints.
    let good = std::fs::read(d.join("ra/checkpoint.bin")).unwrap();
    let mut edited = good.clone();
    let middle = edited.len() / 2;
    edited[middle] ^= 0x10;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("truncated", good[..good.len() - 100].to_vec(), "truncated"),
        ("edited", edited, "checksum mismatch"),
        (
            "foreign",
            b"PK\x03\x04 a zip file".to_vec(),
            "bad magic number",
        ),
        ("old format", b"EMVAECK1\x05\x00".to_vec(), "earlier emvae"),
    ];
    for (name, bytes, expected) in cases {
        std::fs::write(d.join("ra/checkpoint.bin"), &bytes).unwrap();
        let out = emvae(d, &["train", "--out", "ra", "--resume"]);
        assert_eq!(out.code, 2, "{name}: {}", out.stderr);
        assert!(
            out.stderr.contains("checkpoint.bin")
                && out.stderr.contains(expected)
                && !out.stderr.contains("panicked"),
            "{name}: {}",
            out.stderr
        );
    }
}

#[test]
fn vae_run_trains_evaluates_encodes_decodes_and_resumes_exactly() {
    let dir = tempdir();
    let d = dir.path();
    std::fs::write(d.join("x.csv"), binary_csv()).unwrap();
    let config = vae_config(
        "x.csv",
        "test_rows = 40",
        "[12, 16, 2]",
        "[2, 16, 12]",
        "[vae.objective]\nannealing = \"linear\"\nanneal_steps = 20\n[run]\nkeep_epochs = [1, 3]\n",
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let whole = emvae(d, &["train", "--config", "c.toml", "--out", "whole", "-q"]);
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    let summary: serde_json::Value = serde_json::from_str(&whole.stdout).unwrap();
    assert_eq!(summary["n_train"], 160);
    assert_eq!(summary["n_test"], 40);
    assert_eq!(summary["iw_samples"], 20);
    assert!(summary["iw_nll"].as_f64().unwrap() < 12.0 * std::f64::consts::LN_2);
    for name in [
        "config.toml",
        "metrics.jsonl",
        "model.bpk",
        "checkpoint.bin",
        "summary.json",
        "train.log",
    ] {
        assert!(d.join("whole").join(name).exists(), "{name}");
    }

    // Stop mid-epoch (5 steps an epoch), resume twice: the same metrics and the same codes.
    assert_eq!(
        emvae(
            d,
            &[
                "train",
                "--config",
                "c.toml",
                "--out",
                "parts",
                "-q",
                "--stop-after",
                "7"
            ]
        )
        .code,
        0
    );
    assert!(!d.join("parts/model.bpk").exists());
    assert_eq!(
        emvae(
            d,
            &[
                "train",
                "--out",
                "parts",
                "--resume",
                "-q",
                "--stop-after",
                "9"
            ]
        )
        .code,
        0
    );
    let last = emvae(d, &["train", "--out", "parts", "--resume", "-q"]);
    assert_eq!(last.code, 0, "{}", last.stderr);
    let untimed = |p: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(d.join(p))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let o = v.as_object_mut().unwrap();
                o.remove("seconds");
                o.remove("examples_per_second");
                v
            })
            .collect()
    };
    let metrics = untimed("whole/metrics.jsonl");
    assert_eq!(metrics.len(), 6);
    assert_eq!(metrics, untimed("parts/metrics.jsonl"));
    // The kept models: epoch 1 from the first piece, epoch 3 from the third; each scores as the whole
    // run's (the files differ in burn's parameter ids, not in the weights), and the later the better.
    assert!(!d.join("whole/model_epoch2.bpk").exists());
    let nll_of = |run: &str, extra: &[&str]| -> f64 {
        let mut args = vec!["eval", "--run", run, "--iw-samples", "50"];
        args.extend_from_slice(extra);
        let out = emvae(d, &args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        report["iw"]["nll"].as_f64().unwrap()
    };
    let after_one = nll_of("whole", &["--epoch", "1"]);
    let after_three = nll_of("whole", &["--epoch", "3"]);
    let last = nll_of("whole", &[]);
    assert_eq!(after_one, nll_of("parts", &["--epoch", "1"]));
    assert_eq!(after_three, nll_of("parts", &["--epoch", "3"]));
    assert!(
        after_one > after_three && after_three > last,
        "{after_one} {after_three} {last}"
    );
    let not_kept = emvae(d, &["eval", "--run", "whole", "--epoch", "2"]);
    assert_eq!(not_kept.code, 2);
    assert!(
        not_kept.stderr.contains("no model_epoch2.bpk") && not_kept.stderr.contains("keep_epochs"),
        "{}",
        not_kept.stderr
    );
    let both = emvae(d, &["eval", "--run", "whole", "--epoch", "1", "--best"]);
    assert_eq!(both.code, 2, "{}", both.stderr);
    let codes = emvae(d, &["encode", "--run", "whole"]);
    assert_eq!(codes.code, 0, "{}", codes.stderr);
    assert_eq!(codes.stdout, emvae(d, &["encode", "--run", "parts"]).stdout);
    let rows: Vec<serde_json::Value> = codes
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 40, "the held-out rows");
    assert_eq!(rows[0]["z"].as_array().unwrap().len(), 2);

    let eval = emvae(
        d,
        &[
            "eval",
            "--run",
            "whole",
            "--iw-samples",
            "50",
            "--amortization-gap",
        ],
    );
    assert_eq!(eval.code, 0, "{}", eval.stderr);
    let report: serde_json::Value = serde_json::from_str(&eval.stdout).unwrap();
    assert_eq!(report["iw"]["samples"], 50);
    assert!(
        report["amortization_gap"]["gap"].as_f64().unwrap() > -0.05,
        "{report}"
    );
    assert!(report["active_units"].as_u64().unwrap() >= 1);

    std::fs::write(d.join("z.csv"), "0.0,0.0\n1.5,-1.0\n").unwrap();
    let decoded = emvae(
        d,
        &[
            "decode", "--run", "whole", "--z", "z.csv", "--format", "csv",
        ],
    );
    assert_eq!(decoded.code, 0, "{}", decoded.stderr);
    assert_eq!(decoded.stdout.lines().count(), 3);
    assert!(decoded.stdout.starts_with("row,z0,z1,x0"));
    let sample = emvae(d, &["sample", "--run", "whole", "-n", "4", "--seed", "2"]);
    assert_eq!(sample.stdout.lines().count(), 4);
    assert_eq!(
        sample.stdout,
        emvae(d, &["sample", "--run", "whole", "-n", "4", "--seed", "2"]).stdout
    );
    let recon = emvae(d, &["reconstruct", "--run", "whole", "--data", "x.csv"]);
    assert_eq!(recon.stdout.lines().count(), 200);
    let first: serde_json::Value =
        serde_json::from_str(recon.stdout.lines().next().unwrap()).unwrap();
    let x: Vec<f64> = serde_json::from_value(first["x"].clone()).unwrap();
    assert!(x.iter().all(|p| (0.0..=1.0).contains(p)));

    let wrong = emvae(d, &["predict", "--run", "whole"]);
    assert_eq!(wrong.code, 2);
    assert!(wrong.stderr.contains("use encode"), "{}", wrong.stderr);
}

/// A run whose learning rate makes it diverge stops at the step that went non-finite, naming the step
/// and the term, keeps its last good checkpoint, and continues from it once the rate is lowered.
#[test]
fn divergence_stops_keeps_the_checkpoint_and_resumes_with_a_lower_rate() {
    let dir = tempdir();
    let d = dir.path();
    std::fs::write(d.join("x.csv"), binary_csv()).unwrap();
    let good = vae_config("x.csv", "", "[12, 16, 2]", "[2, 16, 12]", "");
    std::fs::write(d.join("good.toml"), &good).unwrap();
    std::fs::write(d.join("wild.toml"), good.replace("lr = 0.01", "lr = 1e8")).unwrap();
    let first = emvae(
        d,
        &[
            "train",
            "--config",
            "good.toml",
            "--out",
            "run",
            "--stop-after",
            "14",
        ],
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    let checkpoint = std::fs::read(d.join("run/checkpoint.bin")).expect("a checkpoint");

    let wild = emvae(
        d,
        &["train", "--config", "wild.toml", "--out", "run", "--resume"],
    );
    assert_ne!(wild.code, 0, "{}", wild.stderr);
    assert!(
        wild.stderr.contains("training diverged at step")
            && (wild.stderr.contains("NaN") || wild.stderr.contains("inf"))
            && wild.stderr.contains("lower train.lr"),
        "{}",
        wild.stderr
    );
    assert!(!wild.stderr.contains("panicked"));
    assert_eq!(
        std::fs::read(d.join("run/checkpoint.bin")).unwrap(),
        checkpoint,
        "the last good checkpoint is kept"
    );

    let resumed = emvae(
        d,
        &["train", "--config", "good.toml", "--out", "run", "--resume"],
    );
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(d.join("run/model.bpk").exists());
    let summary = std::fs::read_to_string(d.join("run/summary.json")).unwrap();
    assert!(!summary.contains("NaN"), "{summary}");

    // Changing anything but the rate, clipping or budget is refused, naming the key.
    std::fs::write(
        d.join("wide.toml"),
        good.replace("[12, 16, 2]", "[12, 20, 2]"),
    )
    .unwrap();
    let refused = emvae(
        d,
        &["train", "--config", "wide.toml", "--out", "run", "--resume"],
    );
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("`vae.encoder.sizes`"),
        "{}",
        refused.stderr
    );
}

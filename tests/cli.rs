//! The `emvae` binary end to end: a table of bad inputs (each a clear message naming the file, line or
//! key, exit code 2, no panic), `--help` with examples, and `--resume` ending where an uninterrupted run
//! ends.

use std::path::{Path, PathBuf};

mod common;

use common::{emvae, tempdir};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD_DATA: &str = "x,y\n0.1,0.2\n1.5,1.1\n-0.3,0.4\n2.2,2.0\n0.0,-0.1\n1.9,2.3\n";

fn gmm_config(gmm_extra: &str) -> String {
    format!("model = \"gmm\"\n[data]\npath = \"data.csv\"\n[gmm]\nn_components = 2\n{gmm_extra}")
}

/// (name, config text, data text, extra args, expected fragments of the error message).
type BadInput = (
    &'static str,
    String,
    &'static str,
    Vec<&'static str>,
    Vec<&'static str>,
);

fn bad_inputs() -> Vec<BadInput> {
    vec![
        ("unknown top-level key", format!("sede = 3\n{}", gmm_config("")), GOOD_DATA, vec![],
         vec!["c.toml:1:1", "key `sede`", "unknown field `sede`"]),
        ("unknown key in [gmm]", gmm_config("n_component = 2\n"), GOOD_DATA, vec![],
         vec!["c.toml:6:1", "key `gmm.n_component`", "unknown field"]),
        ("wrong type", gmm_config("tol = \"small\"\n"), GOOD_DATA, vec![],
         vec!["c.toml:6:7", "key `gmm.tol`", "invalid type: string"]),
        ("zero components", "model = \"gmm\"\n[data]\npath = \"data.csv\"\n[gmm]\nn_components = 0\n".into(), GOOD_DATA, vec![],
         vec!["c.toml:5:16", "key `gmm.n_components`", "at least 1"]),
        ("negative reg_covar", gmm_config("reg_covar = -1e-3\n"), GOOD_DATA, vec![],
         vec!["c.toml:6:13", "key `gmm.reg_covar`", ">= 0"]),
        ("unknown covariance type", gmm_config("covariance_type = \"fulll\"\n"), GOOD_DATA, vec![],
         vec!["c.toml:6", "key `gmm.covariance_type`", "unknown variant `fulll`", "`spherical`"]),
        ("TOML syntax error", "model = \"gmm\"\n[data\npath = 1\n".into(), GOOD_DATA, vec![],
         vec!["c.toml:2", "config error"]),
        ("model without its table", "model = \"gmm\"\n[data]\npath = \"data.csv\"\n".into(), GOOD_DATA, vec![],
         vec!["c.toml:1", "key `model`", "needs a [gmm] table"]),
        ("no data", "model = \"gmm\"\n[data]\n[gmm]\nn_components = 2\n".into(), GOOD_DATA, vec![],
         vec!["c.toml:2", "key `data.path`", "no data"]),
        ("weights not summing to 1", gmm_config("weights_init = [0.5, 0.6]\n"), GOOD_DATA, vec![],
         vec!["c.toml:6", "key `gmm.weights_init`", "sum to 1"]),
        ("ragged means_init", gmm_config("means_init = [[0.0, 1.0], [1.0]]\n"), GOOD_DATA, vec![],
         vec!["c.toml:6", "key `gmm.means_init`", "row 1 has 1 entries"]),
        ("precision not positive definite", gmm_config("precisions_init = [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 2.0], [2.0, 1.0]]]\n"), GOOD_DATA, vec![],
         vec!["c.toml:6", "key `gmm.precisions_init`", "matrix 1 is not positive definite"]),
        ("means_init width differs from the data", gmm_config("means_init = [[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]]\n"), GOOD_DATA, vec![],
         vec!["c.toml:6", "key `gmm.means_init`", "3 numbers but the data has 2 features"]),
        ("missing config file", String::new(), GOOD_DATA, vec!["--config", "nope.toml"],
         vec!["nope.toml", "cannot read config file"]),
        ("NaN in data", gmm_config(""), "x,y\n0.1,0.2\n1.5,NaN\n-0.3,0.4\n", vec![],
         vec!["data.csv:3", "column 2", "not a finite number"]),
        ("infinity in data", gmm_config(""), "0.1,0.2\n1.5,1.0\ninf,0.4\n", vec![],
         vec!["data.csv:3", "column 1", "not a finite number"]),
        ("ragged row", gmm_config(""), "x,y\n0.1,0.2\n1.5\n-0.3,0.4\n", vec![],
         vec!["data.csv:3", "ragged row: expected 2 fields", "found 1"]),
        ("non-numeric cell", gmm_config(""), "x,y\n0.1,0.2\n1.5,abc\n-0.3,0.4\n", vec![],
         vec!["data.csv:3", "column 2", "cannot read `abc` as a number"]),
        ("empty data file", gmm_config(""), "", vec![],
         vec!["data.csv", "empty"]),
        ("header without rows", gmm_config(""), "x,y\n", vec![],
         vec!["data.csv:1", "no data rows"]),
        ("fewer rows than components", "model = \"gmm\"\n[data]\npath = \"data.csv\"\n[gmm]\nn_components = 4\n".into(), "x,y\n0.1,0.2\n1.5,1.0\n0.3,0.4\n", vec![],
         vec!["data.csv", "3 rows but n_components is 4"]),
        ("label out of range", "model = \"gmm\"\n[data]\npath = \"data.csv\"\nlabel_column = \"z\"\n[gmm]\nn_components = 2\n".into(),
         "x,y,z\n0.1,0.2,0\n1.5,1.0,\n0.3,0.4,5\n2.0,2.1,1\n", vec![],
         vec!["data.csv:4", "label 5 is out of range"]),
        ("missing data file", "model = \"gmm\"\n[data]\npath = \"absent.csv\"\n[gmm]\nn_components = 2\n".into(), GOOD_DATA, vec![],
         vec!["absent.csv", "cannot read data file"]),
        ("sweep and a fixed number of components", gmm_config("[gmm.select]\nn_components = [1, 2]\n"), GOOD_DATA, vec![],
         vec!["c.toml:5", "key `gmm.n_components`", "not both"]),
        ("empty sweep", "model = \"gmm\"\n[data]\npath = \"data.csv\"\n[gmm.select]\nn_components = []\n".into(), GOOD_DATA, vec![],
         vec!["c.toml:5", "key `gmm.select.n_components`", "lists no candidate"]),
        ("sweep with a repeated candidate", "model = \"gmm\"\n[data]\npath = \"data.csv\"\n[gmm.select]\nn_components = [1, 2, 1]\n".into(), GOOD_DATA, vec![],
         vec!["c.toml:5", "key `gmm.select.n_components`", "lists 1 twice"]),
        ("unknown criterion", "model = \"gmm\"\n[data]\npath = \"data.csv\"\n[gmm.select]\nn_components = [1, 2]\ncriterion = \"dic\"\n".into(), GOOD_DATA, vec![],
         vec!["c.toml:6", "key `gmm.select.criterion`", "unknown variant `dic`"]),
        ("sweep beyond the rows", "model = \"gmm\"\n[data]\npath = \"data.csv\"\n[gmm.select]\nn_components = [1, 9]\n".into(), GOOD_DATA, vec![],
         vec!["data.csv", "6 rows but n_components is 9"]),
        ("no number of components", "model = \"gmm\"\n[data]\npath = \"data.csv\"\n[gmm]\ntol = 1e-3\n".into(), GOOD_DATA, vec![],
         vec!["c.toml:4", "key `gmm.n_components`", "must be given", "[gmm.select]"]),
        ("collapsed covariance", gmm_config("reg_covar = 0.0\ncovariance_type = \"diag\"\n"), "x,y\n1.0,0.5\n1.0,0.7\n1.0,0.1\n2.0,0.3\n2.0,0.9\n2.0,0.2\n", vec![],
         vec!["not positive definite", "component", "increase gmm.reg_covar"]),
        ("wgpu backend not built", gmm_config(""), GOOD_DATA, vec!["--backend", "wgpu"],
         vec!["built without the wgpu backend", "--features wgpu"]),
        ("duplicated column name", gmm_config(""), "x,y,x\n0.1,0.2,0.3\n1.5,1.1,1.0\n-0.3,0.4,0.1\n", vec![],
         vec!["data.csv:1", "columns 0 and 2 (0-based) are both named `x`", "rename one"]),
    ]
}

/// (name, data file name, its bytes, expected fragments of the error): files that are not text.
type BadFile = (&'static str, &'static str, Vec<u8>, Vec<&'static str>);

fn bad_data_files() -> Vec<BadFile> {
    // An IDX image file whose type byte is damaged (0x07 is no IDX type): valid UTF-8, so it used to be
    // read as CSV and reported as a ragged row.
    let mut idx = vec![0u8, 0, 0x07, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2];
    idx.extend([0, 10, 20, 30, 40, 50, 60, 70]);
    vec![
        (
            "IDX file with a wrong magic number",
            "train-images-idx3-ubyte",
            idx,
            vec![
                "train-images-idx3-ubyte",
                "wrong magic number 0x00000703",
                "taken from the file name",
            ],
        ),
        (
            "NumPy file without its magic",
            "x.npy",
            b"1,2\n3,4\n".to_vec(),
            vec!["x.npy", "not a NumPy .npy file"],
        ),
        (
            "Latin-1 CSV",
            "data.csv",
            b"x,y\n0.1,0.2\n1.5,1.1\n-0.3,0.4\xE9\n".to_vec(),
            vec![
                "data.csv:4",
                "not UTF-8 text: byte 0xE9 at character 9 of the line",
                "convert the file to UTF-8",
            ],
        ),
    ]
}

#[test]
fn bad_data_files_give_clear_errors_and_exit_2() {
    let mut failures = Vec::new();
    for (name, file, bytes, expected) in bad_data_files() {
        let dir = tempdir();
        std::fs::write(dir.path().join(file), bytes).unwrap();
        write(
            dir.path(),
            "c.toml",
            &format!("model = \"gmm\"\n[data]\npath = \"{file}\"\n[gmm]\nn_components = 2\n"),
        );
        let out = emvae(dir.path(), &["train", "--config", "c.toml", "--out", "run"]);
        let ok = out.code == 2
            && !out.stderr.contains("panicked")
            && !out.stderr.contains("ragged")
            && expected.iter().all(|e| out.stderr.contains(e));
        if !ok {
            failures.push(format!("{name}: exit {} stderr:\n{}", out.code, out.stderr));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bad_inputs_give_clear_errors_and_exit_2() {
    let mut failures = Vec::new();
    for (name, config, data, extra, expected) in bad_inputs() {
        let dir = tempdir();
        if !config.is_empty() {
            write(dir.path(), "c.toml", &config);
        }
        write(dir.path(), "data.csv", data);
        let mut args = vec!["train"];
        if !extra.contains(&"--config") {
            args.extend(["--config", "c.toml"]);
        }
        args.extend(extra.iter().copied());
        args.extend(["--out", "run"]);
        let out = emvae(dir.path(), &args);
        let ok = out.code == 2
            && !out.stderr.contains("panicked")
            && expected.iter().all(|e| out.stderr.contains(e));
        if !ok {
            failures.push(format!("{name}: exit {} stderr:\n{}", out.code, out.stderr));
        }
        if !dir.path().join("run").join("config.toml").exists() {
            continue;
        }
        // A run that failed on its input leaves no run directory behind, so it can simply be rerun;
        // only a failure during EM (collapsed covariance) keeps what was written.
        if name != "collapsed covariance" {
            failures.push(format!("{name}: left a run directory behind"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs misbehaved:\n{}",
        failures.len(),
        bad_inputs().len(),
        failures.join("\n")
    );
    assert!(bad_inputs().len() >= 15);
}

#[test]
fn run_level_errors_exit_2() {
    let dir = tempdir();
    write(dir.path(), "data.csv", GOOD_DATA);
    write(dir.path(), "c.toml", &gmm_config(""));
    let ok = emvae(
        dir.path(),
        &["train", "--config", "c.toml", "--out", "run", "-q"],
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let again = emvae(dir.path(), &["train", "--config", "c.toml", "--out", "run"]);
    assert_eq!(again.code, 2);
    assert!(
        again.stderr.contains("already holds a run") && again.stderr.contains("--resume"),
        "{}",
        again.stderr
    );

    let not_run = emvae(dir.path(), &["eval", "--run", "nowhere"]);
    assert_eq!(not_run.code, 2);
    assert!(
        not_run.stderr.contains("not a run directory"),
        "{}",
        not_run.stderr
    );
    let no_resume = emvae(dir.path(), &["train", "--out", "nowhere", "--resume"]);
    assert_eq!(no_resume.code, 2);
    assert!(
        no_resume.stderr.contains("cannot resume"),
        "{}",
        no_resume.stderr
    );

    write(dir.path(), "wide.csv", "a,b,c\n1,2,3\n4,5,6\n");
    let wide = emvae(
        dir.path(),
        &["predict", "--run", "run", "--data", "wide.csv"],
    );
    assert_eq!(wide.code, 2);
    assert!(
        wide.stderr.contains("wide.csv") && wide.stderr.contains("fitted on 2"),
        "{}",
        wide.stderr
    );

    std::fs::write(
        dir.path().join("run/model.json"),
        "{\"format\": \"something else\"",
    )
    .unwrap();
    let corrupt = emvae(dir.path(), &["predict", "--run", "run"]);
    assert_eq!(corrupt.code, 2);
    assert!(
        corrupt.stderr.contains("model.json") && !corrupt.stderr.contains("panicked"),
        "{}",
        corrupt.stderr
    );
}

/// A model file edited by hand: each edit that used to be trusted (a `null` log-likelihood, a wrong one,
/// covariances ignored) is an error naming the file and key, saying how to recover, with exit code 2.
#[test]
fn edited_model_files_give_clear_errors_and_exit_2() {
    let dir = tempdir();
    write(dir.path(), "data.csv", GOOD_DATA);
    write(dir.path(), "c.toml", &gmm_config(""));
    let train = emvae(
        dir.path(),
        &["train", "--config", "c.toml", "--out", "run", "-q"],
    );
    assert_eq!(train.code, 0, "{}", train.stderr);
    let model_path = dir.path().join("run/model.json");
    let original_bytes = std::fs::read(&model_path).unwrap();
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model_path).unwrap()).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let cases: Vec<(&str, Edit, &str, Vec<&str>)> = vec![
        (
            "negative Cholesky diagonal",
            |m| {
                let v = &mut m["precisions_cholesky"][1][1][1];
                *v = (-v.as_f64().unwrap()).into();
            },
            "eval",
            vec![
                "key `precisions_cholesky`",
                "matrix 1 has -",
                "on its diagonal",
                "must be > 0",
            ],
        ),
        (
            "zero Cholesky diagonal",
            |m| m["precisions_cholesky"][0][0][0] = 0.0.into(),
            "predict",
            vec![
                "key `precisions_cholesky`",
                "matrix 0 has 0 on its diagonal",
            ],
        ),
        (
            "non-finite Cholesky factor (null)",
            |m| m["precisions_cholesky"][0][1][1] = serde_json::Value::Null,
            "sample",
            vec!["key `precisions_cholesky`", "nested arrays of numbers"],
        ),
        (
            "weights not summing to 1",
            |m| m["weights"] = serde_json::json!([0.9, 0.9]),
            "eval",
            vec!["key `weights`", "must sum to 1, sums to 1.8"],
        ),
        (
            "covariances disagree with the precisions",
            |m| {
                let v = &mut m["covariances"][1][0][0];
                *v = (2.0 * v.as_f64().unwrap()).into();
            },
            "sample",
            vec![
                "key `covariances`",
                "component 1:",
                "covariances and precisions_cholesky disagree",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (name, edit, command, expected) in &cases {
        let mut model = original.clone();
        edit(&mut model);
        std::fs::write(&model_path, model.to_string()).unwrap();
        let out = emvae(dir.path(), &[command, "--run", "run"]);
        let ok = out.code == 2
            && !out.stderr.contains("panicked")
            && out.stderr.contains("model.json")
            && out.stderr.contains("emvae train --config")
            && expected.iter().all(|e| out.stderr.contains(e));
        if !ok {
            failures.push(format!("{name}: exit {} stderr:\n{}", out.code, out.stderr));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The file as written by train is accepted by all three (byte for byte: its checksum is recorded).
    std::fs::write(&model_path, &original_bytes).unwrap();
    for command in ["eval", "predict", "sample"] {
        let out = emvae(dir.path(), &[command, "--run", "run"]);
        assert_eq!(out.code, 0, "{command}: {}", out.stderr);
    }
}

/// 50 identical rows and 3 components: the fit leaves two components empty, and says so on stderr and
/// in summary.json.
#[test]
fn empty_components_are_warned_of_and_recorded() {
    let dir = tempdir();
    write(dir.path(), "data.csv", &"1.0,2.0\n".repeat(50));
    write(
        dir.path(),
        "c.toml",
        "model = \"gmm\"\n[data]\npath = \"data.csv\"\n[gmm]\nn_components = 3\n",
    );
    let out = emvae(dir.path(), &["train", "--config", "c.toml", "--out", "run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for fragment in [
        "1 distinct rows but n_components is 3",
        "have weights",
        "they hold no data",
    ] {
        assert!(out.stderr.contains(fragment), "{fragment}: {}", out.stderr);
    }
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run/summary.json")).unwrap(),
    )
    .unwrap();
    let warnings: Vec<String> = serde_json::from_value(summary["warnings"].clone()).unwrap();
    assert!(
        warnings.iter().any(|w| w.contains("distinct rows"))
            && warnings.iter().any(|w| w.contains("have weights")),
        "{warnings:?}"
    );
}

#[test]
fn every_command_has_help_with_an_example() {
    let dir = tempdir();
    for cmd in [
        "train",
        "eval",
        "predict",
        "sample",
        "encode",
        "decode",
        "reconstruct",
        "generate",
        "bench",
    ] {
        let out = emvae(dir.path(), &[cmd, "--help"]);
        assert_eq!(out.code, 0, "{cmd}");
        assert!(
            out.stdout.contains("Example") && out.stdout.contains("emvae "),
            "{cmd} --help:\n{}",
            out.stdout
        );
    }
}

#[test]
fn resumed_training_ends_where_an_uninterrupted_run_ends() {
    let dir = tempdir();
    write(
        dir.path(),
        "c.toml",
        "model = \"gmm\"\n[data.synthetic]\nn_samples = 2000\nn_features = 3\nn_components = 4\nseparation = 1.5\n\
         label_fraction = 0.02\n[gmm]\nn_components = 4\nn_init = 2\ntol = 1e-7\nmax_iter = 40\n",
    );
    let whole = emvae(
        dir.path(),
        &["train", "--config", "c.toml", "--out", "whole", "-q"],
    );
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    let first = emvae(
        dir.path(),
        &[
            "train",
            "--config",
            "c.toml",
            "--out",
            "parts",
            "-q",
            "--stop-after",
            "13",
        ],
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(!dir.path().join("parts/model.json").exists());
    // Across the boundary between the two initialisations.
    let second = emvae(
        dir.path(),
        &[
            "train",
            "--out",
            "parts",
            "--resume",
            "-q",
            "--stop-after",
            "40",
        ],
    );
    assert_eq!(second.code, 0, "{}", second.stderr);
    let last = emvae(dir.path(), &["train", "--out", "parts", "--resume", "-q"]);
    assert_eq!(last.code, 0, "{}", last.stderr);
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
    assert_eq!(read("whole/model.json"), read("parts/model.json"));
    let strip_seconds = |text: String| -> Vec<String> {
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("seconds");
                v.to_string()
            })
            .collect()
    };
    let metrics = strip_seconds(read("whole/metrics.jsonl"));
    assert_eq!(metrics, strip_seconds(read("parts/metrics.jsonl")));
    assert_eq!(metrics.len(), 80);
}

/// A `[gmm.select]` sweep picks the generating number of components by BIC, reports every candidate, and
/// a run stopped during the winner's refit resumes without sweeping again, ending where an uninterrupted
/// run ends.
#[test]
fn a_component_sweep_selects_by_bic_and_resumes() {
    let dir = tempdir();
    write(
        dir.path(),
        "c.toml",
        "model = \"gmm\"\n[data.synthetic]\nn_samples = 1500\nn_features = 2\nn_components = 3\nseparation = 5.0\n\
         [gmm]\nn_init = 2\ntol = 1e-6\n[gmm.select]\nn_components = [1, 2, 3, 4, 5, 6]\n\
         covariance_types = [\"full\", \"spherical\"]\n",
    );
    let whole = emvae(
        dir.path(),
        &["train", "--config", "c.toml", "--out", "whole", "-q"],
    );
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&read("whole/summary.json")).unwrap();
    let selection = &summary["selection"];
    let candidates = selection["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 12);
    assert_eq!(selection["criterion"], "bic");
    let best = &candidates[selection["best"].as_u64().unwrap() as usize];
    assert_eq!(best["n_components"], 3, "{selection}");
    assert_eq!(summary["n_components"], 3);
    assert_eq!(summary["covariance_type"], best["covariance_type"]);
    let min_bic = candidates
        .iter()
        .map(|c| c["bic"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(best["bic"].as_f64().unwrap(), min_bic);
    // The refitted winner is the candidate the sweep scored.
    assert_eq!(summary["bic"], best["bic"]);
    let model: serde_json::Value = serde_json::from_str(&read("whole/model.json")).unwrap();
    assert_eq!(
        model["weights"].as_array().map(Vec::len),
        Some(3),
        "{model}"
    );

    let first = emvae(
        dir.path(),
        &[
            "train",
            "--config",
            "c.toml",
            "--out",
            "parts",
            "--stop-after",
            "2",
        ],
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(dir.path().join("parts/selection.json").exists());
    assert!(!dir.path().join("parts/model.json").exists());
    let second = emvae(dir.path(), &["train", "--out", "parts", "--resume"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stderr.contains("read from selection.json") && !second.stderr.contains("k =  1"),
        "{}",
        second.stderr
    );
    assert_eq!(read("whole/model.json"), read("parts/model.json"));
}

#[test]
fn train_eval_predict_sample_generate_round_trip() {
    let dir = tempdir();
    let generated = emvae(
        dir.path(),
        &[
            "generate",
            "--n-samples",
            "1500",
            "--n-features",
            "2",
            "--n-components",
            "3",
            "--label-fraction",
            "0.1",
            "--seed",
            "4",
            "--output",
            "g.csv",
        ],
    );
    assert_eq!(generated.code, 0, "{}", generated.stderr);
    write(
        dir.path(),
        "c.toml",
        "model = \"gmm\"\n[data]\npath = \"g.csv\"\nlabel_column = \"label\"\n[gmm]\nn_components = 3\n",
    );
    let train = emvae(
        dir.path(),
        &["train", "--config", "c.toml", "--out", "run", "-q"],
    );
    assert_eq!(train.code, 0, "{}", train.stderr);
    let summary: serde_json::Value = serde_json::from_str(&train.stdout).unwrap();
    assert!(summary["n_labelled"].as_u64().unwrap() as f64 / 1500.0 > 0.05);
    for name in [
        "config.toml",
        "metrics.jsonl",
        "model.json",
        "summary.json",
        "checkpoint.json",
        "train.log",
    ] {
        assert!(dir.path().join("run").join(name).exists(), "{name}");
    }
    let warnings = summary["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .all(|w| !w.as_str().unwrap().contains("no data")),
        "{summary}"
    );
    let eval = emvae(dir.path(), &["eval", "--run", "run"]);
    assert_eq!(eval.code, 0, "{}", eval.stderr);
    // One fit is kept: a choice among saved models is refused, not ignored.
    let kept = emvae(dir.path(), &["eval", "--run", "run", "--epoch", "1"]);
    assert_eq!(kept.code, 2);
    assert!(kept.stderr.contains("keeps one fit"), "{}", kept.stderr);
    let report: serde_json::Value = serde_json::from_str(&eval.stdout).unwrap();
    assert!(
        report["labelled_accuracy"].as_f64().unwrap() > 0.9,
        "{report}"
    );
    // New rows without the label column: evaluated (and predicted) unlabelled, not refused.
    let unlabelled: String = std::fs::read_to_string(dir.path().join("g.csv"))
        .unwrap()
        .lines()
        .take(201)
        .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(",") + "\n")
        .collect();
    assert!(unlabelled.starts_with("x0,x1\n"), "{}", &unlabelled[..40]);
    write(dir.path(), "new.csv", &unlabelled);
    let eval_new = emvae(dir.path(), &["eval", "--run", "run", "--data", "new.csv"]);
    assert_eq!(eval_new.code, 0, "{}", eval_new.stderr);
    let report: serde_json::Value = serde_json::from_str(&eval_new.stdout).unwrap();
    assert_eq!(report["n_samples"], 200, "{report}");
    assert!(
        report["log_likelihood"].as_f64().unwrap().is_finite(),
        "{report}"
    );
    assert!(report.get("labelled_accuracy").is_none(), "{report}");
    let predict_new = emvae(
        dir.path(),
        &["predict", "--run", "run", "--data", "new.csv"],
    );
    assert_eq!(predict_new.code, 0, "{}", predict_new.stderr);
    assert_eq!(predict_new.stdout.lines().count(), 200);
    // With the label column, --data is evaluated against its labels as before.
    let eval_labelled = emvae(dir.path(), &["eval", "--run", "run", "--data", "g.csv"]);
    let report: serde_json::Value = serde_json::from_str(&eval_labelled.stdout).unwrap();
    assert!(
        report["labelled_accuracy"].as_f64().unwrap() > 0.9,
        "{report}"
    );
    let predict = emvae(dir.path(), &["predict", "--run", "run"]);
    let lines: Vec<serde_json::Value> = predict
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1500);
    let resp: Vec<f64> = serde_json::from_value(lines[0]["responsibilities"].clone()).unwrap();
    assert!((resp.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    let sample = emvae(
        dir.path(),
        &["sample", "--run", "run", "-n", "7", "--format", "csv"],
    );
    assert_eq!(sample.stdout.lines().count(), 8);
    assert!(sample.stdout.starts_with("component,x0,x1"));
    let again = emvae(
        dir.path(),
        &["sample", "--run", "run", "-n", "7", "--format", "csv"],
    );
    assert_eq!(sample.stdout, again.stdout, "sampling is reproducible");
}

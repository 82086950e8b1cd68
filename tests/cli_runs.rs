//! Runs that never lose work: `--force` replaces a run only once the new one has its first checkpoint
//! (a failed replacement gives the previous run back, its own log saying why), a run directory in use
//! by a live process is refused and a stale lock taken over, and output paths that cannot be runs are
//! user errors.

use std::path::Path;

mod common;

use common::{emvae, tempdir};

const DATA: &str = "x,y\n0.1,0.2\n1.5,1.1\n-0.3,0.4\n2.2,2.0\n0.0,-0.1\n1.9,2.3\n";
/// A constant first column: with `reg_covar = 0` a component's variance collapses during EM.
const COLLAPSING: &str = "x,y\n1.0,0.5\n1.0,0.7\n1.0,0.1\n2.0,0.3\n2.0,0.9\n2.0,0.2\n";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn config(data: &str, extra: &str) -> String {
    format!(
        "model = \"gmm\"\nseed = 1\n[data]\npath = \"{data}\"\n[gmm]\nn_components = 2\n{extra}"
    )
}

#[test]
fn failed_force_keeps_the_previous_run_and_logs_why() {
    let dir = tempdir();
    let d = dir.path();
    write(d, "data.csv", DATA);
    write(d, "collapsing.csv", COLLAPSING);
    write(d, "good.toml", &config("data.csv", ""));
    write(
        d,
        "bad.toml",
        &config(
            "collapsing.csv",
            "reg_covar = 0.0\ncovariance_type = \"diag\"\n",
        ),
    );
    let first = emvae(d, &["train", "--config", "good.toml", "--out", "run"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let run = d.join("run");
    let files = [
        "model.json",
        "summary.json",
        "metrics.jsonl",
        "config.toml",
        "train.log",
    ];
    let before: Vec<String> = files.iter().map(|f| read(&run.join(f))).collect();

    let failed = emvae(
        d,
        &["train", "--config", "bad.toml", "--out", "run", "--force"],
    );
    assert_eq!(failed.code, 2, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("not positive definite"),
        "{}",
        failed.stderr
    );
    assert!(
        failed
            .stderr
            .contains("the previous run in run is unchanged"),
        "{}",
        failed.stderr
    );
    let after: Vec<String> = files.iter().map(|f| read(&run.join(f))).collect();
    assert_eq!(before, after, "the previous run is exactly as it was");
    let attempt_log = read(&d.join(".run.failed").join("train.log"));
    assert!(
        attempt_log.contains("training failed") && attempt_log.contains("not positive definite"),
        "the attempt's own log says why it failed:\n{attempt_log}"
    );
    let eval = emvae(d, &["eval", "--run", "run"]);
    assert_eq!(
        eval.code, 0,
        "the previous run still evaluates: {}",
        eval.stderr
    );
    assert!(!d.join(".run.previous").exists());
    assert!(!d.join(".run.lock").exists(), "the lock is released");

    // A replacement that succeeds starts a fresh log and leaves nothing of the old run behind.
    std::fs::write(run.join("train.log"), "OLD-RUN-LINE\n").unwrap();
    write(
        d,
        "good2.toml",
        &config("data.csv", "covariance_type = \"spherical\"\n"),
    );
    let replaced = emvae(
        d,
        &["train", "--config", "good2.toml", "--out", "run", "--force"],
    );
    assert_eq!(replaced.code, 0, "{}", replaced.stderr);
    assert!(!read(&run.join("train.log")).contains("OLD-RUN-LINE"));
    assert!(read(&run.join("config.toml")).contains("spherical"));
    assert!(!d.join(".run.previous").exists(), "the previous run went");
}

/// The start time of this process in /proc/self/stat (field 22), as the lock file records it.
fn own_start_time() -> Option<String> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19).map(str::to_string)
}

#[test]
fn a_run_in_use_is_refused_and_a_stale_lock_taken_over() {
    let Some(start) = own_start_time() else {
        eprintln!("skipped: no /proc to tell live processes");
        return;
    };
    let dir = tempdir();
    let d = dir.path();
    write(d, "data.csv", DATA);
    write(d, "good.toml", &config("data.csv", "max_iter = 3\n"));
    // A live owner: this test process.
    write(d, ".run.lock", &format!("{} {start}\n", std::process::id()));
    let busy = emvae(d, &["train", "--config", "good.toml", "--out", "run"]);
    assert_eq!(busy.code, 2, "{}", busy.stderr);
    assert!(
        busy.stderr.contains("in use by another emvae process")
            && busy.stderr.contains(&std::process::id().to_string()),
        "{}",
        busy.stderr
    );
    assert!(!d.join("run").exists(), "nothing was started");

    // An owner that has exited: its lock is stale and taken over.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    write(d, ".run.lock", &format!("{dead} 1\n"));
    let ok = emvae(d, &["train", "--config", "good.toml", "--out", "run"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(d.join("run").join("model.json").exists());
    assert!(!d.join(".run.lock").exists(), "released at exit");
}

#[test]
fn outputs_that_cannot_be_runs_are_user_errors() {
    let dir = tempdir();
    let d = dir.path();
    write(d, "data.csv", DATA);
    write(d, "good.toml", &config("data.csv", ""));
    write(d, "afile", "not a directory");
    let file = emvae(d, &["train", "--config", "good.toml", "--out", "afile"]);
    assert_eq!(file.code, 2, "{}", file.stderr);
    assert!(
        file.stderr.contains("is a file, not a run directory"),
        "{}",
        file.stderr
    );
    assert_eq!(read(&d.join("afile")), "not a directory");

    let zero = emvae(
        d,
        &[
            "train",
            "--config",
            "good.toml",
            "--out",
            "run",
            "--stop-after",
            "0",
        ],
    );
    assert_eq!(zero.code, 2, "{}", zero.stderr);
    assert!(zero.stderr.contains("--stop-after"), "{}", zero.stderr);
    assert!(!d.join("run").exists());
}

/// An output file never replaces a run's own files, and a missing folder is the user's to create.
#[test]
fn outputs_never_replace_a_runs_files() {
    let dir = tempdir();
    let d = dir.path();
    write(d, "data.csv", DATA);
    write(d, "good.toml", &config("data.csv", ""));
    let trained = emvae(d, &["train", "--config", "good.toml", "--out", "run"]);
    assert_eq!(trained.code, 0, "{}", trained.stderr);
    let model = read(&d.join("run/model.json"));
    for (args, expected) in [
        (
            vec!["predict", "--run", "run", "--output", "run/model.json"],
            "would replace the run's own model.json",
        ),
        (
            vec![
                "sample",
                "--run",
                "run",
                "-n",
                "3",
                "--output",
                "run/summary.json",
            ],
            "would replace the run's own summary.json",
        ),
        (
            vec!["predict", "--run", "run", "--output", "missing/p.jsonl"],
            "the folder missing does not exist",
        ),
        (
            vec!["predict", "--run", "run", "--output", "run"],
            "is a directory",
        ),
    ] {
        let out = emvae(d, &args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
    }
    assert_eq!(
        read(&d.join("run/model.json")),
        model,
        "the model is untouched"
    );
    let beside = emvae(
        d,
        &[
            "predict",
            "--run",
            "run",
            "--output",
            "run/predictions.jsonl",
        ],
    );
    assert_eq!(
        beside.code, 0,
        "other files may go into a run directory: {}",
        beside.stderr
    );
    assert!(read(&d.join("run/predictions.jsonl")).lines().count() >= 6);
}

/// A model file edited or damaged after training (even to values that pass validation) is refused,
/// naming the file; one the run wrote is read.
#[test]
fn edited_model_files_are_refused_by_checksum() {
    let dir = tempdir();
    let d = dir.path();
    write(d, "data.csv", DATA);
    write(d, "good.toml", &config("data.csv", ""));
    assert_eq!(
        emvae(d, &["train", "--config", "good.toml", "--out", "run"]).code,
        0
    );
    assert_eq!(emvae(d, &["predict", "--run", "run"]).code, 0);
    let model = read(&d.join("run/model.json"));
    // A valid model, but not the one trained: one digit of a mean changed.
    let at = model.find("\"means\"").expect("means") + 20;
    let digit = model[at..]
        .find(|c: char| c.is_ascii_digit() && c != '0')
        .unwrap()
        + at;
    let mut edited = model.clone().into_bytes();
    edited[digit] = if edited[digit] == b'9' {
        b'8'
    } else {
        edited[digit] + 1
    };
    std::fs::write(d.join("run/model.json"), &edited).unwrap();
    let out = emvae(d, &["predict", "--run", "run"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("model.json") && out.stderr.contains("differs from what the run wrote"),
        "{}",
        out.stderr
    );

    // A VAE's parameters with one byte flipped.
    let mut csv = String::new();
    for i in 0..64 {
        let row: Vec<&str> = (0..6)
            .map(|j| if (i + j) % 3 == 0 { "1" } else { "0" })
            .collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    write(d, "x.csv", &csv);
    write(
        d,
        "vae.toml",
        "model = \"vae\"\nseed = 1\n[data]\npath = \"x.csv\"\n[vae.encoder]\nsizes = [6, 8, 2]\n\
         [vae.decoder]\nsizes = [2, 8, 6]\n[vae.likelihood]\nkind = \"bernoulli\"\n\
         [vae.train]\nepochs = 2\nbatch_size = 16\n[vae.eval]\nevery = 1\niw_samples = 2\nfinal_iw_samples = 4\n",
    );
    assert_eq!(
        emvae(d, &["train", "--config", "vae.toml", "--out", "vrun"]).code,
        0
    );
    assert_eq!(emvae(d, &["sample", "--run", "vrun", "-n", "2"]).code, 0);
    let mut bytes = std::fs::read(d.join("vrun/model.bpk")).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    std::fs::write(d.join("vrun/model.bpk"), &bytes).unwrap();
    let out = emvae(d, &["sample", "--run", "vrun", "-n", "2"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("model.bpk") && out.stderr.contains("differs from what the run wrote"),
        "{}",
        out.stderr
    );
}

//! `emvae bench fuzz`: every loader of user-controlled bytes (config, CSV, NPY, IDX, GMM model and
//! checkpoint, VAE checkpoint, vocabulary) takes random and mutated inputs without a panic, a hang or an
//! unbounded allocation. CI runs 3,000 cases per target (about 2 s in a release build on 2 cores); the
//! full run is `emvae bench fuzz` (100,000 per target).

mod common;

use common::{emvae, json_lines, tempdir};

const TARGETS: [&str; 8] = [
    "config",
    "csv",
    "npy",
    "idx",
    "gmm-model",
    "gmm-checkpoint",
    "vae-checkpoint",
    "vocab",
];

const CASES: u64 = 3000;

#[test]
fn every_loader_takes_mutated_inputs_without_a_panic() {
    let dir = tempdir();
    let cases = CASES.to_string();
    let out = emvae(dir.path(), &["bench", "fuzz", "--cases", &cases]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), TARGETS.len(), "{}", out.stdout);
    for target in TARGETS {
        let line = lines
            .iter()
            .find(|l| l["target"] == target)
            .unwrap_or_else(|| panic!("no line for {target}: {}", out.stdout));
        assert_eq!(line["bench"], "fuzz", "{line}");
        assert_eq!(line["cases"], CASES, "{line}");
        assert_eq!(line["panics"], 0, "{line}");
        assert_eq!(line["hangs"], 0, "{line}");
        assert_eq!(line["allocations"], 0, "{line}");
        let (errors, accepted) = (line["errors"].as_u64(), line["accepted"].as_u64());
        assert_eq!(
            errors.zip(accepted).map(|(e, a)| e + a),
            Some(CASES),
            "{line}"
        );
        // Both outcomes occur: the inputs are neither all garbage nor all valid.
        assert!(errors > Some(0) && accepted > Some(0), "{line}");
        assert!(line["max_case_ms"].as_f64().is_some(), "{line}");
        assert!(line["seconds"].as_f64().is_some(), "{line}");
        assert!(
            !dir.path()
                .join(format!("fuzz-failure-{target}.bin"))
                .exists(),
            "{target}"
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_cases() {
    let dir = tempdir();
    let run = |seed: &str| {
        let out = emvae(
            dir.path(),
            &[
                "bench", "fuzz", "--cases", "300", "--seed", seed, "--target", "npy", "--target",
                "vocab",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        json_lines(&out.stdout)
            .iter()
            .map(|l| {
                (
                    l["target"].clone(),
                    l["accepted"].clone(),
                    l["errors"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let first = run("7");
    assert_eq!(first.len(), 2);
    assert_eq!((&first[0].0, &first[1].0), (&"npy".into(), &"vocab".into()));
    assert_eq!(first, run("7"));
}

#[test]
fn unknown_targets_and_no_cases_are_refused() {
    let dir = tempdir();
    let out = emvae(dir.path(), &["bench", "fuzz", "--target", "pickle"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("unknown target"), "{}", out.stderr);
    assert!(out.stderr.contains("vae-checkpoint"), "{}", out.stderr);
    let out = emvae(dir.path(), &["bench", "fuzz", "--cases", "0"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

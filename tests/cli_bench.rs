//! `emvae bench` with no benchmark named: every model on every backend of the build, one summary line
//! each with a finite, positive throughput (the figures themselves are for `emvae bench`, not tests).

mod common;

use common::{emvae, tempdir};

#[test]
fn bench_table_covers_every_model_and_backend() {
    let dir = tempdir();
    let out = emvae(dir.path(), &["bench", "--quick", "-q"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    let summary: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["bench"] == "summary").collect();
    let mut backends = vec!["flex", "ndarray"];
    if cfg!(feature = "wgpu") {
        backends.push("wgpu");
    }
    for backend in backends {
        for model in ["gmm-full-f64", "gmm-full-f32", "mlp-vae", "text-vae"] {
            let row = summary
                .iter()
                .find(|l| l["model"] == model && l["backend"] == backend)
                .unwrap_or_else(|| panic!("no summary for {model} on {backend}:\n{}", out.stdout));
            let rate = row["throughput"].as_f64().expect("a number");
            assert!(
                rate.is_finite() && rate > 0.0,
                "{model} on {backend}: {rate}"
            );
        }
    }
    for model in [
        "ppca-fit",
        "fa-fit",
        "fa-squarem-fit",
        "hmm-gaussian_diag",
        "hmm-gaussian_full",
        "hmm-categorical",
    ] {
        let row = summary
            .iter()
            .find(|l| l["model"] == model && l["backend"] == "host")
            .unwrap_or_else(|| panic!("no summary for {model}:\n{}", out.stdout));
        let rate = row["throughput"].as_f64().expect("a number");
        assert!(rate.is_finite() && rate > 0.0, "{model}: {rate}");
    }
    assert!(
        out.stderr.contains("throughput"),
        "the table: {}",
        out.stderr
    );
}

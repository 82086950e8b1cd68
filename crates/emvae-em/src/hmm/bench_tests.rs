//! Seconds per Baum-Welch iteration on the data `benches/peers/hmmlearn_bench.py --write-data DIR`
//! writes, timed as that script times hmmlearn (differential: `(t(M2) - t(M1)) / (M2 - M1)` with each
//! `t` the fastest of five fits, the least disturbed by other processes), in wall-clock and CPU seconds.
//! Ignored: run with
//! `EMVAE_HMM_BENCH_DIR=DIR [RAYON_NUM_THREADS=n] cargo test --release -p emvae-em seconds_per_iteration -- --ignored --nocapture`.

use std::time::Instant;

use serde::Deserialize;

use super::*;
use emvae_core::data::Matrix;

#[derive(Deserialize)]
struct BenchCase {
    #[serde(rename = "X")]
    x: Option<Vec<Vec<f64>>>,
    symbols: Option<Vec<usize>>,
    n_symbols: Option<usize>,
    lengths: Vec<usize>,
    startprob_init: Vec<f64>,
    transmat_init: Vec<Vec<f64>>,
    means_init: Option<Vec<Vec<f64>>>,
    covars_init: Option<ArrayInit>,
    emissionprob_init: Option<Vec<Vec<f64>>>,
}

/// CPU seconds of every thread of this process so far (Linux `schedstat`): on a loaded machine the
/// wall clock counts other processes' time slices too.
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 * 1e-9
}

#[test]
#[ignore = "benchmark: needs EMVAE_HMM_BENCH_DIR from benches/peers/hmmlearn_bench.py --write-data"]
fn seconds_per_iteration() {
    let Ok(dir) = std::env::var("EMVAE_HMM_BENCH_DIR") else {
        eprintln!("EMVAE_HMM_BENCH_DIR is not set");
        return;
    };
    let (m1, m2) = (2, 7);
    // EMVAE_HMM_BENCH_CASE=name times one case alone (for profiling).
    let only = std::env::var("EMVAE_HMM_BENCH_CASE").ok();
    for name in ["gaussian_diag", "gaussian_full", "categorical"] {
        if only.as_ref().is_some_and(|o| o != name) {
            continue;
        }
        let text = std::fs::read_to_string(format!("{dir}/{name}.json")).unwrap();
        let c: BenchCase = serde_json::from_str(&text).unwrap();
        let k = c.startprob_init.len();
        let lengths = Some(c.lengths.clone());
        let (data, mut p) = match &c.x {
            Some(x) => {
                let cov = if name == "gaussian_full" {
                    CovarianceType::Full
                } else {
                    CovarianceType::Diag
                };
                let data = Sequences::gaussian(Matrix::from_rows(x), lengths, name).unwrap();
                (data, HmmParams::new(k).covariance_type(cov))
            }
            None => {
                let (s, v) = (c.symbols.clone().unwrap(), c.n_symbols.unwrap());
                let data = Sequences::categorical_flat(s, lengths, v, name).unwrap();
                (data, HmmParams::new(k).emission(Emission::Categorical))
            }
        };
        p = p
            .tol(0.0)
            .startprob_init(c.startprob_init.clone())
            .transmat_init(c.transmat_init.clone());
        p.means_init = c.means_init.clone();
        p.covars_init = c.covars_init.clone();
        p.emissionprob_init = c.emissionprob_init.clone();
        // (wall, cpu) seconds of a fit of `n` iterations.
        let time = |n: usize| {
            let valid = p.clone().max_iter(n).check().unwrap();
            let (start, cpu) = (Instant::now(), cpu_seconds());
            valid.fit(&data).unwrap();
            (start.elapsed().as_secs_f64(), cpu_seconds() - cpu)
        };
        time(1);
        // The fastest of five fits per number of iterations (the least disturbed by other processes).
        let (mut t1, mut t2) = (
            (f64::INFINITY, f64::INFINITY),
            (f64::INFINITY, f64::INFINITY),
        );
        for _ in 0..5 {
            let (a, b) = (time(m1), time(m2));
            t1 = (t1.0.min(a.0), t1.1.min(a.1));
            t2 = (t2.0.min(b.0), t2.1.min(b.1));
        }
        let per = |a: f64, b: f64| (b - a) / (m2 - m1) as f64;
        println!(
            "{{\"impl\":\"emvae\",\"emission\":\"{name}\",\"threads\":{},\"seconds_per_iteration\":{:.5},\
             \"cpu_seconds_per_iteration\":{:.5},\"n_observations\":{}}}",
            rayon::current_num_threads(),
            per(t1.0, t2.0),
            per(t1.1, t2.1),
            data.n_observations()
        );
    }
}

//! Fit times on the data sets `benches/peers/sklearn_linear_bench.py --save-npy DIR` writes, for
//! comparison with scikit-learn's. Ignored: run with
//! `EMVAE_LINEAR_BENCH_DIR=DIR cargo test --release -p emvae-em linear::bench -- --ignored --nocapture`.

use std::path::PathBuf;
use std::time::Instant;

use emvae_core::data::{Dataset, read_npy};

use super::{LinearGaussian, LinearGaussianParams, Noise, SufficientStats};
use crate::driver::{Acceleration, data_fingerprint};

/// Best of `repeats` wall-clock seconds of `f`, and its last result.
fn best<T>(repeats: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut out = None;
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(r);
    }
    (best, out.expect("repeats >= 1"))
}

#[test]
#[ignore = "timing; needs the data written by benches/peers/sklearn_linear_bench.py --save-npy"]
fn fit_times() {
    let dir = PathBuf::from(
        std::env::var("EMVAE_LINEAR_BENCH_DIR").unwrap_or_else(|_| "/tmp/linear_bench".into()),
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the bench directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "npy"))
        .collect();
    files.sort();
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let data = Dataset::new(read_npy(&path, &bytes).unwrap(), &path);
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let q: usize = stem.rsplit('_').next().unwrap().parse().unwrap();
        let (n, d) = (data.n_rows(), data.n_cols());
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let (t, _) = best(5, || SufficientStats::from_matrix(&data.x));
                println!("# {stem} threads {threads}: statistics {t:.4} s");
                let (t, _) = best(5, || data_fingerprint(&data));
                println!("# {stem} threads {threads}: data fingerprint {t:.4} s");
                let models = [
                    ("ppca", Noise::Isotropic, Acceleration::None),
                    ("fa", Noise::Diagonal, Acceleration::None),
                    ("fa-squarem", Noise::Diagonal, Acceleration::Squarem),
                ];
                for (name, noise, acceleration) in models {
                    let valid = LinearGaussianParams::new(q)
                        .noise(noise)
                        .acceleration(acceleration)
                        .check()
                        .unwrap();
                    let (seconds, fit): (f64, LinearGaussian) = best(5, || valid.fit(&data).unwrap());
                    // With the data fingerprint a checkpoint needs (hashed beside the statistics).
                    let (with_checkpoints, _) =
                        best(5, || valid.fit_with(&data, &mut (), None).unwrap());
                    println!(
                        "{}",
                        serde_json::json!({
                            "impl": "emvae", "model": name, "n": n, "d": d, "q": q, "threads": threads,
                            "seconds": seconds, "seconds_fit_with": with_checkpoints,
                            "n_iter": fit.n_iter, "e_steps": fit.e_steps,
                            "score": fit.lower_bound,
                        })
                    );
                }
            });
        }
    }
}

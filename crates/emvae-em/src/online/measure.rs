//! Measurements, not checks (`#[ignore]`d): online EM's peak memory and time on 10,000,000 streamed rows
//! against batch EM on 1,000,000 rows in memory. Run each alone, in its own process so that VmHWM is
//! its own: `cargo test --release -p emvae-em measure_online -- --ignored --nocapture`, then
//! `measure_batch`.

use burn::tensor::Device;
use emvae_core::data::stream::{SyntheticStream, collect_rows};
use emvae_core::data::synthetic::SyntheticMixture;
use emvae_core::data::{Dataset, Matrix};
use emvae_core::tensor::{Compute, Precision};

use super::*;
use crate::gmm::{GmmParameters, GmmParams};

fn compute() -> Compute {
    Compute::new(Device::flex(), Precision::F64).in_host_memory()
}

/// Peak resident memory (VmHWM) of this process in MiB, where `/proc` says.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The mixture of the measurements (d = 8, k = 8) and its held-out rows.
fn measured_mixture(n: usize) -> (SyntheticStream, impl Fn() -> Matrix) {
    let spec = SyntheticMixture {
        n_samples: n,
        n_features: 8,
        n_components: 8,
        separation: 4.0,
        label_fraction: 0.0,
        seed: 11,
    };
    let stream = SyntheticStream::new(&spec).unwrap();
    let truth = stream.truth().clone();
    let held_out = move || {
        let mut s = SyntheticStream::from_truth(truth.clone(), 100_000, 1001).unwrap();
        collect_rows(&mut s, 100_000).unwrap()
    };
    (stream, held_out)
}

/// Peak memory, every 1,000,000 rows of 10,000,000 streamed, and the held-out log-likelihood.
#[test]
#[ignore = "measurement (about a minute); run alone with --ignored --nocapture"]
fn measure_online_em_on_ten_million_streamed_rows() {
    struct Memory(std::time::Instant);
    impl OnlineObserver for Memory {
        fn on_batch(
            &mut self,
            r: &BatchRecord,
            _: &GmmParameters,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            if r.rows_seen.is_multiple_of(1_000_000) {
                eprintln!(
                    "online: {:>10} rows, {:>6.1} s, VmHWM {:.1} MiB, batch log-likelihood {:.5}",
                    r.rows_seen,
                    self.0.elapsed().as_secs_f64(),
                    peak_rss_mib().unwrap_or(f64::NAN),
                    r.log_likelihood
                );
            }
            Ok(())
        }
    }
    let (mut stream, held_out) = measured_mixture(10_000_000);
    let valid = GmmParams::new(8)
        .seed(3)
        .online(OnlineParams::default())
        .check()
        .unwrap();
    let start = std::time::Instant::now();
    let fit = valid
        .fit_online(&mut stream, &compute(), &mut Memory(start))
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let ll = fit.mixture.score(&held_out(), &compute()).unwrap();
    eprintln!("online: {seconds:.1} s, held-out log-likelihood {ll:.6}");
}

/// Batch EM on 1,000,000 rows held in memory: the baseline of the above.
#[test]
#[ignore = "measurement (about a minute); run alone with --ignored --nocapture"]
fn measure_batch_em_on_a_million_rows_in_memory() {
    let (stream, held_out) = measured_mixture(8);
    let mut rows = SyntheticStream::from_truth(stream.truth().clone(), 1_000_000, 1002).unwrap();
    let x = collect_rows(&mut rows, 100_000).unwrap();
    eprintln!(
        "batch: data drawn, VmHWM {:.1} MiB",
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    let start = std::time::Instant::now();
    let fit = (GmmParams::new(8).seed(3).check().unwrap())
        .fit(&Dataset::new(x, "subsample"), &compute())
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "batch: {seconds:.1} s, {} iterations, VmHWM {:.1} MiB",
        fit.n_iter,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    let ll = fit.score(&held_out(), &compute()).unwrap();
    eprintln!("batch: held-out log-likelihood {ll:.6}");
}

//! `emvae bench exact`: fit times of pPCA and factor analysis, and seconds per Baum-Welch iteration of
//! HMMs, on data drawn from known models at the sizes the peer scripts time scikit-learn and hmmlearn
//! at (`benches/peers/sklearn_linear_bench.py`, `benches/peers/hmmlearn_bench.py`).

use std::time::Instant;

use emvae_core::data::Dataset;
use emvae_core::rng::rng_for;
use emvae_em::driver::{Acceleration, EmCheckpoint, EmObserver, IterationRecord};
use emvae_em::hmm::{ArrayInit, CovarianceType, Emission, Hmm, HmmJson, HmmParams};
use emvae_em::linear::{LinearGaussian, LinearGaussianJson, LinearGaussianParams, Noise};
use rand::Rng as _;
use rand_distr::{Distribution, StandardNormal};
use serde_json::json;

use crate::args::BenchExactArgs;
use crate::error::{CliError, CliResult};

/// Keeps every iteration's seconds.
struct Seconds(Vec<f64>);

impl<S> EmObserver<S> for Seconds {
    fn on_iteration(
        &mut self,
        record: &IterationRecord,
        _: &EmCheckpoint<S>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.push(record.seconds);
        Ok(())
    }
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::runtime(format!("benchmark fit failed: {e}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn exact(args: &BenchExactArgs) -> CliResult<()> {
    exact_lines(args, &mut |line| println!("{line}"))
}

pub fn exact_lines(
    args: &BenchExactArgs,
    emit: &mut dyn FnMut(serde_json::Value),
) -> CliResult<()> {
    linear(args, emit)?;
    hmm(args, emit)
}

/// Factor-model data as the peer script draws it: `W` standard normal, noise variances uniform in
/// [0.2, 2], `mu` = 0.
fn factor_data(n: usize, d: usize, q: usize) -> CliResult<Dataset> {
    let mut rng = rng_for(7, b"bench-linear", 0);
    let loadings: Vec<Vec<f64>> = (0..d)
        .map(|_| (0..q).map(|_| StandardNormal.sample(&mut rng)).collect())
        .collect();
    let noise: Vec<f64> = (0..d).map(|_| rng.random_range(0.2..2.0)).collect();
    let model = json!({
        "format": emvae_em::linear::MODEL_FORMAT,
        "parameters": {"noise": "diagonal", "n_features": d, "n_components": q,
                       "loadings": loadings, "mean": vec![0.0; d], "noise_variance": noise},
        "converged": true, "n_iter": 0, "lower_bound": 0.0, "lower_bounds": [], "best_restart": 0,
        "e_steps": 0,
    });
    let model: LinearGaussianJson = serde_json::from_value(model).map_err(failed)?;
    let model = LinearGaussian::try_from(model).map_err(failed)?;
    Ok(Dataset::new(model.sample(n, 1).0, "factor-model draws"))
}

/// Fit time (the best of `repeats`) of pPCA, FA and FA with SQUAREM, to `tol = 1e-8`, through
/// `fit_with` as `emvae train` runs it (the data's statistics and fingerprint included).
fn linear(args: &BenchExactArgs, emit: &mut dyn FnMut(serde_json::Value)) -> CliResult<()> {
    let (n, d, q) = (args.linear_n, args.linear_d, args.linear_q);
    if q == 0 || q >= d || n <= q + 2 {
        return Err(CliError::user(
            "bench exact needs 1 <= --linear-q < --linear-d < --linear-n",
        ));
    }
    let data = factor_data(n, d, q)?;
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
            .map_err(failed)?;
        let mut best = f64::INFINITY;
        let mut fitted = None;
        for _ in 0..args.repeats.max(1) {
            let start = Instant::now();
            let m = valid.fit_with(&data, &mut (), None).map_err(failed)?;
            best = best.min(start.elapsed().as_secs_f64());
            fitted = Some(m);
        }
        let m = fitted.ok_or_else(|| failed("no repeat ran"))?;
        emit(json!({
            "bench": "linear_fit", "impl": "emvae", "model": name, "n": n, "d": d, "q": q,
            "seconds": best, "n_iter": m.n_iter, "e_steps": m.e_steps,
            "log_likelihood": m.lower_bound,
            "threads": rayon::current_num_threads(),
        }));
    }
    Ok(())
}

/// A random row-stochastic matrix with a heavy diagonal (states persist), `k x k`.
fn transmat(k: usize, rng: &mut emvae_core::rng::Rng) -> Vec<Vec<f64>> {
    (0..k)
        .map(|i| {
            let mut row: Vec<f64> = (0..k)
                .map(|j| rng.random_range(0.1..1.0) + if i == j { k as f64 } else { 0.0 })
                .collect();
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= s);
            row
        })
        .collect()
}

/// Seconds per Baum-Welch iteration (the median of `--iters` after one warm-up) on sequences drawn from
/// a random HMM, from its parameters perturbed (so no initialisation is timed), for Gaussian diag and
/// full and categorical emissions.
fn hmm(args: &BenchExactArgs, emit: &mut dyn FnMut(serde_json::Value)) -> CliResult<()> {
    let (k, d, v) = (args.hmm_states, args.hmm_d, args.hmm_symbols);
    if k == 0 || d == 0 || v == 0 || args.hmm_sequences == 0 || args.hmm_length == 0 {
        return Err(CliError::user("bench exact needs positive HMM sizes"));
    }
    let mut rng = rng_for(7, b"bench-hmm", 0);
    let startprob = vec![1.0 / k as f64; k];
    let a = transmat(k, &mut rng);
    let means: Vec<Vec<f64>> = (0..k)
        .map(|_| {
            (0..d)
                .map(|_| 3.0 * Distribution::<f64>::sample(&StandardNormal, &mut rng))
                .collect()
        })
        .collect();
    let emissionprob: Vec<Vec<f64>> = transmat(v.max(k), &mut rng)
        .into_iter()
        .take(k)
        .map(|row| {
            row[..v]
                .iter()
                .map(|p| p / row[..v].iter().sum::<f64>())
                .collect()
        })
        .collect();
    for (name, emission, cov) in [
        ("gaussian_diag", Emission::Gaussian, CovarianceType::Diag),
        ("gaussian_full", Emission::Gaussian, CovarianceType::Full),
        ("categorical", Emission::Categorical, CovarianceType::Diag),
    ] {
        let mut truth = json!({
            "format": emvae_em::hmm::MODEL_FORMAT, "emission": emission, "n_states": k,
            "startprob": startprob, "transmat": a, "converged": true, "n_iter": 0,
            "lower_bound": 0.0, "lower_bounds": [], "best_restart": 0,
        });
        if emission == Emission::Gaussian {
            truth["covariance_type"] = json!("diag");
            truth["n_features"] = json!(d);
            truth["means"] = json!(means);
            truth["covars"] = json!(vec![vec![1.0; d]; k]);
        } else {
            truth["n_symbols"] = json!(v);
            truth["emissionprob"] = json!(emissionprob);
        }
        let truth: HmmJson = serde_json::from_value(truth).map_err(failed)?;
        let truth = Hmm::try_from(truth).map_err(failed)?;
        let (data, _) = truth
            .sample(args.hmm_sequences, args.hmm_length, 1)
            .map_err(failed)?;
        let mut p = HmmParams::new(k)
            .emission(emission)
            .covariance_type(cov)
            .tol(0.0)
            .max_iter(args.iters + 1)
            .startprob_init(startprob.clone())
            .transmat_init(a.clone());
        if emission == Emission::Gaussian {
            p = p.means_init(
                means
                    .iter()
                    .map(|m| m.iter().map(|x| x + 0.5).collect())
                    .collect(),
            );
            let eye: Vec<Vec<f64>> = (0..d)
                .map(|i| (0..d).map(|j| f64::from(u8::from(i == j)) * 1.5).collect())
                .collect();
            p = p.covars_init(match cov {
                CovarianceType::Full => ArrayInit::Stack(vec![eye; k]),
                _ => ArrayInit::Matrix(vec![vec![1.5; d]; k]),
            });
        } else {
            p = p.emissionprob_init(emissionprob.clone());
        }
        let valid = p.check().map_err(failed)?;
        let mut seconds = Seconds(Vec::new());
        valid.fit_with(&data, &mut seconds, None).map_err(failed)?;
        let timed = seconds.0[1..].to_vec();
        emit(json!({
            "bench": "hmm_iteration", "impl": "emvae", "emission": name,
            "n_sequences": args.hmm_sequences, "length": args.hmm_length, "n_states": k,
            "d": if emission == Emission::Gaussian { d } else { 0 },
            "n_symbols": if emission == Emission::Categorical { v } else { 0 },
            "seconds_per_iteration": median(timed.clone()), "samples": timed,
            "threads": rayon::current_num_threads(),
        }));
    }
    Ok(())
}

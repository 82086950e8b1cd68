//! Properties of exact EM for Gaussian mixtures: the log-likelihood never decreases, known parameters
//! are recovered, a few labels improve recovery on overlapping components, fits are reproducible, every
//! initialisation works and restarts keep the best.

use burn::tensor::Device;
use emvae::core::data::Dataset;
use emvae::core::data::synthetic::SyntheticMixture;
use emvae::core::tensor::{Compute, Precision};
use emvae::em::gmm::{
    CovarianceType, EmObserver, FitWarning, GaussianMixture, GaussianMixtureJson, GmmCheckpoint,
    GmmParams, InitMethod, IterationRecord,
};

fn flex() -> Compute {
    Compute::new(Device::flex(), Precision::F64)
}

#[derive(Default)]
struct Trajectory(Vec<IterationRecord>);

impl EmObserver for Trajectory {
    fn on_iteration(
        &mut self,
        record: &IterationRecord,
        _: &GmmCheckpoint,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.push(record.clone());
        Ok(())
    }
}

fn spec(
    n: usize,
    d: usize,
    k: usize,
    separation: f64,
    label_fraction: f64,
    seed: u64,
) -> SyntheticMixture {
    SyntheticMixture {
        n_samples: n,
        n_features: d,
        n_components: k,
        separation,
        label_fraction,
        seed,
    }
}

/// EM's guarantee: each iteration's average log-likelihood is at least the previous one's. With
/// `reg_covar = 0` the M-step is the exact maximiser, so any decrease beyond rounding is a bug.
/// 48 data sets x 4 covariance types x (unlabelled, partly labelled).
#[test]
fn log_likelihood_never_decreases() {
    let compute = flex();
    let mut checked = 0;
    for case in 0..48u64 {
        let d = 1 + (case % 4) as usize;
        let k = 1 + (case % 5) as usize;
        let n = 40 * k * d + 50 + 13 * case as usize;
        let separation = [0.8, 1.5, 3.0][(case % 3) as usize];
        let label_fraction = if case % 2 == 0 { 0.0 } else { 0.1 };
        let data = spec(n, d, k, separation, label_fraction, 100 + case)
            .generate()
            .data;
        for cov in CovarianceType::ALL {
            // k-means++ and random_from_data start from single points: zero covariances without reg_covar.
            let init = [InitMethod::KMeans, InitMethod::Random][(case % 2) as usize];
            let params = GmmParams::new(k)
                .covariance_type(cov)
                .reg_covar(0.0)
                .tol(0.0)
                .max_iter(60)
                .init_params(init)
                .seed(case);
            let mut t = Trajectory::default();
            params
                .check()
                .unwrap()
                .fit_with(&data, &compute, &mut t, None)
                .unwrap_or_else(|e| panic!("case {case} {cov}: {e}"));
            for w in t.0.windows(2) {
                let (a, b) = (w[0].log_likelihood, w[1].log_likelihood);
                assert!(
                    b >= a - 1e-10 * (1.0 + a.abs()),
                    "case {case} (n {n}, d {d}, k {k}, labels {label_fraction}) {cov}: log-likelihood fell from \
                     {a} to {b} at iteration {}",
                    w[1].iteration
                );
            }
            checked += t.0.len();
        }
    }
    assert!(checked > 5000, "{checked} iterations checked");
}

/// Distance between fitted and true means, components matched by the best permutation.
fn mean_error(model: &GaussianMixture, truth_means: &[f64], d: usize) -> f64 {
    let k = model.n_components();
    let dist = |a: usize, b: usize| -> f64 {
        let (m, t) = (model.parameters.mean(a), &truth_means[b * d..(b + 1) * d]);
        m.iter()
            .zip(t)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    fn permutations(k: usize) -> Vec<Vec<usize>> {
        if k == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for p in permutations(k - 1) {
            for i in 0..=p.len() {
                let mut q = p.clone();
                q.insert(i, k - 1);
                out.push(q);
            }
        }
        out
    }
    permutations(k)
        .into_iter()
        .map(|p| p.iter().enumerate().map(|(a, &b)| dist(a, b)).sum::<f64>() / k as f64)
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn known_parameters_are_recovered() {
    let compute = flex();
    let generated = spec(30_000, 3, 3, 5.0, 0.0, 11).generate();
    let model = GmmParams::new(3)
        .tol(1e-8)
        .seed(0)
        .check()
        .unwrap()
        .fit(&generated.data, &compute)
        .unwrap();
    assert!(model.converged);
    assert!(mean_error(&model, &generated.truth.means, 3) < 0.03);
    // Match components by nearest mean, then compare weights and covariances.
    for j in 0..3 {
        let m = model.parameters.mean(j);
        let t = (0..3)
            .min_by(|&a, &b| {
                let da: f64 = (0..3)
                    .map(|i| (m[i] - generated.truth.means[a * 3 + i]).powi(2))
                    .sum();
                let db: f64 = (0..3)
                    .map(|i| (m[i] - generated.truth.means[b * 3 + i]).powi(2))
                    .sum();
                da.total_cmp(&db)
            })
            .unwrap();
        assert!((model.parameters.weights[j] - generated.truth.weights[t]).abs() < 0.01);
        let cov = model.parameters.covariance_matrix(j);
        let truth = &generated.truth.covariances[t * 9..(t + 1) * 9];
        let err: f64 = cov
            .iter()
            .zip(truth)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = truth.iter().map(|b| b * b).sum::<f64>().sqrt();
        assert!(
            err / norm < 0.05,
            "component {j}: relative covariance error {}",
            err / norm
        );
    }
}

/// On overlapping components, labelling a few percent of rows (their responsibilities clamped in every
/// E-step) recovers the true means measurably better than unsupervised EM.
#[test]
fn a_few_labels_improve_recovery_of_overlapping_components() {
    let compute = flex();
    let (mut unsupervised, mut semi) = (0.0, 0.0);
    let seeds = 12;
    for seed in 0..seeds {
        let generated = spec(3_000, 2, 3, 0.9, 0.04, 500 + seed).generate();
        let labelled = generated.data.clone();
        let mut unlabelled = generated.data.clone();
        unlabelled.labels = None;
        let params = GmmParams::new(3)
            .tol(1e-6)
            .max_iter(500)
            .seed(seed)
            .check()
            .unwrap();
        let u = params.fit(&unlabelled, &compute).unwrap();
        let s = params.fit(&labelled, &compute).unwrap();
        unsupervised += mean_error(&u, &generated.truth.means, 2) / seeds as f64;
        semi += mean_error(&s, &generated.truth.means, 2) / seeds as f64;
    }
    println!("mean error of the means: unsupervised {unsupervised:.4}, with 4% labels {semi:.4}");
    assert!(
        semi < 0.75 * unsupervised,
        "mean error with 4% labels {semi:.4} is not clearly below unsupervised {unsupervised:.4}"
    );
}

#[test]
fn same_seed_same_bits_other_seed_other_fit() {
    let compute = flex();
    let data = spec(2_000, 3, 4, 1.2, 0.0, 3).generate().data;
    let fit = |seed| {
        GmmParams::new(4)
            .init_params(InitMethod::Random)
            .seed(seed)
            .check()
            .unwrap()
            .fit(&data, &compute)
            .unwrap()
    };
    assert_eq!(fit(7), fit(7));
    assert_ne!(fit(7).lower_bounds, fit(8).lower_bounds);
}

#[test]
fn every_initialisation_works_and_restarts_keep_the_best() {
    let compute = flex();
    let generated = spec(4_000, 2, 4, 8.0, 0.0, 21).generate();
    for init in [
        InitMethod::KMeans,
        InitMethod::KMeansPlusPlus,
        InitMethod::Random,
        InitMethod::RandomFromData,
    ] {
        let mut t = Trajectory::default();
        let model = GmmParams::new(4)
            .init_params(init)
            .n_init(4)
            .max_iter(300)
            .seed(1)
            .check()
            .unwrap()
            .fit_with(&generated.data, &compute, &mut t, None)
            .unwrap();
        let finals: Vec<f64> = (0..4)
            .map(|r| {
                t.0.iter()
                    .rev()
                    .find(|x| x.restart == r)
                    .map(|x| x.log_likelihood)
                    .unwrap()
            })
            .collect();
        let best = finals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(
            model.lower_bound, best,
            "{init:?}: kept {} of {finals:?}",
            model.lower_bound
        );
        assert_eq!(finals[model.best_restart], best);
        let err = mean_error(&model, &generated.truth.means, 2);
        assert!(
            err < 0.15,
            "{init:?}: mean error {err}, weights {:?} truth {:?}",
            model.parameters.weights,
            generated.truth.weights
        );
    }
}

#[test]
fn f32_follows_f64() {
    let data = spec(3_000, 3, 3, 3.0, 0.0, 5).generate().data;
    let params = GmmParams::new(3).tol(0.0).max_iter(20).check().unwrap();
    let a = params.fit(&data, &flex()).unwrap();
    let b = params
        .fit(&data, &Compute::new(Device::flex(), Precision::F32))
        .unwrap();
    for (x, y) in a.lower_bounds.iter().zip(&b.lower_bounds) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
}

#[test]
fn samples_follow_the_model_and_predictions_the_labels() {
    let compute = flex();
    let generated = spec(5_000, 2, 3, 6.0, 0.0, 8).generate();
    let model = GmmParams::new(3)
        .seed(2)
        .check()
        .unwrap()
        .fit(&generated.data, &compute)
        .unwrap();
    let (x, comps) = model.sample(60_000, 3).unwrap();
    for j in 0..3 {
        let share = comps.iter().filter(|&&c| c == j).count() as f64 / 60_000.0;
        assert!((share - model.parameters.weights[j]).abs() < 0.01);
    }
    // The samples' own components are what the model predicts for them, nearly always.
    let predicted = model.predict(&x, &compute).unwrap();
    let agree = predicted.iter().zip(&comps).filter(|(a, b)| a == b).count() as f64 / 60_000.0;
    assert!(agree > 0.99, "{agree}");
    let data = Dataset::new(x, "samples");
    assert!(
        (model.score(&data.x, &compute).unwrap()
            - model.score(&generated.data.x, &compute).unwrap())
        .abs()
            < 0.05
    );
}

#[test]
fn a_collapsed_component_is_an_error_naming_it_not_nan() {
    let compute = flex();
    // Two rows repeated: with reg_covar = 0 a component sits on identical points.
    let rows: Vec<Vec<f64>> = (0..40)
        .map(|i| {
            if i % 2 == 0 {
                vec![1.0, 2.0]
            } else {
                vec![3.0, -1.0]
            }
        })
        .collect();
    let data = Dataset::new(emvae::core::data::Matrix::from_rows(&rows), "dup");
    for cov in CovarianceType::ALL {
        let err = GmmParams::new(2)
            .covariance_type(cov)
            .reg_covar(0.0)
            .check()
            .unwrap()
            .fit(&data, &compute)
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("reg_covar") && message.contains("not positive definite"),
            "{cov}: {message}"
        );
        // The default regularisation makes the same fit work.
        let ok = GmmParams::new(2)
            .covariance_type(cov)
            .check()
            .unwrap()
            .fit(&data, &compute)
            .unwrap();
        assert!(ok.lower_bound.is_finite());
    }
}

/// Every fitted model reads back from its own model file: validating model files (weights summing to 1,
/// symmetric positive definite covariances agreeing with the precisions' Cholesky factors) rejects no
/// real fit, in f32 as in f64, also where the M-step recomputes scatters exactly (data far from 0).
#[test]
fn fitted_models_pass_model_file_validation() {
    let mut data = spec(2_000, 3, 3, 2.0, 0.0, 9).generate().data;
    for (i, v) in data.x.values.iter_mut().enumerate() {
        *v = *v * 10f64.powi((i % 3) as i32 - 1) + 1e3;
    }
    for precision in [Precision::F64, Precision::F32] {
        let compute = Compute::new(Device::flex(), precision);
        for cov in CovarianceType::ALL {
            let model = GmmParams::new(3)
                .covariance_type(cov)
                .max_iter(30)
                .check()
                .unwrap()
                .fit(&data, &compute)
                .unwrap();
            let text = serde_json::to_string(&GaussianMixtureJson::from(&model)).unwrap();
            let json: GaussianMixtureJson = serde_json::from_str(&text).unwrap();
            let back = GaussianMixture::try_from(json)
                .unwrap_or_else(|e| panic!("{precision} {cov}: {e}"));
            assert_eq!(back, model, "{precision} {cov}");
            assert!(model.warnings(&data.x).is_empty(), "{precision} {cov}");
        }
    }
}

/// 50 identical rows and 3 components: the fit succeeds with two empty components (scikit-learn's too),
/// and says so.
#[test]
fn identical_rows_warn_of_empty_components() {
    let data = Dataset::new(
        emvae::core::data::Matrix::from_rows(&vec![vec![1.0, 2.0]; 50]),
        "same",
    );
    let model = GmmParams::new(3)
        .check()
        .unwrap()
        .fit(&data, &flex())
        .unwrap();
    let warnings = model.warnings(&data.x);
    assert!(
        warnings.contains(&FitWarning::FewDistinctRows {
            distinct: 1,
            n_components: 3
        }),
        "{warnings:?}"
    );
    let empty = warnings
        .iter()
        .find_map(|w| match w {
            FitWarning::EmptyComponents(e) => Some(e.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{warnings:?}"));
    assert_eq!(empty.len(), 2, "{warnings:?}");
    assert!(
        empty
            .iter()
            .all(|(j, w)| model.parameters.weights[*j] == *w && *w < 1e-10)
    );
    // Two distinct rows are still fewer than three components.
    let mut rows = vec![vec![1.0, 2.0]; 49];
    rows.push(vec![1.0, 2.5]);
    let x = emvae::core::data::Matrix::from_rows(&rows);
    assert!(model.warnings(&x).contains(&FitWarning::FewDistinctRows {
        distinct: 2,
        n_components: 3
    }));
}

//! Parity with scikit-learn's `GaussianMixture`: from the same explicit initial parameters, EM follows
//! the same per-iteration log-likelihood trajectory (to 1e-8) and ends at the same weights, means,
//! covariances, BIC and AIC (to 1e-6), for every covariance type, on both CPU backends in f64.
//!
//! Fixtures: `tests/fixtures/gmm_sklearn_golden.json` (the project's reference, scikit-learn 1.9.1) and
//! `tests/fixtures/gmm_sklearn_extra.json` (more shapes, d = 1 and k = 1 included, convergence with
//! `tol > 0`, and unstandardised features on scales 1e-2 to 1e3 offset by 1e3), written by `benches/peers/sklearn_gmm_fixtures.py`.

use burn::tensor::Device;
use emvae::core::data::{Dataset, Matrix};
use emvae::core::tensor::{Compute, Precision};
use emvae::em::gmm::{ArrayInit, CovarianceType, GmmParams};
use serde_json::Value;

fn f64s(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(f64s).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number array: {other}"),
    }
}

fn array_init(v: &Value) -> ArrayInit {
    serde_json::from_value(v.clone()).unwrap()
}

fn assert_close(what: &str, ours: &[f64], theirs: &[f64], tol: f64) {
    assert_close_scaled(what, ours, theirs, tol, false);
}

/// With `relative`, the tolerance scales with values above 1 in magnitude (parameters of unstandardised
/// data reach 1e6).
fn assert_close_scaled(what: &str, ours: &[f64], theirs: &[f64], tol: f64, relative: bool) {
    assert_eq!(ours.len(), theirs.len(), "{what}: length");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let tol = if relative {
            tol * b.abs().max(1.0)
        } else {
            tol
        };
        assert!(
            (a - b).abs() <= tol,
            "{what}[{i}]: ours {a} vs reference {b} (|diff| {:e} > {tol:e})",
            (a - b).abs()
        );
    }
}

struct Case<'a> {
    name: String,
    x: Matrix,
    weights_init: &'a Value,
    means_init: &'a Value,
    max_iter: usize,
    tol: f64,
    runs: &'a Value,
}

fn check_case(case: &Case, compute: &Compute) {
    let data = Dataset::new(case.x.clone(), case.name.clone());
    let n = case.x.n_rows;
    for cov in CovarianceType::ALL {
        let run = &case.runs[cov.name()];
        let what = format!("{} / {cov} / {:?}", case.name, compute.device);
        let params = GmmParams::new(case.runs[cov.name()]["weights"].as_array().unwrap().len())
            .covariance_type(cov)
            .max_iter(case.max_iter)
            .tol(case.tol)
            .reg_covar(1e-6)
            .weights_init(serde_json::from_value(case.weights_init.clone()).unwrap())
            .means_init(serde_json::from_value(case.means_init.clone()).unwrap())
            .precisions_init(array_init(&run["precisions_init"]));
        let model = params.check().unwrap().fit(&data, compute).unwrap();
        if let Some(reference) = run.get("extended_precision") {
            // Unstandardised data: scikit-learn's uncentred diag and tied formulas lose up to seven digits
            // here, so the reference is the same EM in long double with centred second moments.
            let p = &model.parameters;
            let lb = f64s(&reference["lower_bounds"]);
            assert_close(
                &format!("{what}: lower_bounds (long double)"),
                &model.lower_bounds,
                &lb,
                1e-8,
            );
            assert_close(
                &format!("{what}: weights (long double)"),
                &p.weights,
                &f64s(&reference["weights"]),
                1e-6,
            );
            let means = f64s(&reference["means"]);
            assert_close_scaled(
                &format!("{what}: means (long double)"),
                &p.means,
                &means,
                1e-6,
                true,
            );
            let covs = f64s(&reference["covariances"]);
            assert_close_scaled(
                &format!("{what}: covariances (long double)"),
                &p.covariances,
                &covs,
                1e-6,
                true,
            );
            continue;
        }
        assert_close(
            &format!("{what}: lower_bounds"),
            &model.lower_bounds,
            &f64s(&run["lower_bounds"]),
            1e-8,
        );
        if let Some(n_iter) = run.get("n_iter_") {
            assert_eq!(
                model.n_iter as u64,
                n_iter.as_u64().unwrap(),
                "{what}: n_iter"
            );
            assert_eq!(
                model.converged,
                run["converged_"].as_bool().unwrap(),
                "{what}: converged"
            );
        }
        let p = &model.parameters;
        assert_close(
            &format!("{what}: weights"),
            &p.weights,
            &f64s(&run["weights"]),
            1e-6,
        );
        assert_close(
            &format!("{what}: means"),
            &p.means,
            &f64s(&run["means"]),
            1e-6,
        );
        assert_close(
            &format!("{what}: covariances"),
            &p.covariances,
            &f64s(&run["covariances"]),
            1e-6,
        );
        assert_eq!(
            p.n_parameters() as u64,
            run["n_parameters"].as_u64().unwrap(),
            "{what}: n_parameters"
        );
        let score = model.score(&case.x, compute).unwrap();
        assert!(
            (score - run["score_after_fit"].as_f64().unwrap()).abs() < 1e-8,
            "{what}: score"
        );
        let bic = model.bic(&case.x, compute).unwrap();
        let aic = model.aic(&case.x, compute).unwrap();
        assert!(
            (bic - run["bic"].as_f64().unwrap()).abs() < 1e-6,
            "{what}: bic {bic}"
        );
        assert!(
            (aic - run["aic"].as_f64().unwrap()).abs() < 1e-6,
            "{what}: aic {aic}"
        );
        let first5 = case.x.slice_rows(0, 5.min(n));
        assert_close(
            &format!("{what}: score_samples"),
            &model.score_samples(&first5, compute).unwrap(),
            &f64s(&run["first5_score_samples"]),
            1e-8,
        );
        assert_close(
            &format!("{what}: predict_proba"),
            &model.predict_proba(&first5, compute).unwrap().values,
            &f64s(&run["first5_predict_proba"]),
            1e-8,
        );
    }
}

fn matrix(v: &Value) -> Matrix {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
    Matrix::from_rows(&rows)
}

fn devices() -> Vec<Compute> {
    #[allow(deprecated)]
    let ndarray = Device::ndarray();
    vec![
        Compute::new(Device::flex(), Precision::F64),
        Compute::new(ndarray, Precision::F64),
    ]
}

#[test]
fn golden_trajectories_match_scikit_learn() {
    let golden: Value =
        serde_json::from_str(include_str!("fixtures/gmm_sklearn_golden.json")).unwrap();
    let case = Case {
        name: "golden".into(),
        x: matrix(&golden["X"]),
        weights_init: &golden["weights_init"],
        means_init: &golden["means_init"],
        max_iter: 30,
        tol: 0.0,
        runs: &golden["runs"],
    };
    for compute in devices() {
        check_case(&case, &compute);
    }
}

#[test]
fn other_shapes_and_convergence_match_scikit_learn() {
    let extra: Value =
        serde_json::from_str(include_str!("fixtures/gmm_sklearn_extra.json")).unwrap();
    for c in extra["cases"].as_array().unwrap() {
        let case = Case {
            name: c["name"].as_str().unwrap().to_string(),
            x: matrix(&c["X"]),
            weights_init: &c["weights_init"],
            means_init: &c["means_init"],
            max_iter: c["max_iter"].as_u64().unwrap() as usize,
            tol: c["tol"].as_f64().unwrap(),
            runs: &c["runs"],
        };
        for compute in devices() {
            check_case(&case, &compute);
        }
    }
}

//! The host kernels against the tensor path they replace, on the same workspace and parameters.

use burn::tensor::Device;
use emvae_core::data::Dataset;
use emvae_core::data::synthetic::SyntheticMixture;
use emvae_core::tensor::{Compute, Precision};

use crate::gmm::workspace::Workspace;
use crate::gmm::{CovarianceType, GmmParameters, GmmParams};

fn compute() -> Compute {
    Compute::new(Device::flex(), Precision::F64).in_host_memory()
}

/// 3,000 rows (several tiles and leaves, a short last tile) of 3 features, a third labelled; with
/// `far`, the components' means thousands of their spreads apart, so that they sit far from the data
/// mean and both the E-step and the M-step compute some of them exactly.
fn data(far: bool) -> Dataset {
    SyntheticMixture {
        n_samples: 3_000,
        n_features: 3,
        n_components: 4,
        separation: if far { 3e3 } else { 3.0 },
        label_fraction: 0.3,
        seed: 5,
    }
    .generate()
    .data
}

fn fitted(data: &Dataset, cov: CovarianceType) -> GmmParameters {
    let valid = GmmParams::new(4)
        .covariance_type(cov)
        .max_iter(3)
        .check()
        .unwrap();
    valid.fit(data, &compute()).unwrap().parameters
}

fn assert_close(what: &str, host: &[f64], tensors: &[f64], tol: f64) {
    assert_eq!(host.len(), tensors.len(), "{what}: lengths");
    for (i, (a, b)) in host.iter().zip(tensors).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}[{i}]: host {a} vs tensors {b}"
        );
    }
}

#[test]
fn the_host_kernels_compute_what_the_tensor_path_does() {
    for far in [false, true] {
        let data = data(far);
        let labels = data.labels.as_deref();
        for cov in CovarianceType::ALL {
            let what = format!("far = {far}, {cov}");
            let p = fitted(&data, cov);
            let host = Workspace::new(&data.x, labels, 4, cov, &compute());
            assert!(
                host.host.is_some(),
                "{what}: f64 on flex is served by the host kernels"
            );
            let tensors = Workspace::new(&data.x, labels, 4, cov, &compute()).on_tensors(labels);
            if far && cov != CovarianceType::Spherical {
                assert!(
                    !host.e_step_weights(&p).exact.is_empty(),
                    "{what}: no exact component"
                );
            }
            let (ll_h, post_h) = host.e_step(&p);
            let (ll_t, post_t) = tensors.e_step(&p);
            assert_close(&format!("{what}: log-likelihood"), &[ll_h], &[ll_t], 1e-12);
            assert_close(
                &format!("{what}: moments"),
                &post_h.moments,
                &post_t.moments,
                1e-10,
            );
            let (est_h, est_t) = (
                host.estimate_from_posterior(&post_h, 1e-6),
                tensors.estimate_from_posterior(&post_t, 1e-6),
            );
            assert_close(&format!("{what}: N"), &est_h.nk, &est_t.nk, 1e-10);
            assert_close(&format!("{what}: means"), &est_h.means, &est_t.means, 1e-10);
            assert_close(
                &format!("{what}: covariances"),
                &est_h.covariances,
                &est_t.covariances,
                1e-8,
            );
            assert_close(
                &format!("{what}: score_samples"),
                &host.score_samples(&p),
                &tensors.score_samples(&p),
                1e-12,
            );
            assert_close(
                &format!("{what}: predict_proba"),
                &host.predict_proba(&p),
                &tensors.predict_proba(&p),
                1e-12,
            );
        }
    }
}

/// Initialisation hands the M-step responsibilities per chunk; the host path takes them to the host.
#[test]
fn given_responsibilities_give_the_tensor_paths_estimate() {
    let data = data(true);
    let labels = data.labels.as_deref();
    for cov in CovarianceType::ALL {
        let p = fitted(&data, cov);
        let host = Workspace::new(&data.x, labels, 4, cov, &compute());
        let tensors = Workspace::new(&data.x, labels, 4, cov, &compute()).on_tensors(labels);
        let resp = host.predict_proba(&p);
        let chunks: Vec<_> = tensors
            .x
            .iter()
            .scan(0, |start, x| {
                let rows = x.dims()[0];
                let t = compute().tensor(resp[*start * 4..(*start + rows) * 4].to_vec(), [rows, 4]);
                *start += rows;
                Some(t)
            })
            .collect();
        let (est_h, est_t) = (
            host.estimate_gaussian_parameters(&chunks, 1e-6),
            tensors.estimate_gaussian_parameters(&chunks, 1e-6),
        );
        assert_close(&format!("{cov}: N"), &est_h.nk, &est_t.nk, 1e-10);
        assert_close(&format!("{cov}: means"), &est_h.means, &est_t.means, 1e-10);
        assert_close(
            &format!("{cov}: covariances"),
            &est_h.covariances,
            &est_t.covariances,
            1e-8,
        );
    }
}

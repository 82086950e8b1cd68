//! Online EM against batch EM and the truth.

use burn::tensor::Device;
use emvae_core::data::stream::{MatrixStream, RowStream, SyntheticStream, collect_rows};
use emvae_core::data::synthetic::{MixtureTruth, SyntheticMixture};
use emvae_core::data::{Dataset, Matrix};
use emvae_core::tensor::{Compute, Precision};

use super::*;
use crate::EmError;
use crate::gmm::{
    ArrayInit, CovarianceType, GaussianMixture, GmmParameters, GmmParams,
    precisions_cholesky_from_covariances,
};

fn compute() -> Compute {
    Compute::new(Device::flex(), Precision::F64).in_host_memory()
}

/// Keeps every record.
#[derive(Default)]
struct Keep {
    batches: Vec<BatchRecord>,
    epochs: Vec<EpochRecord>,
}

impl OnlineObserver for Keep {
    fn on_batch(
        &mut self,
        r: &BatchRecord,
        _: &GmmParameters,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.batches.push(r.clone());
        Ok(())
    }
    fn on_epoch(
        &mut self,
        r: &EpochRecord,
        _: &GmmParameters,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.epochs.push(r.clone());
        Ok(())
    }
}

/// The mixture that generated the data, as a fitted model (to score with).
fn truth_model(t: &MixtureTruth) -> GaussianMixture {
    let (k, d) = (t.weights.len(), t.means.len() / t.weights.len());
    let cov = CovarianceType::Full;
    GaussianMixture {
        parameters: GmmParameters {
            covariance_type: cov,
            n_components: k,
            n_features: d,
            weights: t.weights.clone(),
            means: t.means.clone(),
            covariances: t.covariances.clone(),
            precisions_cholesky: precisions_cholesky_from_covariances(
                cov,
                d,
                &t.covariances,
                0.0,
                None,
            )
            .unwrap(),
        },
        converged: true,
        n_iter: 0,
        lower_bound: f64::NAN,
        lower_bounds: Vec::new(),
        best_restart: 0,
    }
}

/// The largest errors of the weights, means and covariance entries, each fitted component matched to
/// the true component nearest its mean (the labels of a fit are arbitrary). Panics unless the
/// matching is one-to-one.
fn parameter_errors(fit: &GmmParameters, truth: &MixtureTruth) -> [f64; 3] {
    let (k, d) = (fit.n_components, fit.n_features);
    let mut matched = vec![false; k];
    let mut worst = [0.0f64; 3];
    for i in 0..k {
        let dist = |j: usize| -> f64 {
            (0..d)
                .map(|a| (fit.mean(i)[a] - truth.means[j * d + a]).powi(2))
                .sum()
        };
        let j = (0..k).min_by(|&a, &b| dist(a).total_cmp(&dist(b))).unwrap();
        assert!(
            !matched[j],
            "two fitted components match true component {j}"
        );
        matched[j] = true;
        let true_cov = &truth.covariances[j * d * d..(j + 1) * d * d];
        let cov_err = fit
            .covariance_matrix(i)
            .iter()
            .zip(true_cov)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        worst[0] = worst[0].max((fit.weights[i] - truth.weights[j]).abs());
        worst[1] = worst[1].max(dist(j).sqrt());
        worst[2] = worst[2].max(cov_err);
    }
    worst
}

#[test]
fn a_million_streamed_rows_fit_as_well_as_batch_em_on_a_subsample() {
    let spec = SyntheticMixture {
        n_samples: 1_000_000,
        n_features: 8,
        n_components: 8,
        separation: 4.0,
        label_fraction: 0.0,
        seed: 11,
    };
    let mut stream = SyntheticStream::new(&spec).unwrap();
    let truth = stream.truth().clone();
    let sample = |n: usize, seed: u64| {
        let mut s = SyntheticStream::from_truth(truth.clone(), n, seed).unwrap();
        collect_rows(&mut s, n).unwrap()
    };
    let (held_out, subsample) = (sample(100_000, 1001), sample(100_000, 1002));
    let params = GmmParams::new(8).seed(3);
    let mut keep = Keep::default();
    let online = (params.clone().online(OnlineParams::default()))
        .check()
        .unwrap()
        .fit_online(&mut stream, &compute(), &mut keep)
        .unwrap();
    let batch = (params.check().unwrap())
        .fit(&Dataset::new(subsample, "subsample"), &compute())
        .unwrap();
    let score = |m: &GaussianMixture| m.score(&held_out, &compute()).unwrap();
    let (ll_online, ll_batch, ll_truth) = (
        score(&online.mixture),
        score(&batch),
        score(&truth_model(&truth)),
    );
    assert!(
        (ll_online - ll_batch).abs() < 0.01,
        "held-out log-likelihood: online {ll_online}, batch {ll_batch}, truth {ll_truth}"
    );
    assert!(
        (ll_online - ll_truth).abs() < 0.01,
        "{ll_online} vs truth {ll_truth}"
    );
    let [w, mu, cov] = parameter_errors(&online.mixture.parameters, &truth);
    assert!(
        w < 0.005 && mu < 0.05 && cov < 0.05,
        "errors: weights {w}, means {mu}, covariances {cov}"
    );
    // The trajectory: 100 batches, the parameters fixed through the burn-in and updated after it, and
    // the last batches scored (before their update) near the truth.
    assert_eq!((online.batches, online.rows_seen), (100, 1_000_000));
    assert_eq!(keep.batches.len(), 100);
    assert!(keep.batches[..9].iter().all(|b| !b.updated));
    assert!(keep.batches[9..].iter().all(|b| b.updated));
    assert_eq!(keep.batches[99].rows_seen, 1_000_000);
    let late: f64 = keep.batches[90..]
        .iter()
        .map(|b| b.log_likelihood)
        .sum::<f64>()
        / 10.0;
    assert!((late - ll_truth).abs() < 0.02, "{late} vs {ll_truth}");
    assert_eq!(keep.epochs.len(), 1);
    assert_eq!(
        online.mixture.lower_bounds,
        vec![keep.epochs[0].log_likelihood]
    );
}

/// Explicit initial parameters for `k = 3` components in `d = 3` dimensions, shaped for `cov`.
fn explicit_init(params: GmmParams, cov: CovarianceType) -> GmmParams {
    let (k, d) = (3, 3);
    let eye: Vec<Vec<f64>> = (0..d)
        .map(|a| (0..d).map(|b| if a == b { 0.5 } else { 0.0 }).collect())
        .collect();
    let precisions = match cov {
        CovarianceType::Full => ArrayInit::Stack(vec![eye.clone(); k]),
        CovarianceType::Tied => ArrayInit::Matrix(eye),
        CovarianceType::Diag => ArrayInit::Matrix(vec![vec![0.5; d]; k]),
        CovarianceType::Spherical => ArrayInit::Vector(vec![0.5; k]),
    };
    params
        .covariance_type(cov)
        .weights_init(vec![0.2, 0.3, 0.5])
        .means_init(vec![
            vec![-3.0, 0.0, 1.0],
            vec![0.0, 2.0, -1.0],
            vec![3.0, -2.0, 0.0],
        ])
        .precisions_init(precisions)
}

fn relative_gap(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
        .fold(0.0, f64::max)
}

/// With every batch in the burn-in, the statistics are the plain average per row of the whole data
/// under the initial parameters, and the one M-step at the end is one batch EM iteration.
#[test]
fn burning_in_on_the_whole_stream_is_one_batch_em_iteration() {
    let data = SyntheticMixture {
        n_samples: 20_000,
        n_features: 3,
        n_components: 3,
        separation: 3.0,
        label_fraction: 0.0,
        seed: 4,
    }
    .generate()
    .data;
    for cov in CovarianceType::ALL {
        let base = explicit_init(GmmParams::new(3), cov);
        let batch = (base.clone().max_iter(1).check().unwrap())
            .fit(&data, &compute())
            .unwrap()
            .parameters;
        // Batches of 2,000 (10, all burn-in) and of 3,000 (7, the last of 2,000 rows): the average
        // is per row, whatever the batch sizes.
        for (batch_size, burn_in) in [(2_000, 10), (3_000, 7), (3_000, 1_000)] {
            let online = OnlineParams {
                batch_size,
                burn_in,
                ..OnlineParams::default()
            };
            let mut stream = MatrixStream::new(data.x.clone(), "data");
            let fit = (base.clone().online(online).check().unwrap())
                .fit_online(&mut stream, &compute(), &mut ())
                .unwrap();
            let p = &fit.mixture.parameters;
            let gap = [
                relative_gap(&p.weights, &batch.weights),
                relative_gap(&p.means, &batch.means),
                relative_gap(&p.covariances, &batch.covariances),
                relative_gap(&p.precisions_cholesky, &batch.precisions_cholesky),
            ];
            assert!(
                gap.iter().all(|g| *g < 1e-10),
                "{cov}, batches of {batch_size}: gaps {gap:?}"
            );
        }
    }
}

#[test]
fn bad_settings_are_errors_naming_the_key() {
    let with = |o: OnlineParams| GmmParams::new(2).online(o).check().unwrap_err().key;
    for alpha in [0.4, 0.5, 1.5, f64::NAN] {
        let o = OnlineParams {
            step_exponent: alpha,
            ..OnlineParams::default()
        };
        assert_eq!(o.check().unwrap_err().key, "step_exponent", "{alpha}");
        assert_eq!(with(o), "online.step_exponent");
    }
    let cases = [
        (
            OnlineParams {
                batch_size: 0,
                ..Default::default()
            },
            "online.batch_size",
        ),
        (
            OnlineParams {
                batch_size: 1,
                ..Default::default()
            },
            "online.batch_size",
        ),
        (
            OnlineParams {
                epochs: 0,
                ..Default::default()
            },
            "online.epochs",
        ),
        (
            OnlineParams {
                step_offset: -1.0,
                ..Default::default()
            },
            "online.step_offset",
        ),
        (
            OnlineParams {
                max_batches: Some(0),
                ..Default::default()
            },
            "online.max_batches",
        ),
    ];
    for (o, key) in cases {
        assert_eq!(with(o), key);
    }
    assert!(OnlineParams::default().check().is_ok());
    // The `[gmm.online]` table: defaults filled in, unknown keys refused, checked with the rest.
    let p: GmmParams = toml::from_str("n_components = 2\n[online]\nburn_in = 3\n").unwrap();
    let o = p.online.clone().unwrap();
    assert_eq!((o.burn_in, o.batch_size, o.step_exponent), (3, 10_000, 0.6));
    assert!(toml::from_str::<GmmParams>("n_components = 2\n[online]\nstep = 1\n").is_err());
    let p: GmmParams = toml::from_str("n_components = 2\n[online]\nstep_exponent = 1.5\n").unwrap();
    assert_eq!(p.check().unwrap_err().key, "online.step_exponent");
    // Without the table, the serialised form (batch EM's fingerprint) is as before.
    assert!(
        !serde_json::to_string(&GmmParams::new(2))
            .unwrap()
            .contains("online")
    );
}

#[test]
fn epochs_rewind_the_stream_and_max_batches_stops_mid_pass() {
    let data = SyntheticMixture {
        n_samples: 5_000,
        n_features: 2,
        n_components: 2,
        separation: 4.0,
        label_fraction: 0.0,
        seed: 2,
    }
    .generate()
    .data;
    let online = OnlineParams {
        batch_size: 1_000,
        burn_in: 2,
        epochs: 3,
        max_batches: Some(12),
        ..OnlineParams::default()
    };
    let valid = GmmParams::new(2).online(online).check().unwrap();
    let mut keep = Keep::default();
    let mut stream = MatrixStream::new(data.x.clone(), "data");
    let fit = valid
        .fit_online(&mut stream, &compute(), &mut keep)
        .unwrap();
    assert_eq!((fit.batches, fit.rows_seen), (12, 12_000));
    let per_epoch: Vec<(usize, usize)> = fit.epochs.iter().map(|e| (e.batches, e.rows)).collect();
    assert_eq!(per_epoch, vec![(5, 5_000), (5, 5_000), (2, 2_000)]);
    assert_eq!(keep.epochs, fit.epochs);
    let epochs: Vec<usize> = keep.batches.iter().map(|b| b.epoch).collect();
    assert_eq!(epochs, [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3]);
    assert_eq!(fit.mixture.n_iter, 12);

    // An observer's error stops the fit; an empty stream is a data error.
    struct Fail;
    impl OnlineObserver for Fail {
        fn on_batch(
            &mut self,
            _: &BatchRecord,
            _: &GmmParameters,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            Err("disk full".into())
        }
    }
    stream.rewind().unwrap();
    let e = valid
        .fit_online(&mut stream, &compute(), &mut Fail)
        .unwrap_err();
    assert!(matches!(e, EmError::Observer(_)), "{e:?}");
    let mut empty = MatrixStream::new(Matrix::new(0, 2, Vec::new()), "empty.csv");
    match valid.fit_online(&mut empty, &compute(), &mut ()) {
        Err(EmError::Data(e)) => assert!(
            e.to_string()
                .contains("empty.csv: the stream holds no rows")
        ),
        other => panic!("{other:?}"),
    }
}

/// In f32 (what GPUs compute in) the batches' statistics are rounded on the device but averaged in
/// f64 on the host: the fit follows the f64 one.
#[test]
fn f32_follows_f64() {
    let data = SyntheticMixture {
        n_samples: 60_000,
        n_features: 3,
        n_components: 3,
        separation: 4.0,
        label_fraction: 0.0,
        seed: 6,
    }
    .generate()
    .data;
    let valid = (GmmParams::new(3).seed(1))
        .online(OnlineParams {
            batch_size: 2_000,
            ..OnlineParams::default()
        })
        .check()
        .unwrap();
    let fit = |precision| {
        let on = Compute::new(Device::flex(), precision);
        let mut stream = MatrixStream::new(data.x.clone(), "data");
        let m = valid.fit_online(&mut stream, &on, &mut ()).unwrap().mixture;
        m.score(&data.x, &compute()).unwrap()
    };
    let (f64_ll, f32_ll) = (fit(Precision::F64), fit(Precision::F32));
    assert!((f64_ll - f32_ll).abs() < 1e-3, "f64 {f64_ll}, f32 {f32_ll}");
}

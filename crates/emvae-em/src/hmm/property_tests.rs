//! Properties of Baum-Welch: the likelihood never decreases, known parameters are recovered, bad
//! input is reported, checkpoints resume exactly and threads do not change results.

use super::*;
use crate::EmError;
use crate::driver::{EmObserver, IterationRecord};

/// A 3-state model with sticky transitions, for each emission.
fn truth(emission: Emission, cov: CovarianceType) -> Hmm {
    let emissions = match emission {
        Emission::Gaussian => {
            let d = 2;
            let means = vec![0.0, 0.0, 4.0, 1.0, -1.0, 4.0];
            let full = [1.0, 0.3, 0.3, 0.5, 0.6, -0.2, -0.2, 1.2, 0.8, 0.0, 0.0, 0.8];
            let covars = match cov {
                CovarianceType::Full => full.to_vec(),
                CovarianceType::Tied => full[..4].to_vec(),
                CovarianceType::Diag => vec![1.0, 0.5, 0.6, 1.2, 0.8, 0.8],
                CovarianceType::Spherical => vec![1.0, 0.5, 0.8],
            };
            Emissions::Gaussian(GaussianEmissions::new(cov, d, means, covars).unwrap())
        }
        Emission::Categorical => Emissions::Categorical(CategoricalEmissions::new(
            4,
            vec![
                0.7, 0.1, 0.1, 0.1, //
                0.1, 0.6, 0.2, 0.1, //
                0.05, 0.05, 0.2, 0.7,
            ],
        )),
    };
    Hmm {
        parameters: HmmParameters {
            startprob: vec![0.5, 0.3, 0.2],
            transmat: vec![0.8, 0.15, 0.05, 0.1, 0.8, 0.1, 0.1, 0.2, 0.7],
            emissions,
        },
        converged: true,
        n_iter: 0,
        lower_bound: 0.0,
        lower_bounds: vec![],
        best_restart: 0,
    }
}

const KINDS: [(Emission, CovarianceType); 5] = [
    (Emission::Gaussian, CovarianceType::Diag),
    (Emission::Gaussian, CovarianceType::Full),
    (Emission::Gaussian, CovarianceType::Spherical),
    (Emission::Gaussian, CovarianceType::Tied),
    (Emission::Categorical, CovarianceType::Diag),
];

/// Sequences of different lengths drawn from `model`.
fn ragged_sample(model: &Hmm, n: usize, seed: u64) -> Sequences {
    let (long, _) = model.sample(n, 120, seed).unwrap();
    let lengths: Vec<usize> = (0..n).map(|s| 40 + (s * 37 + seed as usize) % 80).collect();
    let mut parts = Vec::new();
    for (s, &len) in lengths.iter().enumerate() {
        parts.push(s * 120..s * 120 + len);
    }
    match &long.observations {
        Observations::Gaussian(x) => {
            let rows: Vec<usize> = parts.into_iter().flatten().collect();
            Sequences::gaussian(x.select_rows(&rows), Some(lengths), "sample").unwrap()
        }
        Observations::Categorical { symbols, n_symbols } => {
            let flat = parts.into_iter().flatten().map(|i| symbols[i]).collect();
            Sequences::categorical_flat(flat, Some(lengths), *n_symbols, "sample").unwrap()
        }
    }
}

fn params(emission: Emission, cov: CovarianceType) -> HmmParams {
    HmmParams::new(3).emission(emission).covariance_type(cov)
}

/// Over many random data sets and initialisations, no iteration lowers the log-likelihood.
#[test]
fn log_likelihood_never_decreases() {
    for (emission, cov) in KINDS {
        for seed in 0..8 {
            let data = ragged_sample(&truth(emission, cov), 6, 100 + seed);
            let fit = params(emission, cov)
                .max_iter(40)
                .tol(0.0)
                .min_covar(1e-12)
                .seed(seed)
                .check()
                .unwrap()
                .fit(&data)
                .unwrap();
            for w in fit.lower_bounds.windows(2) {
                assert!(
                    w[1] >= w[0] - 1e-12 * w[0].abs(),
                    "{emission} {cov} seed {seed}: {} -> {}",
                    w[0],
                    w[1]
                );
            }
        }
    }
}

/// The permutation of `0..k` that maps fitted states onto true ones best (by transition matrices and
/// emissions), and the largest parameter error under it.
fn recovery_error(fit: &HmmParameters, truth: &HmmParameters) -> f64 {
    let k = truth.n_states();
    let perms: Vec<Vec<usize>> = vec![
        vec![0, 1, 2],
        vec![0, 2, 1],
        vec![1, 0, 2],
        vec![1, 2, 0],
        vec![2, 0, 1],
        vec![2, 1, 0],
    ];
    let error = |p: &[usize]| {
        // Fitted state p[j] plays true state j.
        let mut worst = 0.0f64;
        for i in 0..k {
            for j in 0..k {
                let e = fit.transmat[p[i] * k + p[j]] - truth.transmat[i * k + j];
                worst = worst.max(e.abs());
            }
        }
        match (&fit.emissions, &truth.emissions) {
            (Emissions::Gaussian(a), Emissions::Gaussian(b)) => {
                for j in 0..k {
                    let (ca, cb) = (a.covariance_matrix(p[j]), b.covariance_matrix(j));
                    for (x, y) in a.mean(p[j]).iter().zip(b.mean(j)) {
                        worst = worst.max((x - y).abs());
                    }
                    for (x, y) in ca.iter().zip(&cb) {
                        worst = worst.max((x - y).abs());
                    }
                }
            }
            (Emissions::Categorical(a), Emissions::Categorical(b)) => {
                let v = b.n_symbols;
                for j in 0..k {
                    for s in 0..v {
                        let e = a.emissionprob[p[j] * v + s] - b.emissionprob[j * v + s];
                        worst = worst.max(e.abs());
                    }
                }
            }
            _ => worst = f64::INFINITY,
        }
        worst
    };
    perms.iter().map(|p| error(p)).fold(f64::INFINITY, f64::min)
}

/// Fitting long samples of a known model recovers it, up to the labels of the states.
#[test]
fn known_parameters_are_recovered() {
    for (emission, cov) in KINDS {
        let t = truth(emission, cov);
        let (data, _) = t.sample(40, 500, 7).unwrap();
        let fit = params(emission, cov)
            .n_init(3)
            .tol(1e-7)
            .max_iter(300)
            .seed(1)
            .check()
            .unwrap()
            .fit(&data)
            .unwrap();
        let err = recovery_error(&fit.parameters, &t.parameters);
        assert!(err < 0.08, "{emission} {cov}: largest error {err}");
        eprintln!(
            "{emission} {cov}: recovered within {err:.3} in {} iterations",
            fit.n_iter
        );
        // The fit explains the data at least as well as the truth.
        assert!(fit.score(&data).unwrap() >= t.score(&data).unwrap() - 1e-9);
    }
}

/// Bad input is an error naming what and where, never a panic.
#[test]
fn bad_input_is_reported() {
    let e = HmmParams::new(0).check().unwrap_err();
    assert_eq!(e.key, "n_states");
    let gaussian = Sequences::gaussian(
        emvae_core::data::Matrix::new(4, 1, vec![0.0, 1.0, 2.0, 3.0]),
        Some(vec![2, 2]),
        "x.csv",
    )
    .unwrap();
    let symbols = Sequences::categorical(&[vec![0, 1, 2], vec![3, 1]], 4, "s.txt").unwrap();
    let categorical = HmmParams::new(2).emission(Emission::Categorical);
    match categorical.clone().check().unwrap().fit(&gaussian) {
        Err(EmError::InvalidParam(e)) => assert_eq!(e.key, "emission"),
        other => panic!("{other:?}"),
    }
    let narrow = categorical
        .emissionprob_init(vec![vec![0.5, 0.3, 0.2], vec![0.2, 0.3, 0.5]])
        .check()
        .unwrap();
    match narrow.fit(&symbols) {
        Err(EmError::InvalidParam(e)) => {
            assert_eq!(e.key, "emissionprob_init");
            assert!(
                e.message.contains("sequence 1, position 0: symbol 3"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    match HmmParams::new(5).check().unwrap().fit(&gaussian) {
        Err(EmError::Data(e)) => assert!(e.message.contains("n_states is 5"), "{e}"),
        other => panic!("{other:?}"),
    }
    let e = HmmParams::new(2)
        .means_init(vec![vec![0.0, 1.0], vec![1.0, 0.0]])
        .check()
        .unwrap()
        .fit(&gaussian)
        .unwrap_err();
    assert!(e.to_string().contains("means_init"), "{e}");
    // A start probability of 0 for the only state that can emit symbol 0: impossible data.
    let impossible = HmmParams::new(2)
        .emission(Emission::Categorical)
        .startprob_init(vec![0.0, 1.0])
        .transmat_init(vec![vec![1.0, 0.0], vec![0.0, 1.0]])
        .emissionprob_init(vec![
            vec![0.25, 0.25, 0.25, 0.25],
            vec![0.0, 0.5, 0.25, 0.25],
        ])
        .check()
        .unwrap();
    let e = impossible.fit(&symbols).unwrap_err();
    assert!(
        e.to_string().contains("sequence 0 has probability 0"),
        "{e}"
    );
}

/// Keeps every checkpoint.
struct Keep(Vec<HmmCheckpoint>);

impl EmObserver<HmmParametersJson> for Keep {
    fn on_iteration(
        &mut self,
        _: &IterationRecord,
        c: &HmmCheckpoint,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.push(c.clone());
        Ok(())
    }
}

/// Resuming from any checkpoint gives the uninterrupted fit bit for bit; a checkpoint of another model
/// is refused.
#[test]
fn checkpoints_resume_exactly() {
    for (emission, cov) in [KINDS[1], KINDS[4]] {
        let data = ragged_sample(&truth(emission, cov), 5, 3);
        let valid = params(emission, cov)
            .max_iter(4)
            .n_init(2)
            .tol(0.0)
            .seed(9)
            .check()
            .unwrap();
        let mut keep = Keep(Vec::new());
        let whole = valid.fit_with(&data, &mut keep, None).unwrap();
        assert_eq!(keep.0.len(), 8);
        for c in &keep.0 {
            // Through JSON, as a checkpoint file.
            let text = serde_json::to_string(c).unwrap();
            let c: HmmCheckpoint = serde_json::from_str(&text).unwrap();
            let resumed = valid.fit_with(&data, &mut (), Some(c)).unwrap();
            assert_eq!(resumed, whole, "{emission}");
        }
    }
    let data = ragged_sample(&truth(Emission::Gaussian, CovarianceType::Full), 5, 3);
    let two = params(Emission::Gaussian, CovarianceType::Full)
        .max_iter(2)
        .tol(0.0);
    let mut keep = Keep(Vec::new());
    two.clone()
        .check()
        .unwrap()
        .fit_with(&data, &mut keep, None)
        .unwrap();
    let mut c = keep.0[0].clone();
    let four = HmmParams::new(4)
        .covariance_type(CovarianceType::Full)
        .max_iter(2)
        .tol(0.0);
    let mut other = Keep(Vec::new());
    four.check()
        .unwrap()
        .fit_with(&data, &mut other, None)
        .unwrap();
    c.parameters = other.0[0].parameters.clone();
    match two.check().unwrap().fit_with(&data, &mut (), Some(c)) {
        Err(EmError::Checkpoint(m)) => assert!(m.contains("4-state gaussian"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// One thread or several: the same fit, bit for bit.
#[test]
fn threads_do_not_change_the_fit() {
    let (data, _) = truth(Emission::Gaussian, CovarianceType::Full)
        .sample(30, 400, 5)
        .unwrap();
    let valid = params(Emission::Gaussian, CovarianceType::Full)
        .max_iter(5)
        .tol(0.0)
        .check()
        .unwrap();
    let fits: Vec<Hmm> = [1, 3]
        .into_iter()
        .map(|n| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap();
            pool.install(|| valid.fit(&data).unwrap())
        })
        .collect();
    assert_eq!(fits[0], fits[1]);
}

/// Samples have the model's shapes, and the Viterbi path of a sample mostly finds its states.
#[test]
fn sampling_and_decoding_agree() {
    for (emission, cov) in KINDS {
        let t = truth(emission, cov);
        let (data, states) = t.sample(4, 300, 11).unwrap();
        assert_eq!(data.lengths, vec![300; 4]);
        let paths = t.predict(&data).unwrap();
        let hits = paths.iter().flatten().zip(states.iter().flatten());
        let accuracy = hits.filter(|(a, b)| a == b).count() as f64 / 1200.0;
        assert!(accuracy > 0.6, "{emission} {cov}: {accuracy}");
        assert_eq!(t.sample(4, 300, 11).unwrap().0, data);
    }
    assert!(
        truth(Emission::Categorical, CovarianceType::Diag)
            .sample(0, 3, 1)
            .is_err()
    );
}

/// Sequences of one step (no transitions) and a single state fit without trouble.
#[test]
fn short_sequences_and_one_state() {
    let symbols =
        Sequences::categorical(&[vec![0], vec![1, 2], vec![3], vec![2, 2, 1]], 4, "s").unwrap();
    let x = emvae_core::data::Matrix::new(5, 1, vec![0.0, 1.0, 5.0, 5.5, 0.5]);
    let gaussian = Sequences::gaussian(x, Some(vec![1, 1, 2, 1]), "x").unwrap();
    for k in [1, 2] {
        let fits = [
            HmmParams::new(k)
                .emission(Emission::Categorical)
                .fit_checked(&symbols),
            HmmParams::new(k).fit_checked(&gaussian),
        ];
        for fit in fits {
            let fit = fit.unwrap();
            assert!(fit.lower_bounds.windows(2).all(|w| w[1] >= w[0] - 1e-12));
            let t = fit.parameters.transmat();
            assert!(
                t.chunks(k)
                    .all(|r| (r.iter().sum::<f64>() - 1.0).abs() < 1e-12)
            );
        }
    }
}

impl HmmParams {
    fn fit_checked(self, data: &Sequences) -> Result<Hmm, EmError> {
        self.seed(4).check()?.fit(data)
    }
}

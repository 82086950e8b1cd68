//! Parity with hmmlearn 0.3 on `tests/fixtures/hmm_hmmlearn.json` (written by
//! `benches/peers/hmmlearn_fixtures.py`): the same data and initial parameters, priors off, 25
//! Baum-Welch iterations; the log-likelihood trajectory, the fitted parameters, Viterbi paths and
//! scores must agree.

use serde::Deserialize;

use super::*;
use emvae_core::data::Matrix;

#[derive(Debug, Deserialize)]
struct Fixture {
    n_iter: usize,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    emission: Emission,
    covariance_type: Option<CovarianceType>,
    n_states: usize,
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
    history: Vec<f64>,
    startprob: Vec<f64>,
    transmat: Vec<Vec<f64>>,
    means: Option<Vec<Vec<f64>>>,
    covars: Option<ArrayInit>,
    emissionprob: Option<Vec<Vec<f64>>>,
    score: f64,
    score_sequences: Vec<f64>,
    viterbi_log_prob: Vec<f64>,
    viterbi_states: Vec<Vec<usize>>,
    predict_proba_first5: Vec<Vec<f64>>,
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/hmm_hmmlearn.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture parses")
}

impl Case {
    fn data(&self) -> Sequences {
        let lengths = Some(self.lengths.clone());
        match self.emission {
            Emission::Gaussian => {
                let x = Matrix::from_rows(self.x.as_ref().unwrap());
                Sequences::gaussian(x, lengths, &self.name).unwrap()
            }
            Emission::Categorical => {
                let (s, v) = (self.symbols.clone().unwrap(), self.n_symbols.unwrap());
                Sequences::categorical_flat(s, lengths, v, &self.name).unwrap()
            }
        }
    }

    fn params(&self, n_iter: usize) -> HmmValidParams {
        let mut p = HmmParams::new(self.n_states)
            .emission(self.emission)
            .max_iter(n_iter)
            .tol(0.0)
            .min_covar(1e-10)
            .startprob_init(self.startprob_init.clone())
            .transmat_init(self.transmat_init.clone());
        p.covariance_type = self.covariance_type.unwrap_or(CovarianceType::Diag);
        p.means_init = self.means_init.clone();
        p.covars_init = self.covars_init.clone();
        p.emissionprob_init = self.emissionprob_init.clone();
        p.check().unwrap()
    }

    /// hmmlearn's fitted model.
    fn fitted(&self) -> Hmm {
        let gaussian = self.emission == Emission::Gaussian;
        let parameters = HmmParametersJson {
            emission: self.emission,
            n_states: self.n_states,
            covariance_type: self.covariance_type,
            n_features: self.x.as_ref().map(|x| x[0].len()),
            n_symbols: self.n_symbols,
            startprob: self.startprob.clone(),
            transmat: self.transmat.clone(),
            means: self.means.clone().filter(|_| gaussian),
            covars: self.covars.clone(),
            emissionprob: self.emissionprob.clone(),
        };
        Hmm {
            parameters: HmmParameters::try_from(parameters).unwrap(),
            converged: false,
            n_iter: 0,
            lower_bound: 0.0,
            lower_bounds: vec![],
            best_restart: 0,
        }
    }
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

/// The log-likelihood of every iteration (hmmlearn's total, ours per observation times the number of
/// observations) and the fitted parameters agree.
#[test]
fn baum_welch_matches_hmmlearn() {
    let f = fixture();
    assert_eq!(f.cases.len(), 5);
    for case in &f.cases {
        let data = case.data();
        let n = data.n_observations() as f64;
        let model = case.params(f.n_iter).fit(&data).unwrap();
        let totals: Vec<f64> = model.lower_bounds.iter().map(|l| l * n).collect();
        let worst = max_abs_diff(&totals, &case.history);
        assert!(
            worst < 1e-6,
            "{}: log-likelihood off by {worst:e}",
            case.name
        );
        eprintln!(
            "{}: log-likelihood trajectory within {worst:.1e}",
            case.name
        );

        let want = case.fitted().parameters;
        let got = &model.parameters;
        let worst = [
            max_abs_diff(&got.startprob, &want.startprob),
            max_abs_diff(&got.transmat, &want.transmat),
            match (&got.emissions, &want.emissions) {
                (Emissions::Gaussian(a), Emissions::Gaussian(b)) => {
                    max_abs_diff(&a.means, &b.means).max(max_abs_diff(&a.covars, &b.covars))
                }
                (Emissions::Categorical(a), Emissions::Categorical(b)) => {
                    max_abs_diff(&a.emissionprob, &b.emissionprob)
                }
                _ => f64::INFINITY,
            },
        ]
        .into_iter()
        .fold(0.0, f64::max);
        assert!(worst < 1e-6, "{}: parameters off by {worst:e}", case.name);
        eprintln!("{}: parameters within {worst:.1e}", case.name);
    }
}

/// Viterbi paths and their log-probabilities, scores and posteriors of hmmlearn's fitted models.
#[test]
fn decoding_and_scores_match_hmmlearn() {
    for case in &fixture().cases {
        let data = case.data();
        let model = case.fitted();
        let decoded = model.decode(&data).unwrap();
        for (s, d) in decoded.iter().enumerate() {
            assert_eq!(d.states, case.viterbi_states[s], "{}: path {s}", case.name);
            let want = case.viterbi_log_prob[s];
            assert!((d.log_prob - want).abs() < 1e-8, "{}: {s}", case.name);
        }
        let scores = model.score_sequences(&data).unwrap();
        assert!(
            max_abs_diff(&scores, &case.score_sequences) < 1e-8,
            "{}",
            case.name
        );
        assert!((model.total_score(&data).unwrap() - case.score).abs() < 1e-8);
        let proba = model.predict_proba(&data).unwrap();
        let first5: Vec<f64> = case.predict_proba_first5.concat();
        let k = case.n_states;
        assert!(
            max_abs_diff(&proba.values[..5 * k], &first5) < 1e-10,
            "{}",
            case.name
        );
    }
}

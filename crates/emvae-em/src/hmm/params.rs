//! Hyper-parameters of a hidden Markov model, unchecked (as read from a config) and checked.

use emvae_core::config::InvalidParam;
use serde::{Deserialize, Serialize};

use super::validate::{check_covars, check_distribution, check_means, check_stochastic};
use crate::gmm::{ArrayInit, CovarianceType};

/// What a state emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emission {
    /// A real vector from a Gaussian per state (hmmlearn's `GaussianHMM`).
    #[default]
    Gaussian,
    /// A symbol from a categorical distribution per state (hmmlearn's `CategoricalHMM`).
    Categorical,
}

impl std::fmt::Display for Emission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Gaussian => "gaussian",
            Self::Categorical => "categorical",
        })
    }
}

fn default_covariance_type() -> CovarianceType {
    CovarianceType::Diag
}
fn default_max_iter() -> usize {
    100
}
fn default_tol() -> f64 {
    1e-4
}
fn default_one() -> usize {
    1
}
fn default_min_covar() -> f64 {
    1e-3
}

/// Unchecked hyper-parameters of a hidden Markov model: the `[hmm]` table of a config.
///
/// Names follow hmmlearn. Where the defaults differ, for a reason:
/// - `max_iter` is 100 (hmmlearn's `n_iter` is 10, rarely enough to converge);
/// - `tol` is on the **average log-likelihood per observation** (as every model on
///   [`crate::driver`]), not on the total as hmmlearn's `tol = 1e-2`: `1e-4` per observation;
/// - `min_covar` (1e-3, as hmmlearn) is added to the diagonal of every covariance after each M-step
///   and at initialisation; hmmlearn 0.3 uses it only at initialisation and regularises its M-step with
///   `covars_prior` instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmmParams {
    /// Number of hidden states `k`.
    pub n_states: usize,
    #[serde(default)]
    pub emission: Emission,
    /// Form of the Gaussian covariances (Gaussian emissions only): `diag` (default, as hmmlearn),
    /// `full`, `spherical` or `tied`.
    #[serde(default = "default_covariance_type")]
    pub covariance_type: CovarianceType,
    /// Baum-Welch iterations per initialisation.
    #[serde(default = "default_max_iter")]
    pub max_iter: usize,
    /// EM stops when the average log-likelihood per observation changes by less than `tol`.
    #[serde(default = "default_tol")]
    pub tol: f64,
    /// Number of initialisations; the one with the highest final log-likelihood is kept.
    #[serde(default = "default_one")]
    pub n_init: usize,
    /// Added to the diagonal of every covariance, keeping them positive definite.
    #[serde(default = "default_min_covar")]
    pub min_covar: f64,
    /// Initial state distribution `pi`, `[k]`, summing to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startprob_init: Option<Vec<f64>>,
    /// Initial transition matrix `A[i][j] = p(z_t = j | z_t-1 = i)`, `[k, k]`, rows summing to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transmat_init: Option<Vec<Vec<f64>>>,
    /// Initial means `[k, d]` (Gaussian).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub means_init: Option<Vec<Vec<f64>>>,
    /// Initial covariances (Gaussian): `[k, d]` diag, `[k, d, d]` full, `[k]` spherical, `[d, d]` tied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covars_init: Option<ArrayInit>,
    /// Initial emission probabilities `B[j][v] = p(x = v | z = j)`, `[k, n_symbols]` (categorical).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emissionprob_init: Option<Vec<Vec<f64>>>,
    /// Seed of every random choice (initialisations). Set from the run's `seed`.
    #[serde(skip)]
    pub seed: u64,
}

impl HmmParams {
    /// Defaults for `n_states` states with Gaussian diagonal emissions.
    pub fn new(n_states: usize) -> Self {
        Self {
            n_states,
            emission: Emission::default(),
            covariance_type: default_covariance_type(),
            max_iter: default_max_iter(),
            tol: default_tol(),
            n_init: 1,
            min_covar: default_min_covar(),
            startprob_init: None,
            transmat_init: None,
            means_init: None,
            covars_init: None,
            emissionprob_init: None,
            seed: 0,
        }
    }

    pub fn emission(mut self, e: Emission) -> Self {
        self.emission = e;
        self
    }
    pub fn covariance_type(mut self, c: CovarianceType) -> Self {
        self.covariance_type = c;
        self
    }
    pub fn max_iter(mut self, n: usize) -> Self {
        self.max_iter = n;
        self
    }
    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }
    pub fn n_init(mut self, n: usize) -> Self {
        self.n_init = n;
        self
    }
    pub fn min_covar(mut self, v: f64) -> Self {
        self.min_covar = v;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    pub fn startprob_init(mut self, p: Vec<f64>) -> Self {
        self.startprob_init = Some(p);
        self
    }
    pub fn transmat_init(mut self, a: Vec<Vec<f64>>) -> Self {
        self.transmat_init = Some(a);
        self
    }
    pub fn means_init(mut self, m: Vec<Vec<f64>>) -> Self {
        self.means_init = Some(m);
        self
    }
    pub fn covars_init(mut self, c: ArrayInit) -> Self {
        self.covars_init = Some(c);
        self
    }
    pub fn emissionprob_init(mut self, b: Vec<Vec<f64>>) -> Self {
        self.emissionprob_init = Some(b);
        self
    }

    /// Validates everything that does not depend on the data; keys in errors are field names (with
    /// the row, as `transmat_init[2]`, where one row is wrong).
    pub fn check(&self) -> Result<HmmValidParams, InvalidParam> {
        let bad = |key: &str, msg: String| Err(InvalidParam::new(key, msg));
        let k = self.n_states;
        if k == 0 {
            return bad("n_states", "must be at least 1, got 0".into());
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return bad(
                "tol",
                format!("must be a finite number >= 0, got {}", self.tol),
            );
        }
        if !(self.min_covar.is_finite() && self.min_covar >= 0.0) {
            let v = self.min_covar;
            return bad(
                "min_covar",
                format!("must be a finite number >= 0, got {v}"),
            );
        }
        if self.max_iter == 0 {
            return bad("max_iter", "must be at least 1, got 0".into());
        }
        if self.n_init == 0 {
            return bad("n_init", "must be at least 1, got 0".into());
        }
        let startprob = match &self.startprob_init {
            None => None,
            Some(p) => {
                check_distribution(p, k, "n_states")
                    .map_err(|m| InvalidParam::new("startprob_init", m))?;
                Some(p.clone())
            }
        };
        let transmat = match &self.transmat_init {
            None => None,
            Some(a) => Some(check_stochastic(a, k, Some(k), "transmat_init")?.1),
        };
        let (gaussian_only, categorical_only) = (
            [
                ("means_init", self.means_init.is_some()),
                ("covars_init", self.covars_init.is_some()),
            ],
            [("emissionprob_init", self.emissionprob_init.is_some())],
        );
        let wrong = match self.emission {
            Emission::Gaussian => categorical_only.iter().find(|(_, given)| *given),
            Emission::Categorical => gaussian_only.iter().find(|(_, given)| *given),
        };
        if let Some((key, _)) = wrong {
            return bad(
                key,
                format!("does not apply to emission = \"{}\"", self.emission),
            );
        }
        let means = match &self.means_init {
            None => None,
            Some(m) => Some(check_means(m, k, None, "means_init")?),
        };
        let covars = match &self.covars_init {
            None => None,
            Some(c) => {
                let d_means = means.as_ref().map(|(d, _)| (*d, "means_init"));
                Some(check_covars(
                    c,
                    self.covariance_type,
                    k,
                    d_means,
                    "covars_init",
                )?)
            }
        };
        let emissionprob = match &self.emissionprob_init {
            None => None,
            Some(b) => Some(check_stochastic(b, k, None, "emissionprob_init")?),
        };
        Ok(HmmValidParams {
            params: self.clone(),
            startprob_init: startprob,
            transmat_init: transmat,
            means_init: means,
            covars_init: covars,
            emissionprob_init: emissionprob,
        })
    }
}

/// Checked hyper-parameters: what [`HmmValidParams::fit`] runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct HmmValidParams {
    params: HmmParams,
    pub(crate) startprob_init: Option<Vec<f64>>,
    /// Row-major `[k, k]`.
    pub(crate) transmat_init: Option<Vec<f64>>,
    /// `(d, row-major [k, d])`.
    pub(crate) means_init: Option<(usize, Vec<f64>)>,
    /// `(d, values)`; `d = None` for spherical.
    pub(crate) covars_init: Option<(Option<usize>, Vec<f64>)>,
    /// `(n_symbols, row-major [k, n_symbols])`.
    pub(crate) emissionprob_init: Option<(usize, Vec<f64>)>,
}

impl HmmValidParams {
    pub fn params(&self) -> &HmmParams {
        &self.params
    }
    pub fn n_states(&self) -> usize {
        self.params.n_states
    }
    pub fn emission(&self) -> Emission {
        self.params.emission
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let p: HmmParams = toml::from_str("n_states = 3").unwrap();
        assert_eq!(p, HmmParams::new(3));
        assert_eq!(
            (
                p.emission,
                p.covariance_type,
                p.max_iter,
                p.tol,
                p.min_covar
            ),
            (Emission::Gaussian, CovarianceType::Diag, 100, 1e-4, 1e-3)
        );
        assert!(p.check().is_ok());
        let e = toml::from_str::<HmmParams>("n_states = 3\nn_components = 2").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let p: HmmParams = toml::from_str("n_states = 2\nemission = \"categorical\"").unwrap();
        assert_eq!(p.emission, Emission::Categorical);
    }

    #[test]
    fn check_names_the_bad_key() {
        let key = |p: HmmParams| p.check().unwrap_err().key;
        assert_eq!(key(HmmParams::new(0)), "n_states");
        assert_eq!(key(HmmParams::new(2).tol(f64::NAN)), "tol");
        assert_eq!(key(HmmParams::new(2).min_covar(-1.0)), "min_covar");
        assert_eq!(key(HmmParams::new(2).max_iter(0)), "max_iter");
        assert_eq!(key(HmmParams::new(2).n_init(0)), "n_init");
        assert_eq!(
            key(HmmParams::new(2).startprob_init(vec![0.5, 0.6])),
            "startprob_init"
        );
        let e = HmmParams::new(2)
            .transmat_init(vec![vec![0.5, 0.5], vec![0.3, 0.5]])
            .check()
            .unwrap_err();
        assert_eq!(e.key, "transmat_init[1]");
        assert!(
            e.message.contains("row 1 must sum to 1, sums to 0.8"),
            "{e}"
        );
        let e = HmmParams::new(2)
            .transmat_init(vec![vec![1.0, 0.0, 0.0], vec![1.0, 0.0, 0.0]])
            .check()
            .unwrap_err();
        assert!(e.message.contains("has 3 entries, n_states is 2"), "{e}");
        assert_eq!(
            key(HmmParams::new(2).means_init(vec![vec![0.0, 1.0], vec![1.0]])),
            "means_init"
        );
        let e = HmmParams::new(2)
            .covariance_type(CovarianceType::Full)
            .covars_init(ArrayInit::Stack(vec![
                vec![vec![1.0, 0.0], vec![0.0, 1.0]],
                vec![vec![1.0, 2.0], vec![2.0, 1.0]],
            ]))
            .check()
            .unwrap_err();
        assert_eq!(e.key, "covars_init");
        assert!(
            e.message.contains("matrix 1 is not positive definite"),
            "{e}"
        );
        let e = HmmParams::new(2)
            .covars_init(ArrayInit::Vector(vec![1.0, 1.0]))
            .check()
            .unwrap_err();
        assert!(e.message.contains("takes shape [n_states, d]"), "{e}");
        let e = HmmParams::new(2)
            .emissionprob_init(vec![vec![1.0], vec![1.0]])
            .check()
            .unwrap_err();
        assert_eq!(e.key, "emissionprob_init");
        assert!(e.message.contains("does not apply"), "{e}");
        let e = HmmParams::new(2)
            .emission(Emission::Categorical)
            .emissionprob_init(vec![vec![0.5, 0.5], vec![0.5, 0.4]])
            .check()
            .unwrap_err();
        assert_eq!(e.key, "emissionprob_init[1]");
    }
}

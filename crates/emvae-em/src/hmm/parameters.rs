//! The parameters of a hidden Markov model and their JSON form (model files and checkpoints).
//!
//! ```text
//! p(x_1..T, z_1..T) = pi[z_1] b_{z_1}(x_1) prod_{t>1} A[z_t-1][z_t] b_{z_t}(x_t)
//! ```
//! with `pi = startprob`, `A = transmat` and `b_j` the emission density of state `j`.

use emvae_core::config::InvalidParam;
use serde::{Deserialize, Serialize};

use super::categorical::CategoricalEmissions;
use super::data::{Observations, Sequences};
use super::gaussian::GaussianEmissions;
use super::kernels::scale_log_likelihoods;
use super::params::Emission;
use super::validate::{check_covars, check_distribution, check_means, check_stochastic};
use crate::gmm::{ArrayInit, CovarianceType};

/// What the states emit, with their parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Emissions {
    Gaussian(GaussianEmissions),
    Categorical(CategoricalEmissions),
}

impl Emissions {
    pub fn kind(&self) -> Emission {
        match self {
            Self::Gaussian(_) => Emission::Gaussian,
            Self::Categorical(_) => Emission::Categorical,
        }
    }

    pub fn n_parameters(&self) -> usize {
        match self {
            Self::Gaussian(g) => g.n_parameters(),
            Self::Categorical(c) => c.n_parameters(),
        }
    }

    /// `out[t, j] = log b_j(x_t)` for observations `rows` (a range of time steps) of `obs`, which the
    /// caller has checked to be of this emission's kind.
    pub(crate) fn log_likelihoods(
        &self,
        obs: &Observations,
        rows: std::ops::Range<usize>,
        out: &mut [f64],
    ) {
        match (self, obs) {
            (Self::Gaussian(g), Observations::Gaussian(x)) => {
                let d = x.n_cols;
                g.log_likelihoods(&x.values[rows.start * d..rows.end * d], out);
            }
            (Self::Categorical(c), Observations::Categorical { symbols, .. }) => {
                c.log_likelihoods(&symbols[rows], out);
            }
            // Callers check the kind first (`HmmParameters::check_data`).
            _ => out.fill(f64::NAN),
        }
    }
}

impl Emissions {
    /// Emission likelihoods scaled per time step for the forward-backward recursions:
    /// `b[t, j] = b_j(x_t) / exp(shift[t])` (see [`super::forward_backward`]).
    pub(crate) fn scaled_likelihoods(
        &self,
        obs: &Observations,
        rows: std::ops::Range<usize>,
        b: &mut [f64],
        shift: &mut [f64],
    ) {
        match (self, obs) {
            (Self::Categorical(c), Observations::Categorical { symbols, .. }) => {
                c.likelihoods(&symbols[rows], b, shift);
            }
            _ => {
                let k = b.len() / shift.len().max(1);
                self.log_likelihoods(obs, rows, b);
                scale_log_likelihoods(b, shift, k);
            }
        }
    }
}

/// Parameters of a hidden Markov model of `k` states.
#[derive(Debug, Clone, PartialEq)]
///
/// Built by a fit or from [`HmmParametersJson`] (validated), so that the shapes agree.
pub struct HmmParameters {
    /// `pi`, `[k]`.
    pub(crate) startprob: Vec<f64>,
    /// `A`, `[k, k]` row-major, rows summing to 1.
    pub(crate) transmat: Vec<f64>,
    pub(crate) emissions: Emissions,
}

impl HmmParameters {
    /// `pi`, `[k]`.
    pub fn startprob(&self) -> &[f64] {
        &self.startprob
    }

    /// `A`, `[k, k]` row-major.
    pub fn transmat(&self) -> &[f64] {
        &self.transmat
    }

    pub fn emissions(&self) -> &Emissions {
        &self.emissions
    }

    pub fn n_states(&self) -> usize {
        self.startprob.len()
    }

    /// Free parameters: `k - 1` start probabilities, `k (k - 1)` transitions and the emissions'.
    pub fn n_parameters(&self) -> usize {
        let k = self.n_states();
        (k - 1) + k * (k - 1) + self.emissions.n_parameters()
    }

    /// Checks that `data` suits these parameters: the emission kind, the number of features, symbols in
    /// the vocabulary.
    pub fn check_data(&self, data: &Sequences) -> Result<(), crate::EmError> {
        match (&self.emissions, &data.observations) {
            (Emissions::Gaussian(g), Observations::Gaussian(x)) => {
                if x.n_cols != g.n_features {
                    return Err(crate::EmError::FeatureMismatch {
                        expected: g.n_features,
                        found: x.n_cols,
                    });
                }
            }
            (Emissions::Categorical(c), Observations::Categorical { .. }) => {
                data.check_symbols(c.n_symbols)?;
            }
            (e, _) => {
                let found = match e.kind() {
                    Emission::Gaussian => "symbols",
                    Emission::Categorical => "real-valued observations",
                };
                return Err(data
                    .error(format!(
                        "the model has {} emissions but the data are {found}",
                        e.kind()
                    ))
                    .into());
            }
        }
        Ok(())
    }
}

/// The JSON form of [`HmmParameters`]: nested arrays, readable by any tool. Gaussian models carry
/// `covariance_type`, `n_features`, `means` and `covars` (shaped as `covars_init`); categorical ones
/// `n_symbols` and `emissionprob`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmmParametersJson {
    pub emission: Emission,
    pub n_states: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covariance_type: Option<CovarianceType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_features: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_symbols: Option<usize>,
    pub startprob: Vec<f64>,
    pub transmat: Vec<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub means: Option<Vec<Vec<f64>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covars: Option<ArrayInit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emissionprob: Option<Vec<Vec<f64>>>,
}

fn rows(values: &[f64], width: usize) -> Vec<Vec<f64>> {
    values.chunks_exact(width).map(<[f64]>::to_vec).collect()
}

impl From<&HmmParameters> for HmmParametersJson {
    fn from(p: &HmmParameters) -> Self {
        let k = p.n_states();
        let mut j = Self {
            emission: p.emissions.kind(),
            n_states: k,
            covariance_type: None,
            n_features: None,
            n_symbols: None,
            startprob: p.startprob.clone(),
            transmat: rows(&p.transmat, k),
            means: None,
            covars: None,
            emissionprob: None,
        };
        match &p.emissions {
            Emissions::Gaussian(g) => {
                let d = g.n_features;
                j.covariance_type = Some(g.covariance_type);
                j.n_features = Some(d);
                j.means = Some(rows(&g.means, d));
                j.covars = Some(match g.covariance_type {
                    CovarianceType::Full => {
                        ArrayInit::Stack(g.covars.chunks_exact(d * d).map(|m| rows(m, d)).collect())
                    }
                    CovarianceType::Diag | CovarianceType::Tied => {
                        ArrayInit::Matrix(rows(&g.covars, d))
                    }
                    CovarianceType::Spherical => ArrayInit::Vector(g.covars.clone()),
                });
            }
            Emissions::Categorical(c) => {
                j.n_symbols = Some(c.n_symbols);
                j.emissionprob = Some(rows(&c.emissionprob, c.n_symbols));
            }
        }
        j
    }
}

/// A model file's (or checkpoint's) parameters, held to the rules of the config's `*_init` values
/// (probabilities summing to 1, finite means, symmetric positive definite covariances). Errors name the
/// field.
impl TryFrom<HmmParametersJson> for HmmParameters {
    type Error = InvalidParam;
    fn try_from(j: HmmParametersJson) -> Result<Self, InvalidParam> {
        let k = j.n_states;
        if k == 0 {
            return Err(InvalidParam::new("n_states", "must be at least 1, got 0"));
        }
        check_distribution(&j.startprob, k, "n_states")
            .map_err(|m| InvalidParam::new("startprob", m))?;
        let (_, transmat) = check_stochastic(&j.transmat, k, Some(k), "transmat")?;
        let missing = |key: &str| {
            InvalidParam::new(
                key,
                format!("is required for emission = \"{}\"", j.emission),
            )
        };
        let stray = |key: &str| {
            InvalidParam::new(
                key,
                format!("does not apply to emission = \"{}\"", j.emission),
            )
        };
        let emissions = match j.emission {
            Emission::Gaussian => {
                if j.n_symbols.is_some() {
                    return Err(stray("n_symbols"));
                }
                if j.emissionprob.is_some() {
                    return Err(stray("emissionprob"));
                }
                let cov = j
                    .covariance_type
                    .ok_or_else(|| missing("covariance_type"))?;
                let d = j.n_features.ok_or_else(|| missing("n_features"))?;
                if d == 0 {
                    return Err(InvalidParam::new("n_features", "must be at least 1, got 0"));
                }
                let means = j.means.as_ref().ok_or_else(|| missing("means"))?;
                let (_, means) = check_means(means, k, Some(d), "means")?;
                let covars = j.covars.as_ref().ok_or_else(|| missing("covars"))?;
                let (_, covars) = check_covars(covars, cov, k, Some((d, "means")), "covars")?;
                let g = GaussianEmissions::new(cov, d, means, covars)
                    .map_err(|m| InvalidParam::new("covars", m))?;
                Emissions::Gaussian(g)
            }
            Emission::Categorical => {
                for (key, given) in [
                    ("covariance_type", j.covariance_type.is_some()),
                    ("n_features", j.n_features.is_some()),
                    ("means", j.means.is_some()),
                    ("covars", j.covars.is_some()),
                ] {
                    if given {
                        return Err(stray(key));
                    }
                }
                let v = j.n_symbols.ok_or_else(|| missing("n_symbols"))?;
                if v == 0 {
                    return Err(InvalidParam::new("n_symbols", "must be at least 1, got 0"));
                }
                let b = j
                    .emissionprob
                    .as_ref()
                    .ok_or_else(|| missing("emissionprob"))?;
                let (_, b) = check_stochastic(b, k, Some(v), "emissionprob")?;
                Emissions::Categorical(CategoricalEmissions::new(v, b))
            }
        };
        Ok(Self {
            startprob: j.startprob,
            transmat,
            emissions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian() -> HmmParameters {
        HmmParameters {
            startprob: vec![0.25, 0.75],
            transmat: vec![0.9, 0.1, 0.2, 0.8],
            emissions: Emissions::Gaussian(
                GaussianEmissions::new(
                    CovarianceType::Full,
                    2,
                    vec![0.0, 1.0, -1.0, 0.5],
                    vec![1.0, 0.2, 0.2, 2.0, 0.5, 0.0, 0.0, 0.5],
                )
                .unwrap(),
            ),
        }
    }

    #[test]
    fn json_round_trips_and_is_validated() {
        let p = gaussian();
        let text = serde_json::to_string(&HmmParametersJson::from(&p)).unwrap();
        let j: HmmParametersJson = serde_json::from_str(&text).unwrap();
        assert_eq!(HmmParameters::try_from(j.clone()).unwrap(), p);
        assert_eq!(p.n_parameters(), 1 + 2 + 4 + 6);

        let mut bad = j.clone();
        bad.transmat[1] = vec![0.5, 0.4];
        assert_eq!(HmmParameters::try_from(bad).unwrap_err().key, "transmat[1]");
        let mut bad = j.clone();
        bad.covars = Some(ArrayInit::Matrix(vec![vec![1.0, 1.0], vec![1.0, 1.0]]));
        assert_eq!(HmmParameters::try_from(bad).unwrap_err().key, "covars");
        let mut bad = j.clone();
        bad.means = None;
        let e = HmmParameters::try_from(bad).unwrap_err();
        assert_eq!(e.key, "means");
        assert!(e.message.contains("required"), "{e}");
        let mut bad = j;
        bad.n_symbols = Some(3);
        assert_eq!(HmmParameters::try_from(bad).unwrap_err().key, "n_symbols");
        let e =
            serde_json::from_str::<HmmParametersJson>(&text.replace("\"startprob\"", "\"start\""));
        assert!(e.unwrap_err().to_string().contains("unknown field"));
    }
}

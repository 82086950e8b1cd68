//! A fitted Gaussian mixture: scikit-learn's `predict`, `predict_proba`, `score`, `score_samples`,
//! `sample`, `bic` and `aic`.

use emvae_core::config::InvalidParam;
use emvae_core::data::Matrix;
use emvae_core::data::synthetic::sample_gaussian_mixture;
use emvae_core::rng::rng_for;
use emvae_core::tensor::Compute;
use serde::{Deserialize, Serialize};

use super::parameters::{GmmParameters, GmmParametersJson};
use super::workspace::Workspace;
use crate::EmError;

/// Format tag of the model file.
pub const MODEL_FORMAT: &str = "emvae.gmm.v1";

/// A Gaussian mixture fitted by EM.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianMixture {
    pub parameters: GmmParameters,
    /// Whether the best restart converged (its last change was below `tol`).
    pub converged: bool,
    /// EM iterations of the best restart.
    pub n_iter: usize,
    /// Average log-likelihood entering the last E-step of the best restart.
    pub lower_bound: f64,
    /// The best restart's trajectory of average log-likelihoods, one per iteration.
    pub lower_bounds: Vec<f64>,
    /// Which restart was best (0-based).
    pub best_restart: usize,
}

/// The model file: parameters as nested JSON arrays plus the fit's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianMixtureJson {
    pub format: String,
    #[serde(flatten)]
    pub parameters: GmmParametersJson,
    pub converged: bool,
    pub n_iter: usize,
    pub lower_bound: f64,
    pub lower_bounds: Vec<f64>,
    pub best_restart: usize,
}

/// Weights below this mean a component explains no data (an emptied component keeps only the
/// M-step's `10 eps` floor, about 1e-16 of the weight).
pub const EMPTY_COMPONENT_WEIGHT: f64 = 1e-10;

/// Something about a fit that is not an error but that the user should know (scikit-learn warns too).
#[derive(Debug, Clone, PartialEq)]
pub enum FitWarning {
    /// The data have fewer distinct rows than the mixture has components.
    FewDistinctRows {
        distinct: usize,
        n_components: usize,
    },
    /// Components (index, weight) whose weight is below [`EMPTY_COMPONENT_WEIGHT`].
    EmptyComponents(Vec<(usize, f64)>),
}

impl std::fmt::Display for FitWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FewDistinctRows {
                distinct,
                n_components,
            } => write!(
                f,
                "the data have {distinct} distinct rows but n_components is {n_components}: some components \
                 cannot describe data of their own; use n_components <= {distinct}"
            ),
            Self::EmptyComponents(empty) => {
                let (ids, weights): (Vec<String>, Vec<String>) = empty
                    .iter()
                    .map(|(j, w)| (j.to_string(), format!("{w:.1e}")))
                    .unzip();
                let (noun, verb) = if empty.len() == 1 {
                    ("component", "has weight")
                } else {
                    ("components", "have weights")
                };
                write!(
                    f,
                    "{noun} {} {verb} {} (below {EMPTY_COMPONENT_WEIGHT:e}): they hold no data; use fewer \
                     components or another initialisation (gmm.n_init, gmm.init_params)",
                    ids.join(", "),
                    weights.join(", "),
                )
            }
        }
    }
}

/// Number of distinct rows of `x`, counted up to `limit` (the count stops there).
fn distinct_rows_up_to(x: &Matrix, limit: usize) -> usize {
    let mut seen = std::collections::HashSet::new();
    for row in x.rows() {
        // `+ 0.0` makes -0.0 and 0.0 the same value.
        seen.insert(
            row.iter()
                .map(|v| (v + 0.0).to_bits())
                .collect::<Vec<u64>>(),
        );
        if seen.len() >= limit {
            break;
        }
    }
    seen.len()
}

impl From<&GaussianMixture> for GaussianMixtureJson {
    fn from(m: &GaussianMixture) -> Self {
        Self {
            format: MODEL_FORMAT.into(),
            parameters: (&m.parameters).into(),
            converged: m.converged,
            n_iter: m.n_iter,
            lower_bound: m.lower_bound,
            lower_bounds: m.lower_bounds.clone(),
            best_restart: m.best_restart,
        }
    }
}

/// A model file, validated: errors name the field (see [`GmmParameters`]'s `TryFrom`).
impl TryFrom<GaussianMixtureJson> for GaussianMixture {
    type Error = InvalidParam;
    fn try_from(j: GaussianMixtureJson) -> Result<Self, InvalidParam> {
        if j.format != MODEL_FORMAT {
            return Err(InvalidParam::new(
                "format",
                format!(
                    "`{}` is not a Gaussian mixture (`{MODEL_FORMAT}`)",
                    j.format
                ),
            ));
        }
        Ok(Self {
            parameters: GmmParameters::try_from(j.parameters)?,
            converged: j.converged,
            n_iter: j.n_iter,
            lower_bound: j.lower_bound,
            lower_bounds: j.lower_bounds,
            best_restart: j.best_restart,
        })
    }
}

impl GaussianMixture {
    pub fn n_components(&self) -> usize {
        self.parameters.n_components
    }

    pub fn n_features(&self) -> usize {
        self.parameters.n_features
    }

    fn workspace(&self, x: &Matrix, compute: &Compute) -> Result<Workspace, EmError> {
        if x.n_cols != self.n_features() {
            return Err(EmError::FeatureMismatch {
                expected: self.n_features(),
                found: x.n_cols,
            });
        }
        Ok(Workspace::new(
            x,
            None,
            self.n_components(),
            self.parameters.covariance_type,
            compute,
        ))
    }

    /// `log p(x_i) = logsumexp_j (log pi_j + log N(x_i | mu_j, Sigma_j))` per row.
    pub fn score_samples(&self, x: &Matrix, compute: &Compute) -> Result<Vec<f64>, EmError> {
        Ok(self.workspace(x, compute)?.score_samples(&self.parameters))
    }

    /// Average log-likelihood `1/n sum_i log p(x_i)`.
    pub fn score(&self, x: &Matrix, compute: &Compute) -> Result<f64, EmError> {
        let s = self.score_samples(x, compute)?;
        Ok(s.iter().sum::<f64>() / s.len() as f64)
    }

    /// Posterior responsibilities `p(z = j | x_i)`, `[n, k]`.
    pub fn predict_proba(&self, x: &Matrix, compute: &Compute) -> Result<Matrix, EmError> {
        let values = self.workspace(x, compute)?.predict_proba(&self.parameters);
        Ok(Matrix::new(x.n_rows, self.n_components(), values))
    }

    /// The most probable component of every row.
    pub fn predict(&self, x: &Matrix, compute: &Compute) -> Result<Vec<usize>, EmError> {
        let proba = self.predict_proba(x, compute)?;
        Ok(proba
            .rows()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(j, _)| j)
            })
            .collect())
    }

    /// Bayesian information criterion `-2 n score + p ln n` (lower is better).
    pub fn bic(&self, x: &Matrix, compute: &Compute) -> Result<f64, EmError> {
        Ok(self.criteria(self.score(x, compute)?, x.n_rows).0)
    }

    /// Akaike information criterion `-2 n score + 2 p` (lower is better).
    pub fn aic(&self, x: &Matrix, compute: &Compute) -> Result<f64, EmError> {
        Ok(self.criteria(self.score(x, compute)?, x.n_rows).1)
    }

    /// `(BIC, AIC)` of `n` rows whose average log-likelihood is `score`, without another E-step.
    pub fn criteria(&self, score: f64, n: usize) -> (f64, f64) {
        let (n, p) = (n as f64, self.parameters.n_parameters() as f64);
        (-2.0 * score * n + p * n.ln(), -2.0 * score * n + 2.0 * p)
    }

    /// What the user should know about this fit to `x`: fewer distinct rows than components, and
    /// components left (nearly) empty.
    pub fn warnings(&self, x: &Matrix) -> Vec<FitWarning> {
        let k = self.n_components();
        let mut out = Vec::new();
        let distinct = distinct_rows_up_to(x, k);
        if distinct < k {
            out.push(FitWarning::FewDistinctRows {
                distinct,
                n_components: k,
            });
        }
        let empty: Vec<(usize, f64)> = (self.parameters.weights.iter().copied().enumerate())
            .filter(|(_, w)| *w < EMPTY_COMPONENT_WEIGHT)
            .collect();
        if !empty.is_empty() {
            out.push(FitWarning::EmptyComponents(empty));
        }
        out
    }

    /// Draws `n` points with their components (rows grouped by component, as in scikit-learn).
    /// Computed on the host, so the draws depend only on `seed`, not on the backend.
    pub fn sample(&self, n: usize, seed: u64) -> Result<(Matrix, Vec<usize>), EmError> {
        let p = &self.parameters;
        let covariances: Vec<f64> = (0..p.n_components)
            .flat_map(|j| p.covariance_matrix(j))
            .collect();
        let mut rng = rng_for(seed, b"gmm-sample", 0);
        sample_gaussian_mixture(&p.weights, &p.means, &covariances, n, &mut rng).ok_or_else(|| {
            EmError::IllConditioned {
                component: None,
                message: "a covariance of the model is not positive definite; cannot sample".into(),
            }
        })
    }
}

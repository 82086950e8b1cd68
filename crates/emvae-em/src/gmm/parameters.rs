//! Mixture parameters on the host, in f64, and the conversions between covariances, precisions and
//! Cholesky factors of precisions.
//!
//! Layouts (row-major) by covariance type, for `k` components in `d` dimensions:
//! full `[k, d, d]`, diag `[k, d]`, tied `[d, d]`, spherical `[k]`.
//!
//! The E-step uses the Cholesky factor `P` of each precision matrix, `Sigma^-1 = P P^T`, as
//! scikit-learn does: `log N(x | mu, Sigma) = -d/2 log 2pi + log|P| - 1/2 ||(x - mu)^T P||^2`, with
//! `log|P| = sum_i log P_ii` for triangular `P`; no inverse or determinant of `Sigma` is ever formed.

use emvae_core::linalg;
use serde::{Deserialize, Serialize};

use super::params::CovarianceType;
use crate::EmError;

/// Parameters of a Gaussian mixture.
#[derive(Debug, Clone, PartialEq)]
pub struct GmmParameters {
    pub covariance_type: CovarianceType,
    pub n_components: usize,
    pub n_features: usize,
    /// Mixing weights `pi_k`, `[k]`.
    pub weights: Vec<f64>,
    /// Means `mu_k`, `[k, d]`.
    pub means: Vec<f64>,
    /// Covariances, laid out by covariance type.
    pub covariances: Vec<f64>,
    /// Cholesky factors of the precisions (`Sigma^-1 = P P^T`), laid out by covariance type; for
    /// diag and spherical, `1 / sigma`.
    pub precisions_cholesky: Vec<f64>,
}

impl GmmParameters {
    pub fn mean(&self, j: usize) -> &[f64] {
        &self.means[j * self.n_features..(j + 1) * self.n_features]
    }

    /// Number of free parameters: `k - 1` weights, `k d` means and the covariance parameters.
    pub fn n_parameters(&self) -> usize {
        let (k, d) = (self.n_components, self.n_features);
        self.covariance_type.n_parameters(k, d) + k * d + k - 1
    }

    /// `log |P_k|` per component: the log-determinant of the precision's Cholesky factor, which is
    /// `-1/2 log |Sigma_k|`.
    pub fn log_det_precision_cholesky(&self) -> Vec<f64> {
        let (k, d) = (self.n_components, self.n_features);
        let p = &self.precisions_cholesky;
        let tri = |m: &[f64]| (0..d).map(|i| m[i * d + i].ln()).sum::<f64>();
        match self.covariance_type {
            CovarianceType::Full => p.chunks_exact(d * d).map(tri).collect(),
            CovarianceType::Tied => vec![tri(p); k],
            CovarianceType::Diag => p
                .chunks_exact(d)
                .map(|r| r.iter().map(|v| v.ln()).sum())
                .collect(),
            CovarianceType::Spherical => p.iter().map(|v| d as f64 * v.ln()).collect(),
        }
    }

    /// The full `d x d` covariance matrix of component `j`, whatever the covariance type.
    pub fn covariance_matrix(&self, j: usize) -> Vec<f64> {
        let d = self.n_features;
        let c = &self.covariances;
        match self.covariance_type {
            CovarianceType::Full => c[j * d * d..(j + 1) * d * d].to_vec(),
            CovarianceType::Tied => c.clone(),
            CovarianceType::Diag => {
                let mut m = vec![0.0; d * d];
                for i in 0..d {
                    m[i * d + i] = c[j * d + i];
                }
                m
            }
            CovarianceType::Spherical => {
                let mut m = vec![0.0; d * d];
                for i in 0..d {
                    m[i * d + i] = c[j];
                }
                m
            }
        }
    }

    /// The full `d x d` precision matrix of component `j`.
    pub fn precision_matrix(&self, j: usize) -> Vec<f64> {
        let d = self.n_features;
        let p = &self.precisions_cholesky;
        match self.covariance_type {
            CovarianceType::Full => linalg::gram(&p[j * d * d..(j + 1) * d * d], d),
            CovarianceType::Tied => linalg::gram(p, d),
            CovarianceType::Diag | CovarianceType::Spherical => {
                let mut m = vec![0.0; d * d];
                for i in 0..d {
                    let s = if self.covariance_type == CovarianceType::Diag {
                        p[j * d + i]
                    } else {
                        p[j]
                    };
                    m[i * d + i] = s * s;
                }
                m
            }
        }
    }
}

/// The message for a covariance that is not positive definite.
pub(crate) fn ill_conditioned(component: Option<usize>, reg_covar: f64, detail: &str) -> EmError {
    let which = match component {
        Some(j) => format!("component {j}"),
        None => "the tied covariance".to_string(),
    };
    EmError::IllConditioned {
        component,
        message: format!(
            "{which}: covariance is not positive definite ({detail}); the component has collapsed onto too few \
             distinct points, or features are constant or collinear: increase gmm.reg_covar (now {reg_covar:e}), \
             use fewer components, or remove duplicated features"
        ),
    }
}

/// Cholesky factors of the precisions from covariances (scikit-learn's `_compute_precision_cholesky`):
/// `Sigma = L L^T` (lower), `P = L^-T` (upper), so that `P P^T = Sigma^-1`.
///
/// `floor[a]`, when given, is the smallest variance of feature `a` (given the previous features) that is
/// not rounding error: a component whose variance collapsed below it is reported, not fitted as a spike
/// of astronomical density.
pub fn precisions_cholesky_from_covariances(
    cov_type: CovarianceType,
    d: usize,
    covariances: &[f64],
    reg_covar: f64,
    floor: Option<&[f64]>,
) -> Result<Vec<f64>, EmError> {
    match cov_type {
        CovarianceType::Full | CovarianceType::Tied => {
            let mut out = Vec::with_capacity(covariances.len());
            for (j, c) in covariances.chunks_exact(d * d).enumerate() {
                let component = (cov_type == CovarianceType::Full).then_some(j);
                let l = linalg::cholesky_lower_floored(c, d, floor)
                    .map_err(|e| ill_conditioned(component, reg_covar, &e.to_string()))?;
                out.extend(linalg::transpose(&linalg::invert_lower(&l, d), d));
            }
            Ok(out)
        }
        CovarianceType::Diag | CovarianceType::Spherical => {
            let per = if cov_type == CovarianceType::Diag {
                d
            } else {
                1
            };
            covariances
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    let min = match (floor, cov_type) {
                        (Some(f), CovarianceType::Diag) => f[i % d],
                        (Some(f), _) => f.iter().sum::<f64>() / d as f64,
                        (None, _) => 0.0,
                    };
                    if c > min && c.is_finite() {
                        Ok(1.0 / c.sqrt())
                    } else {
                        let detail = format!("a variance is {c:e}");
                        Err(ill_conditioned(Some(i / per), reg_covar, &detail))
                    }
                })
                .collect()
        }
    }
}

/// Cholesky factors of given precisions (scikit-learn's `_compute_precision_cholesky_from_precisions`):
/// `P = chol(Sigma^-1)` lower, or `sqrt` of diagonal precisions.
pub fn precisions_cholesky_from_precisions(
    cov_type: CovarianceType,
    d: usize,
    precisions: &[f64],
) -> Result<Vec<f64>, EmError> {
    match cov_type {
        CovarianceType::Full | CovarianceType::Tied => {
            let mut out = Vec::with_capacity(precisions.len());
            for (j, p) in precisions.chunks_exact(d * d).enumerate() {
                let l = linalg::cholesky_lower(p, d).map_err(|e| EmError::IllConditioned {
                    component: Some(j),
                    message: format!("initial precision {j} is not positive definite: {e}"),
                })?;
                out.extend(l);
            }
            Ok(out)
        }
        CovarianceType::Diag | CovarianceType::Spherical => {
            Ok(precisions.iter().map(|p| p.sqrt()).collect())
        }
    }
}

/// Covariances from precisions (for reporting and sampling when a fit starts from given precisions).
pub fn covariances_from_precisions(
    cov_type: CovarianceType,
    d: usize,
    precisions: &[f64],
) -> Result<Vec<f64>, EmError> {
    match cov_type {
        CovarianceType::Full | CovarianceType::Tied => {
            let mut out = Vec::with_capacity(precisions.len());
            for (j, p) in precisions.chunks_exact(d * d).enumerate() {
                out.extend(
                    linalg::spd_inverse(p, d).map_err(|e| EmError::IllConditioned {
                        component: Some(j),
                        message: format!("initial precision {j} is not positive definite: {e}"),
                    })?,
                );
            }
            Ok(out)
        }
        CovarianceType::Diag | CovarianceType::Spherical => {
            Ok(precisions.iter().map(|p| 1.0 / p).collect())
        }
    }
}

/// The JSON form of [`GmmParameters`]: nested arrays shaped by covariance type, readable by any tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GmmParametersJson {
    pub covariance_type: CovarianceType,
    pub n_components: usize,
    pub n_features: usize,
    pub weights: Vec<f64>,
    pub means: Vec<Vec<f64>>,
    pub covariances: serde_json::Value,
    pub precisions_cholesky: serde_json::Value,
}

fn nest(cov_type: CovarianceType, k: usize, d: usize, values: &[f64]) -> serde_json::Value {
    let rows =
        |v: &[f64], w: usize| -> Vec<Vec<f64>> { v.chunks_exact(w).map(<[f64]>::to_vec).collect() };
    match cov_type {
        CovarianceType::Full => serde_json::json!(
            values
                .chunks_exact(d * d)
                .map(|m| rows(m, d))
                .collect::<Vec<_>>()
        ),
        CovarianceType::Tied => serde_json::json!(rows(values, d)),
        CovarianceType::Diag => serde_json::json!(rows(values, d)),
        CovarianceType::Spherical => {
            debug_assert_eq!(values.len(), k);
            serde_json::json!(values)
        }
    }
}

fn unnest(
    cov_type: CovarianceType,
    k: usize,
    d: usize,
    value: &serde_json::Value,
    what: &str,
) -> Result<Vec<f64>, String> {
    let flat: Vec<f64> = match cov_type {
        CovarianceType::Full => serde_json::from_value::<Vec<Vec<Vec<f64>>>>(value.clone())
            .map(|s| s.into_iter().flatten().flatten().collect()),
        CovarianceType::Tied | CovarianceType::Diag => {
            serde_json::from_value::<Vec<Vec<f64>>>(value.clone())
                .map(|s| s.into_iter().flatten().collect())
        }
        CovarianceType::Spherical => serde_json::from_value::<Vec<f64>>(value.clone()),
    }
    .map_err(|e| format!("{what}: {e}"))?;
    let expected: usize = cov_type.shape(k, d).iter().product();
    if flat.len() != expected {
        return Err(format!(
            "{what}: expected shape {:?} for covariance_type {cov_type}, found {} numbers",
            cov_type.shape(k, d),
            flat.len()
        ));
    }
    Ok(flat)
}

impl From<&GmmParameters> for GmmParametersJson {
    fn from(p: &GmmParameters) -> Self {
        let (k, d) = (p.n_components, p.n_features);
        Self {
            covariance_type: p.covariance_type,
            n_components: k,
            n_features: d,
            weights: p.weights.clone(),
            means: p.means.chunks_exact(d).map(<[f64]>::to_vec).collect(),
            covariances: nest(p.covariance_type, k, d, &p.covariances),
            precisions_cholesky: nest(p.covariance_type, k, d, &p.precisions_cholesky),
        }
    }
}

impl TryFrom<GmmParametersJson> for GmmParameters {
    type Error = String;
    fn try_from(j: GmmParametersJson) -> Result<Self, String> {
        let (k, d, c) = (j.n_components, j.n_features, j.covariance_type);
        if k == 0 || d == 0 {
            return Err("n_components and n_features must be at least 1".into());
        }
        if j.weights.len() != k {
            return Err(format!(
                "weights: expected {k} numbers, found {}",
                j.weights.len()
            ));
        }
        if j.means.len() != k || j.means.iter().any(|m| m.len() != d) {
            return Err(format!("means: expected {k} rows of {d} numbers"));
        }
        let covariances = unnest(c, k, d, &j.covariances, "covariances")?;
        let precisions_cholesky = unnest(c, k, d, &j.precisions_cholesky, "precisions_cholesky")?;
        Ok(Self {
            covariance_type: c,
            n_components: k,
            n_features: d,
            weights: j.weights,
            means: j.means.concat(),
            covariances,
            precisions_cholesky,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_cholesky_inverts_covariance() {
        let cov = [2.0, 0.3, 0.3, 1.0];
        let p =
            precisions_cholesky_from_covariances(CovarianceType::Tied, 2, &cov, 0.0, None).unwrap();
        // P P^T = Sigma^-1  <=>  Sigma P P^T = I
        let prec = linalg::gram(&p, 2);
        let id = linalg::matmul(&cov, &prec, 2);
        assert!((id[0] - 1.0).abs() < 1e-14 && id[1].abs() < 1e-14 && (id[3] - 1.0).abs() < 1e-14);
        // upper triangular, as scikit-learn's
        assert_eq!(p[2], 0.0);
    }

    #[test]
    fn non_positive_variance_names_component() {
        let e = precisions_cholesky_from_covariances(
            CovarianceType::Diag,
            2,
            &[1.0, 1.0, 1.0, -1e-9],
            1e-6,
            None,
        )
        .unwrap_err();
        match e {
            EmError::IllConditioned { component, message } => {
                assert_eq!(component, Some(1));
                assert!(message.contains("reg_covar"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_round_trip() {
        let p = GmmParameters {
            covariance_type: CovarianceType::Full,
            n_components: 2,
            n_features: 2,
            weights: vec![0.25, 0.75],
            means: vec![0.0, 1.0, 2.0, 3.0],
            covariances: vec![1.0, 0.1, 0.1, 1.0, 2.0, 0.0, 0.0, 2.0],
            precisions_cholesky: vec![1.0, 0.0, 0.5, 1.0, 0.7, 0.0, 0.0, 0.7],
        };
        let j = GmmParametersJson::from(&p);
        let text = serde_json::to_string(&j).unwrap();
        let back: GmmParametersJson = serde_json::from_str(&text).unwrap();
        assert_eq!(GmmParameters::try_from(back).unwrap(), p);
    }
}

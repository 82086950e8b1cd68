//! Mixture parameters on the host, in f64, and the conversions between covariances, precisions and
//! Cholesky factors of precisions.
//!
//! Layouts (row-major) by covariance type, for `k` components in `d` dimensions:
//! full `[k, d, d]`, diag `[k, d]`, tied `[d, d]`, spherical `[k]`.
//!
//! The E-step uses the Cholesky factor `P` of each precision matrix, `Sigma^-1 = P P^T`, as
//! scikit-learn does: `log N(x | mu, Sigma) = -d/2 log 2pi + log|P| - 1/2 ||(x - mu)^T P||^2`, with
//! `log|P| = sum_i log P_ii` for triangular `P`; no inverse or determinant of `Sigma` is ever formed.

use emvae_core::config::InvalidParam;
use emvae_core::linalg;
use serde::{Deserialize, Serialize};

use super::params::{
    ArrayInit, CovarianceType, InitKind, check_means, check_precisions_cholesky,
    check_second_moments, check_weights,
};
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

/// Largest deviation from the identity that `P^T Sigma P` may show when the covariances and the
/// Cholesky factors of the precisions describe the same matrices. Both are computed in f64 on the host
/// (whatever the compute precision), so a fitted model is off by rounding error only.
pub const CONSISTENCY_TOLERANCE: f64 = 1e-6;

/// The worst `|P^T Sigma P - I|` entry of every component (one for tied). `P P^T = Sigma^-1` is the same
/// statement as `Sigma P P^T = I`; this form is symmetric and better conditioned.
fn inconsistency(cov_type: CovarianceType, d: usize, covariances: &[f64], pc: &[f64]) -> Vec<f64> {
    match cov_type {
        CovarianceType::Full | CovarianceType::Tied => covariances
            .chunks_exact(d * d)
            .zip(pc.chunks_exact(d * d))
            .map(|(c, p)| {
                let ptcp = linalg::matmul(&linalg::transpose(p, d), &linalg::matmul(c, p, d), d);
                ptcp.iter()
                    .zip(linalg::identity(d))
                    .fold(0.0f64, |m, (v, i)| m.max((v - i).abs()))
            })
            .collect(),
        CovarianceType::Diag => covariances
            .chunks_exact(d)
            .zip(pc.chunks_exact(d))
            .map(|(c, p)| {
                c.iter()
                    .zip(p)
                    .fold(0.0f64, |m, (c, p)| m.max((c * p * p - 1.0).abs()))
            })
            .collect(),
        CovarianceType::Spherical => covariances
            .iter()
            .zip(pc)
            .map(|(c, p)| (c * p * p - 1.0).abs())
            .collect(),
    }
}

/// Reads a second-moment field of a model file as nested arrays.
fn nested(value: &serde_json::Value, key: &str) -> Result<ArrayInit, InvalidParam> {
    serde_json::from_value(value.clone()).map_err(|_| {
        InvalidParam::new(
            key,
            "must be nested arrays of numbers (NaN and infinities, written as null, are not numbers)",
        )
    })
}

/// A model file's (or checkpoint's) parameters, held to the rules of the config's `*_init` values
/// (weights summing to 1, finite means, symmetric positive definite covariances), with Cholesky factors
/// that are triangular with a positive diagonal and agree with the covariances. Errors name the field.
impl TryFrom<GmmParametersJson> for GmmParameters {
    type Error = InvalidParam;
    fn try_from(j: GmmParametersJson) -> Result<Self, InvalidParam> {
        j.validate(true)
    }
}

impl GmmParametersJson {
    /// The checks of [`GmmParameters`]'s `TryFrom`. `normalised = false` lets weights sum to less than
    /// 1: the parameters a restart starts from, where scikit-learn's `k-means++` and `random_from_data`
    /// initialisations give only the `k` seed rows a component (weights summing to `k / n`) until the
    /// first M-step.
    pub(crate) fn validate(self, normalised: bool) -> Result<GmmParameters, InvalidParam> {
        let j = self;
        let (k, d, c) = (j.n_components, j.n_features, j.covariance_type);
        let at = |key: &'static str| move |message: String| InvalidParam::new(key, message);
        if k == 0 {
            return Err(InvalidParam::new(
                "n_components",
                "must be at least 1, got 0",
            ));
        }
        if d == 0 {
            return Err(InvalidParam::new("n_features", "must be at least 1, got 0"));
        }
        check_weights(&j.weights, k, normalised).map_err(at("weights"))?;
        let (dm, means) = check_means(&j.means, k).map_err(at("means"))?;
        if dm != d {
            return Err(InvalidParam::new(
                "means",
                format!("rows have {dm} numbers, n_features is {d}"),
            ));
        }
        let covariances = check_second_moments(
            &nested(&j.covariances, "covariances")?,
            InitKind::Covariances,
            c,
            k,
            Some((d, "means")),
        )
        .map_err(at("covariances"))?
        .values;
        let precisions_cholesky = check_precisions_cholesky(
            &nested(&j.precisions_cholesky, "precisions_cholesky")?,
            c,
            k,
            d,
        )
        .map_err(at("precisions_cholesky"))?;
        let worst = inconsistency(c, d, &covariances, &precisions_cholesky);
        if let Some((i, dev)) = worst
            .iter()
            .enumerate()
            .find(|(_, dev)| dev.is_nan() || **dev > CONSISTENCY_TOLERANCE)
        {
            let which = if c == CovarianceType::Tied {
                "the tied covariance".to_string()
            } else {
                format!("component {i}")
            };
            return Err(InvalidParam::new(
                "covariances",
                format!(
                    "{which}: covariances and precisions_cholesky disagree: P^T Sigma P (with Sigma^-1 = P P^T) \
                     differs from the identity by {dev:.1e}, more than {CONSISTENCY_TOLERANCE:e}"
                ),
            ));
        }
        Ok(GmmParameters {
            covariance_type: c,
            n_components: k,
            n_features: d,
            weights: j.weights,
            means,
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
            precisions_cholesky: precisions_cholesky_from_covariances(
                CovarianceType::Full,
                2,
                &[1.0, 0.1, 0.1, 1.0, 2.0, 0.0, 0.0, 2.0],
                0.0,
                None,
            )
            .unwrap(),
        };
        let j = GmmParametersJson::from(&p);
        let text = serde_json::to_string(&j).unwrap();
        let back: GmmParametersJson = serde_json::from_str(&text).unwrap();
        assert_eq!(GmmParameters::try_from(back).unwrap(), p);
    }

    /// A consistent model of every covariance type, as JSON, for editing.
    fn model_json(cov_type: CovarianceType) -> serde_json::Value {
        let (k, d) = (3, 2);
        let covariances = match cov_type {
            CovarianceType::Full => {
                vec![1.0, 0.2, 0.2, 1.5, 2.0, -0.3, -0.3, 0.5, 0.7, 0.0, 0.0, 0.9]
            }
            CovarianceType::Tied => vec![1.0, 0.2, 0.2, 1.5],
            CovarianceType::Diag => vec![1.0, 1.5, 2.0, 0.5, 0.7, 0.9],
            CovarianceType::Spherical => vec![1.0, 2.0, 0.7],
        };
        let p = GmmParameters {
            covariance_type: cov_type,
            n_components: k,
            n_features: d,
            weights: vec![0.2, 0.3, 0.5],
            means: vec![0.0, 1.0, 2.0, 3.0, -1.0, 0.5],
            precisions_cholesky: precisions_cholesky_from_covariances(
                cov_type,
                d,
                &covariances,
                0.0,
                None,
            )
            .unwrap(),
            covariances,
        };
        serde_json::to_value(GmmParametersJson::from(&p)).unwrap()
    }

    fn read(v: serde_json::Value) -> Result<GmmParameters, InvalidParam> {
        GmmParameters::try_from(serde_json::from_value::<GmmParametersJson>(v).unwrap())
    }

    #[test]
    fn fitted_parameters_of_every_type_read_back() {
        for c in CovarianceType::ALL {
            let p = read(model_json(c)).unwrap();
            assert_eq!(
                serde_json::to_value(GmmParametersJson::from(&p)).unwrap(),
                model_json(c)
            );
        }
    }

    /// Hand edits that used to be trusted (a NaN log-likelihood, a wrong one, covariances ignored) are
    /// errors naming the field, and the component where there is one.
    #[test]
    fn edited_model_files_are_rejected_with_the_field() {
        let cases: Vec<(CovarianceType, &str, serde_json::Value, &str, &[&str])> = vec![
            (
                CovarianceType::Full,
                "/precisions_cholesky/1/1/1",
                (-0.7).into(),
                "precisions_cholesky",
                &["matrix 1", "-0.7 on its diagonal", "must be > 0"],
            ),
            (
                CovarianceType::Full,
                "/precisions_cholesky/0/0/0",
                0.0.into(),
                "precisions_cholesky",
                &["matrix 0", "on its diagonal"],
            ),
            (
                CovarianceType::Full,
                "/precisions_cholesky/0/1/0",
                0.3.into(),
                "precisions_cholesky",
                &["matrix 0 is not triangular"],
            ),
            (
                CovarianceType::Tied,
                "/precisions_cholesky/0/0",
                (-1.0).into(),
                "precisions_cholesky",
                &["the matrix has -1 on its diagonal"],
            ),
            (
                CovarianceType::Diag,
                "/precisions_cholesky/1/0",
                (-1.0).into(),
                "precisions_cholesky",
                &["entry 2 is -1, must be > 0"],
            ),
            (
                CovarianceType::Spherical,
                "/precisions_cholesky/2",
                serde_json::Value::Null,
                "precisions_cholesky",
                &["nested arrays of numbers", "null"],
            ),
            (
                CovarianceType::Diag,
                "/weights",
                serde_json::json!([0.9, 0.9, 0.9]),
                "weights",
                &["must sum to 1, sums to 2.7"],
            ),
            (
                CovarianceType::Diag,
                "/weights",
                serde_json::json!([1.2, -0.2, 0.0]),
                "weights",
                &["entry 1 is -0.2"],
            ),
            (
                CovarianceType::Full,
                "/covariances/1/0/0",
                5.0.into(),
                "covariances",
                &["component 1:", "disagree"],
            ),
            (
                CovarianceType::Full,
                "/covariances/2/0/1",
                0.1.into(),
                "covariances",
                &["matrix 2 is not symmetric"],
            ),
            (
                CovarianceType::Tied,
                "/covariances/1/1",
                1.5001.into(),
                "covariances",
                &["the tied covariance:", "disagree"],
            ),
            (
                CovarianceType::Diag,
                "/covariances/2/1",
                1.0.into(),
                "covariances",
                &["component 2:", "disagree"],
            ),
            (
                CovarianceType::Spherical,
                "/covariances/0",
                1.1.into(),
                "covariances",
                &["component 0:", "disagree"],
            ),
            (
                CovarianceType::Spherical,
                "/covariances/0",
                (-1.0).into(),
                "covariances",
                &["entry 0 is -1, must be > 0"],
            ),
            (
                CovarianceType::Full,
                "/covariances",
                serde_json::json!([[1.0]]),
                "covariances",
                &[
                    "takes an array of n_components symmetric d x d matrices",
                    "got shape [1, 1]",
                ],
            ),
            (
                CovarianceType::Diag,
                "/means",
                serde_json::json!([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]),
                "means",
                &["rows have 3 numbers, n_features is 2"],
            ),
        ];
        for (c, pointer, value, key, fragments) in cases {
            let mut v = model_json(c);
            *v.pointer_mut(pointer)
                .unwrap_or_else(|| panic!("{pointer}")) = value;
            let e = match read(v) {
                Err(e) => e,
                Ok(_) => panic!("{c} {pointer}: accepted"),
            };
            assert_eq!(e.key, key, "{c} {pointer}: {e}");
            for f in fragments {
                assert!(e.message.contains(f), "{c} {pointer}: {e}");
            }
        }
    }

    #[test]
    fn the_model_file_check_is_the_config_check() {
        // Weights and covariances are held to the rules (and messages) of weights_init / covariances_init.
        let mut v = model_json(CovarianceType::Full);
        v["weights"] = serde_json::json!([0.5, 0.6, 0.0]);
        let from_model = read(v).unwrap_err();
        let from_config = crate::gmm::GmmParams::new(3)
            .weights_init(vec![0.5, 0.6, 0.0])
            .check()
            .unwrap_err();
        assert_eq!(from_model.message, from_config.message);
    }

    #[test]
    fn rounding_in_the_last_digits_is_tolerated() {
        // A covariance changed by 1e-7 relative still agrees with its precision to the tolerance; 1e-4
        // (above) does not.
        let mut v = model_json(CovarianceType::Tied);
        v["covariances"][1][1] = 1.5000001.into();
        assert!(read(v).is_ok());
    }
}

//! Hyper-parameters of a Gaussian mixture, unchecked (as read from a config) and checked.

use emvae_core::config::InvalidParam;
use emvae_core::linalg;
use serde::{Deserialize, Serialize};

use super::select::SelectParams;
use crate::online::OnlineParams;

/// Form of the component covariance matrices (scikit-learn's `covariance_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CovarianceType {
    /// Each component has its own general covariance matrix.
    #[default]
    Full,
    /// Each component has its own diagonal covariance matrix.
    Diag,
    /// All components share one general covariance matrix.
    Tied,
    /// Each component has its own single variance, `sigma_k^2 I`.
    Spherical,
}

impl CovarianceType {
    pub const ALL: [CovarianceType; 4] = [Self::Full, Self::Diag, Self::Tied, Self::Spherical];

    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Diag => "diag",
            Self::Tied => "tied",
            Self::Spherical => "spherical",
        }
    }

    /// Shape of the covariance (or precision) parameters for `k` components in `d` dimensions.
    pub fn shape(self, k: usize, d: usize) -> Vec<usize> {
        match self {
            Self::Full => vec![k, d, d],
            Self::Diag => vec![k, d],
            Self::Tied => vec![d, d],
            Self::Spherical => vec![k],
        }
    }

    /// Number of free covariance parameters.
    pub fn n_parameters(self, k: usize, d: usize) -> usize {
        match self {
            Self::Full => k * d * (d + 1) / 2,
            Self::Diag => k * d,
            Self::Tied => d * (d + 1) / 2,
            Self::Spherical => k,
        }
    }
}

impl std::fmt::Display for CovarianceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the responsibilities are initialised before the first M-step (scikit-learn's `init_params`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum InitMethod {
    /// k-means (k-means++ seeding, then Lloyd iterations); responsibilities are the cluster labels.
    #[default]
    #[serde(rename = "kmeans")]
    KMeans,
    /// k-means++ seeding only; the chosen points own their component.
    #[serde(rename = "k-means++")]
    KMeansPlusPlus,
    /// Responsibilities drawn uniformly at random, normalised per row.
    #[serde(rename = "random")]
    Random,
    /// `k` distinct data points drawn at random; each owns one component.
    #[serde(rename = "random_from_data")]
    RandomFromData,
}

/// An array-valued initial parameter as written in a config: a vector, a matrix or a stack of matrices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArrayInit {
    Vector(Vec<f64>),
    Matrix(Vec<Vec<f64>>),
    Stack(Vec<Vec<Vec<f64>>>),
}

impl ArrayInit {
    /// The shape and row-major values, or why the nesting is ragged.
    pub fn flatten(&self) -> Result<(Vec<usize>, Vec<f64>), String> {
        match self {
            ArrayInit::Vector(v) => Ok((vec![v.len()], v.clone())),
            ArrayInit::Matrix(m) => {
                let cols = m.first().map_or(0, Vec::len);
                if let Some(i) = m.iter().position(|r| r.len() != cols) {
                    return Err(format!(
                        "row {i} has {} entries, row 0 has {cols}",
                        m[i].len()
                    ));
                }
                Ok((vec![m.len(), cols], m.concat()))
            }
            ArrayInit::Stack(s) => {
                let rows = s.first().map_or(0, Vec::len);
                let cols = s.first().and_then(|m| m.first()).map_or(0, Vec::len);
                for (i, m) in s.iter().enumerate() {
                    if m.len() != rows || m.iter().any(|r| r.len() != cols) {
                        return Err(format!("matrix {i} is not {rows} x {cols} like matrix 0"));
                    }
                }
                Ok((
                    vec![s.len(), rows, cols],
                    s.iter().flat_map(|m| m.concat()).collect(),
                ))
            }
        }
    }
}

fn default_tol() -> f64 {
    1e-3
}
fn default_reg_covar() -> f64 {
    1e-6
}
fn default_max_iter() -> usize {
    100
}
fn default_one() -> usize {
    1
}
fn default_kmeans_max_iter() -> usize {
    300
}

/// Unchecked hyper-parameters of a Gaussian mixture: the `[gmm]` table of a config.
///
/// Field names and defaults follow scikit-learn's `GaussianMixture`. Turn them into
/// [`GmmValidParams`] with [`GmmParams::check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GmmParams {
    /// Number of mixture components `k`. Left out (0) when a [`SelectParams`] sweep chooses it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub n_components: usize,
    #[serde(default)]
    pub covariance_type: CovarianceType,
    /// EM stops when the average log-likelihood changes by less than `tol` (absolute).
    #[serde(default = "default_tol")]
    pub tol: f64,
    /// Added to the diagonal of every covariance, keeping them positive definite.
    #[serde(default = "default_reg_covar")]
    pub reg_covar: f64,
    /// EM iterations per initialisation.
    #[serde(default = "default_max_iter")]
    pub max_iter: usize,
    /// Number of initialisations; the one with the highest final log-likelihood is kept.
    #[serde(default = "default_one")]
    pub n_init: usize,
    #[serde(default)]
    pub init_params: InitMethod,
    /// Lloyd iterations of the k-means initialisation.
    #[serde(default = "default_kmeans_max_iter")]
    pub kmeans_max_iter: usize,
    /// Initial mixing weights `[k]`, summing to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_init: Option<Vec<f64>>,
    /// Initial means `[k, d]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub means_init: Option<Vec<Vec<f64>>>,
    /// Initial precisions (inverse covariances): `[k, d, d]` full, `[k, d]` diag, `[d, d]` tied,
    /// `[k]` spherical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precisions_init: Option<ArrayInit>,
    /// Initial covariances, shaped as `precisions_init` (give one or the other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covariances_init: Option<ArrayInit>,
    /// Online (mini-batch) EM settings, the `[gmm.online]` table, for
    /// [`GmmValidParams::fit_online`](crate::gmm::GmmValidParams::fit_online). Left out of the
    /// serialised form when absent, so batch EM's fingerprints do not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<OnlineParams>,
    /// A model-selection sweep, the `[gmm.select]` table, for
    /// [`GmmValidParams::select`](crate::gmm::GmmValidParams::select): one fit per candidate number of
    /// components (and covariance type), the best by BIC or AIC kept. Left out of the serialised form
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<SelectParams>,
    /// Seed of every random choice (initialisations, sampling). Set from the run's `seed`.
    #[serde(skip)]
    pub seed: u64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl GmmParams {
    /// Defaults for `n_components` components (scikit-learn's).
    pub fn new(n_components: usize) -> Self {
        Self {
            n_components,
            covariance_type: CovarianceType::default(),
            tol: default_tol(),
            reg_covar: default_reg_covar(),
            max_iter: default_max_iter(),
            n_init: 1,
            init_params: InitMethod::default(),
            kmeans_max_iter: default_kmeans_max_iter(),
            weights_init: None,
            means_init: None,
            precisions_init: None,
            covariances_init: None,
            online: None,
            select: None,
            seed: 0,
        }
    }

    pub fn covariance_type(mut self, c: CovarianceType) -> Self {
        self.covariance_type = c;
        self
    }
    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }
    pub fn reg_covar(mut self, reg: f64) -> Self {
        self.reg_covar = reg;
        self
    }
    pub fn max_iter(mut self, n: usize) -> Self {
        self.max_iter = n;
        self
    }
    pub fn n_init(mut self, n: usize) -> Self {
        self.n_init = n;
        self
    }
    pub fn init_params(mut self, m: InitMethod) -> Self {
        self.init_params = m;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    pub fn weights_init(mut self, w: Vec<f64>) -> Self {
        self.weights_init = Some(w);
        self
    }
    pub fn means_init(mut self, m: Vec<Vec<f64>>) -> Self {
        self.means_init = Some(m);
        self
    }
    pub fn precisions_init(mut self, p: ArrayInit) -> Self {
        self.precisions_init = Some(p);
        self
    }
    pub fn covariances_init(mut self, c: ArrayInit) -> Self {
        self.covariances_init = Some(c);
        self
    }
    pub fn online(mut self, o: OnlineParams) -> Self {
        self.online = Some(o);
        self
    }

    /// Validates everything that does not depend on the data; keys in errors are field names.
    pub fn check(&self) -> Result<GmmValidParams, InvalidParam> {
        let bad = |key: &str, msg: String| Err(InvalidParam::new(key, msg));
        if let Some(select) = &self.select {
            return self.check_selection(select);
        }
        let k = self.n_components;
        if k == 0 {
            return bad(
                "n_components",
                "must be given and at least 1 (or sweep several with [gmm.select] n_components = [...]), got 0"
                    .into(),
            );
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return bad(
                "tol",
                format!("must be a finite number >= 0, got {}", self.tol),
            );
        }
        if !(self.reg_covar.is_finite() && self.reg_covar >= 0.0) {
            return bad(
                "reg_covar",
                format!("must be a finite number >= 0, got {}", self.reg_covar),
            );
        }
        if self.max_iter == 0 {
            return bad("max_iter", "must be at least 1, got 0".into());
        }
        if self.n_init == 0 {
            return bad("n_init", "must be at least 1, got 0".into());
        }
        if self.kmeans_max_iter == 0 {
            return bad("kmeans_max_iter", "must be at least 1, got 0".into());
        }
        if let Some(online) = &self.online {
            online.check().map_err(|e| e.within("online"))?;
            if online.batch_size < k {
                return bad(
                    "online.batch_size",
                    format!(
                        "must be at least n_components = {k}, got {}: the first batch initialises the mixture",
                        online.batch_size
                    ),
                );
            }
        }
        let weights = match &self.weights_init {
            None => None,
            Some(w) => {
                check_weights(w, k, true).map_err(|e| InvalidParam::new("weights_init", e))?;
                Some(w.clone())
            }
        };
        let means = match &self.means_init {
            None => None,
            Some(m) => Some(check_means(m, k).map_err(|e| InvalidParam::new("means_init", e))?),
        };
        let (key, given) = match (&self.precisions_init, &self.covariances_init) {
            (Some(_), Some(_)) => {
                return bad(
                    "covariances_init",
                    "give precisions_init or covariances_init, not both".into(),
                );
            }
            (Some(p), None) => ("precisions_init", Some((p, InitKind::Precisions))),
            (None, Some(c)) => ("covariances_init", Some((c, InitKind::Covariances))),
            (None, None) => ("", None),
        };
        let second_moments = match given {
            None => None,
            Some((array, kind)) => Some(
                check_second_moments(
                    array,
                    kind,
                    self.covariance_type,
                    k,
                    means.as_ref().map(|m| (m.0, "means_init")),
                )
                .map_err(|e| InvalidParam::new(key, e))?,
            ),
        };
        Ok(GmmValidParams {
            params: self.clone(),
            weights_init: weights,
            means_init: means,
            second_moments_init: second_moments,
            candidates: Vec::new(),
        })
    }
}

/// Checks mixing weights: `k` finite numbers >= 0 summing to 1 (when `normalised`). Shared by
/// `weights_init` and the weights of a model file, so both are held to the same rules.
pub(crate) fn check_weights(w: &[f64], k: usize, normalised: bool) -> Result<(), String> {
    if w.len() != k {
        return Err(format!("has {} entries, n_components is {k}", w.len()));
    }
    if let Some(i) = w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
        return Err(format!("entry {i} is {}, weights must be >= 0", w[i]));
    }
    let sum: f64 = w.iter().sum();
    if normalised && (sum - 1.0).abs() > 1e-6 {
        return Err(format!("must sum to 1, sums to {sum}"));
    }
    Ok(())
}

/// Checks means: `k` rows of equal, non-zero length holding finite numbers. Returns `(d, row-major
/// values)`. Shared by `means_init` and the means of a model file.
pub(crate) fn check_means(m: &[Vec<f64>], k: usize) -> Result<(usize, Vec<f64>), String> {
    let (shape, values) = ArrayInit::Matrix(m.to_vec()).flatten()?;
    if shape[0] != k {
        return Err(format!("has {} rows, n_components is {k}", shape[0]));
    }
    if shape[1] == 0 {
        return Err("rows are empty".into());
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!("entry {i} is not finite"));
    }
    Ok((shape[1], values))
}

/// Whether an initial second-moment array holds precisions or covariances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitKind {
    Precisions,
    Covariances,
}

/// Initial precisions or covariances, validated (positive, symmetric positive definite) and flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondMomentsInit {
    pub kind: InitKind,
    /// Number of features implied by the array (`None` for spherical, which does not say).
    pub n_features: Option<usize>,
    pub values: Vec<f64>,
}

/// The shape of a second-moment array (precisions, covariances or Cholesky factors of precisions) for
/// `cov`: its number of features (`None` for spherical, which does not say) and its finite row-major
/// values. `what` describes the expected array; `d_means` is the width of the means and their key.
fn flatten_second_moments(
    array: &ArrayInit,
    cov: CovarianceType,
    k: usize,
    what: &str,
    d_means: Option<(usize, &str)>,
) -> Result<(Option<usize>, Vec<f64>), String> {
    let (shape, values) = array.flatten()?;
    let d = match (cov, shape.as_slice()) {
        (CovarianceType::Full, [kk, a, b]) if *kk == k && a == b => Some(*a),
        (CovarianceType::Diag, [kk, a]) if *kk == k => Some(*a),
        (CovarianceType::Tied, [a, b]) if a == b => Some(*a),
        (CovarianceType::Spherical, [kk]) if *kk == k => None,
        _ => {
            return Err(format!(
                "covariance_type = \"{cov}\" takes {what} (shape {:?} with k = {k}), got shape {shape:?}",
                cov.shape(k, 0)
                    .iter()
                    .map(|&s| if s == 0 {
                        "d".to_string()
                    } else {
                        s.to_string()
                    })
                    .collect::<Vec<_>>()
            ));
        }
    };
    if d == Some(0) {
        return Err("matrices are empty".into());
    }
    if let (Some(d), Some((dm, means_key))) = (d, d_means)
        && d != dm
    {
        return Err(format!(
            "is for {d} features but {means_key} rows have {dm}"
        ));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!("entry {i} is not finite"));
    }
    Ok((d, values))
}

/// Checks initial precisions or covariances (and the covariances of a model file): the shape for `cov`,
/// finite, positive variances, symmetric positive definite matrices.
pub(crate) fn check_second_moments(
    array: &ArrayInit,
    kind: InitKind,
    cov: CovarianceType,
    k: usize,
    d_means: Option<(usize, &str)>,
) -> Result<SecondMomentsInit, String> {
    let what = match cov {
        CovarianceType::Full => "an array of n_components symmetric d x d matrices",
        CovarianceType::Diag => "n_components rows of d positive numbers",
        CovarianceType::Tied => "one symmetric d x d matrix",
        CovarianceType::Spherical => "n_components positive numbers",
    };
    let (d, values) = flatten_second_moments(array, cov, k, what, d_means)?;
    match cov {
        CovarianceType::Diag | CovarianceType::Spherical => {
            if let Some(i) = values.iter().position(|v| *v <= 0.0) {
                return Err(format!("entry {i} is {}, must be > 0", values[i]));
            }
        }
        CovarianceType::Full | CovarianceType::Tied => {
            let d = d.unwrap_or(0);
            for (j, m) in values.chunks_exact(d * d).enumerate() {
                let which = if cov == CovarianceType::Tied {
                    "the matrix".to_string()
                } else {
                    format!("matrix {j}")
                };
                if linalg::asymmetry(m, d) > 1e-10 {
                    return Err(format!("{which} is not symmetric"));
                }
                if linalg::cholesky_lower(m, d).is_err() {
                    return Err(format!("{which} is not positive definite"));
                }
            }
        }
    }
    Ok(SecondMomentsInit {
        kind,
        n_features: d,
        values,
    })
}

/// Checks Cholesky factors of precisions as a model file stores them: shaped for `cov` with `d`
/// features, finite; for full and tied each factor triangular (upper as fitted from covariances, or lower
/// as factored from given precisions) with a diagonal > 0; for diag and spherical > 0. The E-step takes
/// `log|P| = sum_i log P_ii`, which is the log-determinant only of such a factor: anything else gives a
/// NaN or a wrong likelihood instead of an error.
pub(crate) fn check_precisions_cholesky(
    array: &ArrayInit,
    cov: CovarianceType,
    k: usize,
    d: usize,
) -> Result<Vec<f64>, String> {
    let what = match cov {
        CovarianceType::Full => "an array of n_components triangular d x d matrices",
        CovarianceType::Diag => "n_components rows of d positive numbers",
        CovarianceType::Tied => "one triangular d x d matrix",
        CovarianceType::Spherical => "n_components positive numbers",
    };
    let (_, values) = flatten_second_moments(array, cov, k, what, Some((d, "means")))?;
    match cov {
        CovarianceType::Diag | CovarianceType::Spherical => {
            if let Some(i) = values.iter().position(|v| *v <= 0.0) {
                return Err(format!("entry {i} is {}, must be > 0", values[i]));
            }
        }
        CovarianceType::Full | CovarianceType::Tied => {
            for (j, m) in values.chunks_exact(d * d).enumerate() {
                let which = if cov == CovarianceType::Tied {
                    "the matrix".to_string()
                } else {
                    format!("matrix {j}")
                };
                let lower = (0..d).all(|a| (a + 1..d).all(|b| m[a * d + b] == 0.0));
                let upper = (0..d).all(|a| (0..a).all(|b| m[a * d + b] == 0.0));
                if !(lower || upper) {
                    return Err(format!(
                        "{which} is not triangular: a Cholesky factor has zeros above or below its diagonal"
                    ));
                }
                if let Some(a) = (0..d).find(|&a| m[a * d + a] <= 0.0) {
                    return Err(format!(
                        "{which} has {} on its diagonal (entry [{a}][{a}]): a Cholesky factor's diagonal must be > 0",
                        m[a * d + a]
                    ));
                }
            }
        }
    }
    Ok(values)
}

/// Checked hyper-parameters: what [`GmmValidParams::fit`](crate::gmm::GmmValidParams) runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct GmmValidParams {
    params: GmmParams,
    /// Validated explicit initial values.
    pub(crate) weights_init: Option<Vec<f64>>,
    /// `(d, row-major [k, d])`.
    pub(crate) means_init: Option<(usize, Vec<f64>)>,
    pub(crate) second_moments_init: Option<SecondMomentsInit>,
    /// A `[gmm.select]` sweep's candidates, each checked; empty for a single mixture.
    candidates: Vec<GmmValidParams>,
}

impl GmmValidParams {
    /// A sweep over `candidates` (already checked), from `params` holding its `[gmm.select]`.
    pub(crate) fn sweep(params: GmmParams, candidates: Vec<GmmValidParams>) -> Self {
        Self {
            params,
            weights_init: None,
            means_init: None,
            second_moments_init: None,
            candidates,
        }
    }
    /// The candidates of a `[gmm.select]` sweep (empty for a single mixture).
    pub fn candidates(&self) -> &[GmmValidParams] {
        &self.candidates
    }
    /// The criterion of a `[gmm.select]` sweep; `None` for a single mixture.
    pub fn selection_criterion(&self) -> Option<crate::gmm::Criterion> {
        self.params.select.as_ref().map(|s| s.criterion)
    }
    pub fn params(&self) -> &GmmParams {
        &self.params
    }
    pub fn n_components(&self) -> usize {
        self.params.n_components
    }
    pub fn covariance_type(&self) -> CovarianceType {
        self.params.covariance_type
    }
    /// Whether weights, means and precisions are all given, so no random initialisation happens.
    pub fn fully_specified_init(&self) -> bool {
        self.weights_init.is_some()
            && self.means_init.is_some()
            && self.second_moments_init.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_scikit_learn() {
        let p: GmmParams = toml::from_str("n_components = 3").unwrap();
        assert_eq!(p, GmmParams::new(3));
        assert_eq!(p.tol, 1e-3);
        assert_eq!(p.reg_covar, 1e-6);
        assert_eq!(p.max_iter, 100);
        assert_eq!(p.covariance_type, CovarianceType::Full);
        assert_eq!(p.init_params, InitMethod::KMeans);
        assert!(p.check().is_ok());
    }

    #[test]
    fn check_names_the_bad_key() {
        let e = GmmParams::new(0).check().unwrap_err();
        assert_eq!(e.key, "n_components");
        let e = GmmParams::new(2).tol(-1.0).check().unwrap_err();
        assert_eq!(e.key, "tol");
        let e = GmmParams::new(2)
            .weights_init(vec![0.5, 0.6])
            .check()
            .unwrap_err();
        assert_eq!(e.key, "weights_init");
        let e = GmmParams::new(2)
            .means_init(vec![vec![0.0, 1.0], vec![1.0]])
            .check()
            .unwrap_err();
        assert_eq!(e.key, "means_init");
        let e = GmmParams::new(2)
            .precisions_init(ArrayInit::Stack(vec![
                vec![vec![1.0, 0.0], vec![0.0, 1.0]],
                vec![vec![1.0, 2.0], vec![2.0, 1.0]],
            ]))
            .check()
            .unwrap_err();
        assert!(
            e.message.contains("matrix 1 is not positive definite"),
            "{e}"
        );
        let e = GmmParams::new(2)
            .covariance_type(CovarianceType::Diag)
            .precisions_init(ArrayInit::Vector(vec![1.0, 1.0]))
            .check()
            .unwrap_err();
        assert!(e.message.contains("shape"), "{e}");
    }

    #[test]
    fn init_methods_parse_by_scikit_learn_names() {
        for (s, m) in [
            ("kmeans", InitMethod::KMeans),
            ("k-means++", InitMethod::KMeansPlusPlus),
            ("random", InitMethod::Random),
            ("random_from_data", InitMethod::RandomFromData),
        ] {
            let p: GmmParams =
                toml::from_str(&format!("n_components = 1\ninit_params = \"{s}\"")).unwrap();
            assert_eq!(p.init_params, m);
        }
    }
}

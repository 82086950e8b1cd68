//! Hyper-parameters of a linear-Gaussian model, unchecked (as read from a config) and checked.

use emvae_core::config::InvalidParam;
use emvae_core::data::Dataset;
use serde::{Deserialize, Serialize};

use crate::EmError;
use crate::driver::Acceleration;

/// The noise model `eps ~ N(0, Psi)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Noise {
    /// `Psi = sigma^2 I`: probabilistic PCA (Tipping and Bishop 1999).
    #[default]
    Isotropic,
    /// `Psi = diag(psi_1, ..., psi_d)`: factor analysis.
    Diagonal,
}

impl Noise {
    pub fn name(self) -> &'static str {
        match self {
            Self::Isotropic => "isotropic",
            Self::Diagonal => "diagonal",
        }
    }
}

impl std::fmt::Display for Noise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The starting point of EM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinearInit {
    /// The closed-form pPCA maximum likelihood (eigenvectors of the covariance); for diagonal noise
    /// `psi_j` is the part of feature `j`'s variance the loadings leave unexplained. Deterministic,
    /// and already the optimum for isotropic noise.
    #[default]
    Pca,
    /// Normal loadings whose rows' squares sum to about half the average feature variance, and noise
    /// variances of half each feature's variance (isotropic: of the average); drawn from the seed and
    /// the restart.
    Random,
}

fn default_max_iter() -> usize {
    10_000
}
fn default_tol() -> f64 {
    1e-8
}
fn default_one() -> usize {
    1
}
fn default_noise_floor() -> f64 {
    1e-12
}

/// Unchecked hyper-parameters of probabilistic PCA / factor analysis,
/// `x = W z + mu + eps`, `z ~ N(0, I_q)`, as read from a config table.
///
/// Turn them into [`LinearGaussianValidParams`] with [`LinearGaussianParams::check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearGaussianParams {
    /// Latent dimensions `q` (scikit-learn's `n_components`), `1 <= q < d`.
    pub n_components: usize,
    #[serde(default)]
    pub noise: Noise,
    /// EM iterations per initialisation.
    #[serde(default = "default_max_iter")]
    pub max_iter: usize,
    /// EM stops when the average log-likelihood changes by less than `tol` (nats per sample).
    #[serde(default = "default_tol")]
    pub tol: f64,
    /// Initialisations; the one with the highest final log-likelihood is kept.
    #[serde(default = "default_one")]
    pub n_init: usize,
    #[serde(default)]
    pub init: LinearInit,
    #[serde(default)]
    pub acceleration: Acceleration,
    /// Smallest noise variance, relative to the average feature variance `tr(S) / d`: keeps `Psi`
    /// invertible when a feature is (nearly) explained by the factors (a Heywood case), as
    /// scikit-learn's `FactorAnalysis` floors at 1e-12.
    #[serde(default = "default_noise_floor")]
    pub noise_floor: f64,
    /// Seed of every random choice (random initialisation, sampling). Set from the run's `seed`.
    #[serde(skip)]
    pub seed: u64,
}

impl LinearGaussianParams {
    /// Defaults for `n_components` latent dimensions: isotropic noise (pPCA), PCA initialisation.
    pub fn new(n_components: usize) -> Self {
        Self {
            n_components,
            noise: Noise::default(),
            max_iter: default_max_iter(),
            tol: default_tol(),
            n_init: 1,
            init: LinearInit::default(),
            acceleration: Acceleration::default(),
            noise_floor: default_noise_floor(),
            seed: 0,
        }
    }

    pub fn noise(mut self, noise: Noise) -> Self {
        self.noise = noise;
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
    pub fn init(mut self, init: LinearInit) -> Self {
        self.init = init;
        self
    }
    pub fn acceleration(mut self, a: Acceleration) -> Self {
        self.acceleration = a;
        self
    }
    pub fn noise_floor(mut self, floor: f64) -> Self {
        self.noise_floor = floor;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Validates everything that does not depend on the data; keys in errors are field names.
    pub fn check(&self) -> Result<LinearGaussianValidParams, InvalidParam> {
        let bad = |key: &str, msg: String| Err(InvalidParam::new(key, msg));
        if self.n_components == 0 {
            return bad("n_components", "must be at least 1, got 0".into());
        }
        if self.max_iter == 0 {
            return bad("max_iter", "must be at least 1, got 0".into());
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return bad(
                "tol",
                format!("must be a finite number >= 0, got {}", self.tol),
            );
        }
        if self.n_init == 0 {
            return bad("n_init", "must be at least 1, got 0".into());
        }
        if self.n_init > 1 && self.init == LinearInit::Pca {
            return bad(
                "n_init",
                format!(
                    "is {}, but init = \"pca\" is deterministic: every restart would be the same fit; \
                     use init = \"random\" for restarts",
                    self.n_init
                ),
            );
        }
        if !(self.noise_floor.is_finite() && self.noise_floor > 0.0 && self.noise_floor < 1.0) {
            return bad(
                "noise_floor",
                format!(
                    "must be a number > 0 and < 1 (a fraction of the average feature variance), got {}",
                    self.noise_floor
                ),
            );
        }
        Ok(LinearGaussianValidParams {
            params: self.clone(),
        })
    }
}

/// Checked hyper-parameters: what [`LinearGaussianValidParams::fit`] runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearGaussianValidParams {
    params: LinearGaussianParams,
}

impl LinearGaussianValidParams {
    pub fn params(&self) -> &LinearGaussianParams {
        &self.params
    }
    pub fn n_components(&self) -> usize {
        self.params.n_components
    }
    pub fn noise(&self) -> Noise {
        self.params.noise
    }

    /// Checks the data's shape: more features than latent dimensions, at least 2 rows, and more than
    /// `q + 1`.
    pub(crate) fn check_shape(&self, data: &Dataset) -> Result<(), EmError> {
        let (n, d, q) = (data.n_rows(), data.n_cols(), self.n_components());
        if q >= d {
            return Err(InvalidParam::new(
                "n_components",
                format!(
                    "is {q} but the data has {d} features: the latent dimension must be smaller than \
                     the number of features (at most {})",
                    d.saturating_sub(1)
                ),
            )
            .into());
        }
        if n < 2 {
            return Err(data
                .error(format!("{n} rows: a covariance needs at least 2 rows"))
                .into());
        }
        if n < q + 2 {
            // n rows span at most n - 1 dimensions: W W^T alone fits them and the noise variance's
            // maximum likelihood is 0, an unbounded likelihood.
            return Err(data
                .error(format!(
                    "{n} rows, but n_components = {q} latent dimensions fit any {} rows exactly (they \
                     span at most {q} dimensions) and the likelihood is unbounded: use at least {} rows \
                     or fewer n_components",
                    q + 1,
                    q + 2
                ))
                .into());
        }
        Ok(())
    }

    /// Checks that the data suits these parameters: more features than latent dimensions
    /// (`n_components`), at least 2 rows and at least `n_components + 2` (fewer span a space the
    /// latent dimensions fit exactly), finite values.
    pub fn check_data(&self, data: &Dataset) -> Result<(), EmError> {
        self.check_shape(data)?;
        check_finite(data)
    }
}

/// The first non-finite value of the data, as an error naming its row and column.
pub(crate) fn check_finite(data: &Dataset) -> Result<(), EmError> {
    let d = data.n_cols().max(1);
    match data.x.values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(k) => Err(data
            .row_error(
                k / d,
                format!(
                    "column {} is {}: the data must be finite",
                    k % d + 1,
                    data.x.values[k]
                ),
            )
            .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emvae_core::data::Matrix;

    #[test]
    fn defaults_and_names() {
        let p: LinearGaussianParams = toml::from_str("n_components = 3").unwrap();
        assert_eq!(p, LinearGaussianParams::new(3));
        assert_eq!((p.max_iter, p.tol, p.n_init), (10_000, 1e-8, 1));
        assert_eq!((p.noise, p.init), (Noise::Isotropic, LinearInit::Pca));
        let p: LinearGaussianParams = toml::from_str(
            "n_components = 2\nnoise = \"diagonal\"\ninit = \"random\"\nacceleration = \"squarem\"",
        )
        .unwrap();
        assert_eq!(p.noise, Noise::Diagonal);
        assert_eq!(p.init, LinearInit::Random);
        assert_eq!(p.acceleration, Acceleration::Squarem);
        let e = toml::from_str::<LinearGaussianParams>("n_components = 2\nnoize = \"diagonal\"");
        assert!(e.unwrap_err().to_string().contains("noize"));
    }

    #[test]
    fn check_names_the_bad_key() {
        let key = |p: LinearGaussianParams| p.check().unwrap_err().key;
        assert_eq!(key(LinearGaussianParams::new(0)), "n_components");
        assert_eq!(key(LinearGaussianParams::new(1).max_iter(0)), "max_iter");
        assert_eq!(key(LinearGaussianParams::new(1).tol(f64::NAN)), "tol");
        assert_eq!(key(LinearGaussianParams::new(1).n_init(0)), "n_init");
        assert_eq!(key(LinearGaussianParams::new(1).n_init(3)), "n_init");
        assert_eq!(
            key(LinearGaussianParams::new(1).noise_floor(0.0)),
            "noise_floor"
        );
        assert!(
            LinearGaussianParams::new(1)
                .n_init(3)
                .init(LinearInit::Random)
                .check()
                .is_ok()
        );
    }

    #[test]
    fn bad_data_is_named() {
        let valid = LinearGaussianParams::new(3).check().unwrap();
        let data = |n: usize, d: usize| Dataset::new(Matrix::new(n, d, vec![0.5; n * d]), "x.csv");
        match valid.check_data(&data(10, 3)) {
            Err(EmError::InvalidParam(e)) => {
                assert_eq!(e.key, "n_components");
                assert!(e.message.contains("3 features"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        match valid.check_data(&data(1, 5)) {
            Err(EmError::Data(e)) => assert!(e.to_string().contains("at least 2 rows"), "{e}"),
            other => panic!("{other:?}"),
        }
        let mut bad = data(5, 5);
        bad.x.values[2 * 5 + 3] = f64::NAN;
        match valid.check_data(&bad) {
            Err(EmError::Data(e)) => {
                let m = e.to_string();
                assert!(m.contains("row 2") && m.contains("column 4"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        match valid.check_data(&data(4, 5)) {
            Err(EmError::Data(e)) => assert!(e.to_string().contains("at least 5 rows"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(valid.check_data(&data(5, 5)).is_ok());
    }
}

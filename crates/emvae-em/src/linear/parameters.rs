//! Parameters of a linear-Gaussian model on the host, and their JSON form (model files and
//! checkpoints).

use emvae_core::config::InvalidParam;
use serde::{Deserialize, Serialize};

use super::params::Noise;

/// `x = W z + mu + eps`, `z ~ N(0, I_q)`, `eps ~ N(0, Psi)`: so `x ~ N(mu, W W^T + Psi)`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearParameters {
    pub noise: Noise,
    /// `d`.
    pub n_features: usize,
    /// `q`.
    pub n_components: usize,
    /// `W`, row-major `[d, q]`.
    pub loadings: Vec<f64>,
    /// `mu`, `[d]`.
    pub mean: Vec<f64>,
    /// The diagonal of `Psi`, `[d]`; all equal (`sigma^2`) for isotropic noise.
    pub noise_variances: Vec<f64>,
}

impl LinearParameters {
    /// Number of free parameters: `W` up to rotation (`d q - q (q - 1) / 2`), `mu` (`d`) and the noise
    /// (1 for isotropic, `d` for diagonal).
    pub fn n_parameters(&self) -> usize {
        let (d, q) = (self.n_features, self.n_components);
        let noise = match self.noise {
            Noise::Isotropic => 1,
            Noise::Diagonal => d,
        };
        d * q + d + noise - q * (q.saturating_sub(1)) / 2
    }

    /// `C = W W^T + Psi`, row-major `[d, d]`.
    pub fn covariance(&self) -> Vec<f64> {
        let (d, q) = (self.n_features, self.n_components);
        let w = &self.loadings;
        let mut c = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..=i {
                let s: f64 = (0..q).map(|k| w[i * q + k] * w[j * q + k]).sum();
                c[i * d + j] = s;
                c[j * d + i] = s;
            }
            c[i * d + i] += self.noise_variances[i];
        }
        c
    }

    /// The parameters as one vector `[W, mu, log Psi]` (`log sigma^2` alone when isotropic), for SQUAREM.
    /// On log variances every extrapolated point has positive variances, and SQUAREM's steps are
    /// accepted more often: on the pPCA reference data from a random start it needs 254 E-steps to
    /// converge at `tol = 1e-12`, against 542 extrapolating the variances themselves (plain EM: 981).
    pub(crate) fn to_vector(&self) -> Vec<f64> {
        let mut v = Vec::with_capacity(self.loadings.len() + 2 * self.n_features);
        v.extend_from_slice(&self.loadings);
        v.extend_from_slice(&self.mean);
        match self.noise {
            Noise::Isotropic => v.push(self.noise_variances[0].ln()),
            Noise::Diagonal => v.extend(self.noise_variances.iter().map(|s| s.ln())),
        }
        v
    }

    /// The inverse of [`Self::to_vector`] for parameters shaped as `like`; `None` when the length is
    /// wrong, a value is not finite, or a noise variance is below `floor` (outside the parameter space
    /// EM works in).
    pub(crate) fn from_vector(like: &Self, v: &[f64], floor: f64) -> Option<Self> {
        let (d, q) = (like.n_features, like.n_components);
        let n_noise = match like.noise {
            Noise::Isotropic => 1,
            Noise::Diagonal => d,
        };
        if v.len() != d * q + d + n_noise || v.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let noise: Vec<f64> = v[d * q + d..].iter().map(|x| x.exp()).collect();
        if noise
            .iter()
            .any(|&s| !(s >= floor && s > 0.0 && s.is_finite()))
        {
            return None;
        }
        Some(Self {
            noise: like.noise,
            n_features: d,
            n_components: q,
            loadings: v[..d * q].to_vec(),
            mean: v[d * q..d * q + d].to_vec(),
            noise_variances: match like.noise {
                Noise::Isotropic => vec![noise[0]; d],
                Noise::Diagonal => noise,
            },
        })
    }
}

/// The JSON form of [`LinearParameters`]: `loadings` as `d` rows of `q`, and `noise_variance` as one
/// number (isotropic) or `d` (diagonal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearParametersJson {
    pub noise: Noise,
    pub n_features: usize,
    pub n_components: usize,
    pub loadings: Vec<Vec<f64>>,
    pub mean: Vec<f64>,
    pub noise_variance: Vec<f64>,
}

impl From<&LinearParameters> for LinearParametersJson {
    fn from(p: &LinearParameters) -> Self {
        let q = p.n_components.max(1);
        Self {
            noise: p.noise,
            n_features: p.n_features,
            n_components: p.n_components,
            loadings: p.loadings.chunks(q).map(<[f64]>::to_vec).collect(),
            mean: p.mean.clone(),
            noise_variance: match p.noise {
                Noise::Isotropic => p.noise_variances.iter().take(1).copied().collect(),
                Noise::Diagonal => p.noise_variances.clone(),
            },
        }
    }
}

/// Validates parameters as read from a file; errors name the field.
impl TryFrom<&LinearParametersJson> for LinearParameters {
    type Error = InvalidParam;
    fn try_from(j: &LinearParametersJson) -> Result<Self, InvalidParam> {
        let (d, q) = (j.n_features, j.n_components);
        let bad = |key: &str, msg: String| Err(InvalidParam::new(key, msg));
        if q == 0 || q >= d {
            return bad(
                "n_components",
                format!("is {q} with n_features = {d}: must be at least 1 and below n_features"),
            );
        }
        if j.loadings.len() != d {
            return bad(
                "loadings",
                format!("has {} rows, n_features is {d}", j.loadings.len()),
            );
        }
        if let Some(i) = j.loadings.iter().position(|r| r.len() != q) {
            return bad(
                "loadings",
                format!(
                    "row {i} has {} entries, n_components is {q}",
                    j.loadings[i].len()
                ),
            );
        }
        let loadings = j.loadings.concat();
        if let Some(k) = loadings.iter().position(|v| !v.is_finite()) {
            return bad("loadings", format!("row {} is not finite", k / q));
        }
        if j.mean.len() != d {
            return bad(
                "mean",
                format!("has {} entries, n_features is {d}", j.mean.len()),
            );
        }
        if let Some(i) = j.mean.iter().position(|v| !v.is_finite()) {
            return bad("mean", format!("entry {i} is not finite"));
        }
        let expected = match j.noise {
            Noise::Isotropic => 1,
            Noise::Diagonal => d,
        };
        if j.noise_variance.len() != expected {
            return bad(
                "noise_variance",
                format!(
                    "has {} entries; noise = \"{}\" takes {expected}",
                    j.noise_variance.len(),
                    j.noise
                ),
            );
        }
        if let Some(i) = j
            .noise_variance
            .iter()
            .position(|v| !(v.is_finite() && *v > 0.0))
        {
            return bad(
                "noise_variance",
                format!(
                    "entry {i} is {}, variances must be finite and > 0",
                    j.noise_variance[i]
                ),
            );
        }
        Ok(Self {
            noise: j.noise,
            n_features: d,
            n_components: q,
            loadings,
            mean: j.mean.clone(),
            noise_variances: match j.noise {
                Noise::Isotropic => vec![j.noise_variance[0]; d],
                Noise::Diagonal => j.noise_variance.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(noise: Noise) -> LinearParameters {
        LinearParameters {
            noise,
            n_features: 3,
            n_components: 2,
            loadings: vec![1.0, 0.5, -0.25, 2.0, 0.1, 0.2],
            mean: vec![0.0, 1.0, -1.0],
            noise_variances: match noise {
                Noise::Isotropic => vec![0.3; 3],
                Noise::Diagonal => vec![0.3, 0.1, 0.7],
            },
        }
    }

    #[test]
    fn json_and_vector_forms_round_trip() {
        for noise in [Noise::Isotropic, Noise::Diagonal] {
            let p = example(noise);
            let j = LinearParametersJson::from(&p);
            let text = serde_json::to_string(&j).unwrap();
            let back: LinearParametersJson = serde_json::from_str(&text).unwrap();
            assert_eq!(LinearParameters::try_from(&back).unwrap(), p);
            let v = p.to_vector();
            assert_eq!(
                v.len(),
                6 + 3 + if noise == Noise::Isotropic { 1 } else { 3 }
            );
            let back = LinearParameters::from_vector(&p, &v, 0.0).unwrap();
            assert_eq!((&back.loadings, &back.mean), (&p.loadings, &p.mean));
            for (a, b) in back.noise_variances.iter().zip(&p.noise_variances) {
                assert!((a - b).abs() < 1e-15, "{a} vs {b}");
            }
            // Log variances: the last entry is log 0.3 (isotropic) or log 0.7.
            let last = *v.last().unwrap();
            assert!((last.exp() - p.noise_variances[2]).abs() < 1e-15);
            let mut huge = v.clone();
            *huge.last_mut().unwrap() = 800.0;
            assert_eq!(
                LinearParameters::from_vector(&p, &huge, 0.0),
                None,
                "exp overflows"
            );
            let mut nan = v.clone();
            nan[0] = f64::NAN;
            assert_eq!(LinearParameters::from_vector(&p, &nan, 0.0), None);
            assert_eq!(
                LinearParameters::from_vector(&p, &v, 0.5),
                None,
                "below the floor"
            );
            assert_eq!(
                LinearParameters::from_vector(&p, &v[1..], 0.0),
                None,
                "too short"
            );
        }
        // pPCA: 3 * 2 + 3 + 1 - 1; FA: 3 * 2 + 6 - 1.
        assert_eq!(example(Noise::Isotropic).n_parameters(), 9);
        assert_eq!(example(Noise::Diagonal).n_parameters(), 11);
    }

    #[test]
    fn invalid_files_name_the_key() {
        let key = |f: &dyn Fn(&mut LinearParametersJson)| {
            let mut j = LinearParametersJson::from(&example(Noise::Diagonal));
            f(&mut j);
            LinearParameters::try_from(&j).unwrap_err().key
        };
        assert_eq!(key(&|j| j.n_components = 3), "n_components");
        assert_eq!(key(&|j| j.loadings[1].pop().map_or((), drop)), "loadings");
        assert_eq!(key(&|j| j.loadings[2][0] = f64::NAN), "loadings");
        assert_eq!(key(&|j| j.mean.push(0.0)), "mean");
        assert_eq!(key(&|j| j.noise_variance[1] = 0.0), "noise_variance");
        assert_eq!(key(&|j| j.noise = Noise::Isotropic), "noise_variance");
    }
}

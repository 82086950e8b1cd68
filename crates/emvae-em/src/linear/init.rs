//! The closed-form maximum likelihood of probabilistic PCA, and EM's starting points.

use emvae_core::linalg::symmetric_eigen;
use emvae_core::rng::rng_for;
use rand_distr::{Distribution, StandardNormal};

use super::parameters::LinearParameters;
use super::params::{LinearInit, Noise};
use super::stats::SufficientStats;
use crate::EmError;

/// The maximum-likelihood pPCA (Tipping and Bishop 1999, eq. 7-8) of data with statistics `stats`:
/// with `S = U Lambda U^T` (eigenvalues descending),
/// ```text
/// sigma^2 = 1/(d - q) sum_{k > q} lambda_k,    W = U_q (Lambda_q - sigma^2 I)^(1/2),    mu = xbar,
/// ```
/// unique up to a rotation of `W` from the right. `sigma^2` is at least `min_variance`; with
/// `min_variance = 0` a covariance of rank `q` or less (the likelihood is unbounded: `sigma^2` is zero
/// to rounding) is an error.
pub fn ppca_closed_form(
    stats: &SufficientStats,
    n_components: usize,
    min_variance: f64,
) -> Result<LinearParameters, EmError> {
    let (d, q) = (stats.d, n_components);
    if q == 0 || q >= d {
        return Err(emvae_core::config::InvalidParam::new(
            "n_components",
            format!(
                "is {q} with {d} features: must be at least 1 and below the number of features"
            ),
        )
        .into());
    }
    let eig = symmetric_eigen(&stats.covariance, d).map_err(|e| EmError::IllConditioned {
        component: None,
        message: format!(
            "the data covariance has no eigendecomposition ({e}): is the data finite?"
        ),
    })?;
    let discarded = eig.values[q..].iter().sum::<f64>() / (d - q) as f64;
    // Below rounding of the largest eigenvalue, what is left is zero.
    let zero = discarded <= d as f64 * f64::EPSILON * eig.values[0].max(0.0);
    let sigma2 = if zero {
        min_variance
    } else {
        discarded.max(min_variance)
    };
    if !(sigma2 > 0.0 && sigma2.is_finite()) {
        return Err(EmError::IllConditioned {
            component: None,
            message: format!(
                "the data lie in a subspace of dimension {q} or less: the pPCA noise variance is {sigma2:e} \
                 and the likelihood is unbounded; use fewer n_components"
            ),
        });
    }
    let mut loadings = vec![0.0; d * q];
    for k in 0..q {
        // Rounding can leave lambda_k a hair below sigma^2 when they are (nearly) equal.
        let scale = (eig.values[k] - sigma2).max(0.0).sqrt();
        for j in 0..d {
            loadings[j * q + k] = eig.vectors[j * d + k] * scale;
        }
    }
    Ok(LinearParameters {
        noise: Noise::Isotropic,
        n_features: d,
        n_components: q,
        loadings,
        mean: stats.mean.clone(),
        noise_variances: vec![sigma2; d],
    })
}

/// EM's starting point for restart `restart`, every noise variance at least `floor`.
pub(crate) fn initial_parameters(
    stats: &SufficientStats,
    n_components: usize,
    noise: Noise,
    init: LinearInit,
    floor: f64,
    seed: u64,
    restart: usize,
) -> Result<LinearParameters, EmError> {
    let (d, q) = (stats.d, n_components);
    let variance = |j: usize| stats.covariance[j * d + j];
    let mut p = match init {
        LinearInit::Pca => ppca_closed_form(stats, q, floor)?,
        LinearInit::Random => {
            let mut rng = rng_for(seed, b"linear-init", restart as u64);
            let scale = (stats.total_variance() / d as f64 / (2.0 * q as f64)).sqrt();
            let loadings = (0..d * q)
                .map(|_| scale * Distribution::<f64>::sample(&StandardNormal, &mut rng))
                .collect();
            LinearParameters {
                noise,
                n_features: d,
                n_components: q,
                loadings,
                mean: stats.mean.clone(),
                noise_variances: (0..d).map(|j| variance(j) / 2.0).collect(),
            }
        }
    };
    p.noise = noise;
    p.noise_variances = match (noise, init) {
        // The pPCA fit's sigma^2 is already a common variance.
        (Noise::Isotropic, LinearInit::Pca) => p.noise_variances,
        (Noise::Isotropic, LinearInit::Random) => {
            vec![stats.total_variance() / (2.0 * d as f64); d]
        }
        // What the loadings leave unexplained of each feature's variance: diag(S - W W^T).
        (Noise::Diagonal, LinearInit::Pca) => (0..d)
            .map(|j| variance(j) - (0..q).map(|k| p.loadings[j * q + k].powi(2)).sum::<f64>())
            .collect(),
        (Noise::Diagonal, LinearInit::Random) => p.noise_variances,
    };
    for v in &mut p.noise_variances {
        *v = v.max(floor);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linear::em::average_log_likelihood;
    use emvae_core::data::Matrix;

    /// The reference data: 2000 rows, 8 features, q = 3, with its maximum-likelihood sigma^2 and
    /// average log-likelihood.
    pub(crate) fn reference() -> (Matrix, usize, f64, f64) {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/ppca_reference.json"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let rows: Vec<Vec<f64>> = serde_json::from_value(v["X"].clone()).unwrap();
        let q = v["q"].as_u64().unwrap() as usize;
        (
            Matrix::from_rows(&rows),
            q,
            v["sigma2_ml"].as_f64().unwrap(),
            v["avg_loglik_ml"].as_f64().unwrap(),
        )
    }

    #[test]
    fn closed_form_matches_the_reference_maximum() {
        let (x, q, sigma2, loglik) = reference();
        let stats = SufficientStats::from_matrix(&x);
        let p = ppca_closed_form(&stats, q, 0.0).unwrap();
        assert!(
            (p.noise_variances[0] - sigma2).abs() < 1e-12,
            "{}",
            p.noise_variances[0]
        );
        let ll = average_log_likelihood(&stats, &p).unwrap();
        assert!((ll - loglik).abs() < 1e-9, "{ll} vs {loglik}");
        // A stationary point: one EM step from the optimum does not move it.
        let (_, e) = super::super::em::e_step(&stats, &p).unwrap();
        let next = super::super::em::m_step(&stats, &e, Noise::Isotropic, 0.0).unwrap();
        assert!((next.noise_variances[0] - sigma2).abs() < 1e-12);
        let c0 = p.covariance();
        let c1 = next.covariance();
        assert!(c0.iter().zip(&c1).all(|(a, b)| (a - b).abs() < 1e-10));
    }

    #[test]
    fn a_covariance_of_rank_q_is_refused_unless_floored() {
        // Three points span a plane: with q = 2 nothing is left for the noise.
        let x = Matrix::new(3, 3, vec![0.0, 1.0, 2.0, 1.0, 0.0, 1.0, 2.0, 2.0, 0.0]);
        let stats = SufficientStats::from_matrix(&x);
        match ppca_closed_form(&stats, 2, 0.0) {
            Err(EmError::IllConditioned { message, .. }) => {
                assert!(message.contains("unbounded"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let p = ppca_closed_form(&stats, 2, 1e-6).unwrap();
        assert_eq!(p.noise_variances, vec![1e-6; 3]);
    }
}

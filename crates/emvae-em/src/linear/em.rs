//! The E-step, M-step and log-likelihood of a linear-Gaussian model, on the sufficient statistics.
//!
//! With `B = Psi^-1 W` (`d x q`) and `M = I_q + W^T Psi^-1 W` (`q x q`), Woodbury and the matrix
//! determinant lemma give, for `C = W W^T + Psi`,
//! ```text
//! C^-1 = Psi^-1 - B M^-1 B^T,    log|C| = log|M| + sum_j log psi_j,
//! ```
//! so nothing `d x d` is inverted; the one O(d^2 q) product per iteration is `S B`.
//!
//! The posterior is `z | x ~ N(G (x - mu), M^-1)` with `G = M^-1 B^T`. Averaged over the data, the
//! expected statistics the M-step needs are `S G^T = avg (x - xbar) E[z]^T` and
//! `Szz = M^-1 + G S G^T = avg E[z z^T] - avg E[z] avg E[z]^T`. The M-step (Ghahramani and Hinton 1996;
//! for isotropic noise Tipping and Bishop 1999) is
//! ```text
//! W' = S G^T Szz^-1,   psi'_j = (S - W' G S)_jj   (isotropic: sigma'^2 = tr(S - W' G S) / d),
//! ```
//! each variance at least the floor (the constrained maximiser, as each `psi_j`'s term is unimodal),
//! and `mu' = xbar`, the maximiser of the likelihood in `mu` for any `W`, `Psi`: a conditional
//! maximisation after the M-step, so the likelihood never decreases.

use emvae_core::linalg::{self, cholesky_lower, cholesky_solve, identity, log_det_cholesky};

use super::parameters::LinearParameters;
use super::params::Noise;
use super::stats::SufficientStats;
use crate::EmError;

/// What the E-step hands the M-step.
pub(crate) struct Expected {
    /// `G S = (S G^T)^T`, `[q, d]`.
    gs: Vec<f64>,
    /// `Szz = M^-1 + G S G^T`, `[q, q]`.
    szz: Vec<f64>,
}

/// Cholesky factor of `M = I + W^T Psi^-1 W` and `B = Psi^-1 W`.
struct Woodbury {
    b: Vec<f64>,
    m_chol: Vec<f64>,
}

/// `log 2 pi`.
const LOG_2PI: f64 = 1.837_877_066_409_345_5;

fn ill(message: String) -> EmError {
    EmError::IllConditioned {
        component: None,
        message,
    }
}

fn woodbury(p: &LinearParameters) -> Result<Woodbury, EmError> {
    let (d, q) = (p.n_features, p.n_components);
    let mut b = p.loadings.clone();
    for j in 0..d {
        for k in 0..q {
            b[j * q + k] /= p.noise_variances[j];
        }
    }
    let mut m = linalg::matmul_tn(&p.loadings, &b, d, q, q);
    for k in 0..q {
        m[k * q + k] += 1.0;
    }
    let m_chol = cholesky_lower(&m, q).map_err(|e| {
        ill(format!(
            "I + W^T Psi^-1 W is not positive definite ({e}): the loadings or noise variances are not finite"
        ))
    })?;
    Ok(Woodbury { b, m_chol })
}

/// `log |C|` and the quadratic form `r^T C^-1 r` of one residual `r = x - mu`.
pub(crate) struct Density {
    w: Woodbury,
    log_det_c: f64,
    inv_psi: Vec<f64>,
    q: usize,
}

impl Density {
    pub(crate) fn new(p: &LinearParameters) -> Result<Self, EmError> {
        let w = woodbury(p)?;
        let q = p.n_components;
        let log_det_c =
            log_det_cholesky(&w.m_chol, q) + p.noise_variances.iter().map(|v| v.ln()).sum::<f64>();
        Ok(Self {
            w,
            log_det_c,
            inv_psi: p.noise_variances.iter().map(|v| 1.0 / v).collect(),
            q,
        })
    }

    /// `log N(x | mu, C) = -1/2 (d log 2pi + log|C| + r^T C^-1 r)` for the residual `r = x - mu`,
    /// with a scratch vector of length `q`.
    pub(crate) fn log_density(&self, r: &[f64], scratch: &mut [f64]) -> f64 {
        let d = r.len() as f64;
        -0.5 * (d * LOG_2PI + self.log_det_c + self.quadratic(r, scratch))
    }

    /// `r^T C^-1 r = r^T Psi^-1 r - |L^-1 B^T r|^2` (`M = L L^T`), with a scratch vector of length `q`.
    fn quadratic(&self, r: &[f64], btr: &mut [f64]) -> f64 {
        let (d, q) = (r.len(), self.q);
        btr.fill(0.0);
        let mut quad = 0.0;
        for j in 0..d {
            quad += r[j] * r[j] * self.inv_psi[j];
            let bj = &self.w.b[j * q..(j + 1) * q];
            for k in 0..q {
                btr[k] += bj[k] * r[j];
            }
        }
        let l = &self.w.m_chol;
        for i in 0..q {
            let mut s = btr[i];
            for p in 0..i {
                s -= l[i * q + p] * btr[p];
            }
            btr[i] = s / l[i * q + i];
            quad -= btr[i] * btr[i];
        }
        quad
    }

    /// `G = M^-1 B^T`, `[q, d]`: posterior means are `G (x - mu)`.
    pub(crate) fn posterior_gain(&self, d: usize) -> Vec<f64> {
        let bt = transpose_rect(&self.w.b, d, self.q);
        cholesky_solve(&self.w.m_chol, self.q, &bt, d)
    }

    /// `M^-1`, the posterior covariance of `z`, `[q, q]`.
    pub(crate) fn posterior_covariance(&self) -> Vec<f64> {
        cholesky_solve(&self.w.m_chol, self.q, &identity(self.q), self.q)
    }
}

/// `A^T` for a row-major `rows x cols` matrix.
pub(crate) fn transpose_rect(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = a[i * cols + j];
        }
    }
    t
}

/// The E-step: the average log-likelihood
/// `-d/2 log 2pi - 1/2 log|C| - 1/2 tr(C^-1 (S + delta delta^T))`, `delta = xbar - mu`, and the
/// expected statistics.
pub(crate) fn e_step(
    stats: &SufficientStats,
    p: &LinearParameters,
) -> Result<(f64, Expected), EmError> {
    let (d, q) = (p.n_features, p.n_components);
    let dens = Density::new(p)?;
    let b = &dens.w.b;
    let sb = linalg::matmul_rect(&stats.covariance, b, d, d, q);
    let minv = dens.posterior_covariance();
    // G S = M^-1 (S B)^T.
    let gs = cholesky_solve(&dens.w.m_chol, q, &transpose_rect(&sb, d, q), d);
    // tr(C^-1 S) = tr(Psi^-1 (I - W G) S) = sum_j (S_jj - (W G S)_jj) / psi_j. Cancelling feature by
    // feature loses about 100 times less than tr(Psi^-1 S) - tr(M^-1 B^T S B) when the noise is small
    // next to some features' variance (their ratio bounds the accuracy either way).
    let tr_c_s: f64 = (0..d)
        .map(|j| {
            let explained: f64 = (0..q).map(|k| p.loadings[j * q + k] * gs[k * d + j]).sum();
            (stats.covariance[j * d + j] - explained) * dens.inv_psi[j]
        })
        .sum();
    let delta: Vec<f64> = (0..d).map(|j| stats.mean[j] - p.mean[j]).collect();
    let quad_delta = dens.quadratic(&delta, &mut vec![0.0; q]);
    let log_likelihood = -0.5 * (d as f64 * LOG_2PI + dens.log_det_c + tr_c_s + quad_delta);
    // Szz = M^-1 + M^-1 (B^T S B) M^-1.
    let btsb = linalg::matmul_tn(b, &sb, d, q, q);
    let inner = linalg::matmul_rect(&linalg::matmul_rect(&minv, &btsb, q, q, q), &minv, q, q, q);
    let mut szz = vec![0.0; q * q];
    for i in 0..q {
        for j in 0..q {
            // Symmetrised: rounding must not make the M-step's Cholesky see an asymmetric matrix.
            szz[i * q + j] = minv[i * q + j] + 0.5 * (inner[i * q + j] + inner[j * q + i]);
        }
    }
    Ok((log_likelihood, Expected { gs, szz }))
}

/// The M-step from the expected statistics; noise variances at least `floor`.
pub(crate) fn m_step(
    stats: &SufficientStats,
    e: &Expected,
    noise: Noise,
    floor: f64,
) -> Result<LinearParameters, EmError> {
    let (d, q) = (stats.d, e.szz.len().isqrt());
    let szz_chol = cholesky_lower(&e.szz, q).map_err(|err| {
        ill(format!(
            "the posterior second moment is not positive definite ({err})"
        ))
    })?;
    // W'^T = Szz^-1 G S.
    let wt = cholesky_solve(&szz_chol, q, &e.gs, d);
    let loadings = transpose_rect(&wt, q, d);
    let residual: Vec<f64> = (0..d)
        .map(|j| {
            stats.covariance[j * d + j]
                - (0..q).map(|k| wt[k * d + j] * e.gs[k * d + j]).sum::<f64>()
        })
        .collect();
    let noise_variances = match noise {
        Noise::Diagonal => residual.iter().map(|v| v.max(floor)).collect(),
        Noise::Isotropic => vec![(residual.iter().sum::<f64>() / d as f64).max(floor); d],
    };
    Ok(LinearParameters {
        noise,
        n_features: d,
        n_components: q,
        loadings,
        mean: stats.mean.clone(),
        noise_variances,
    })
}

/// The average log-likelihood of the data behind `stats` under `p`.
pub fn average_log_likelihood(
    stats: &SufficientStats,
    p: &LinearParameters,
) -> Result<f64, EmError> {
    e_step(stats, p).map(|(ll, _)| ll)
}

#[cfg(test)]
mod tests {
    use crate::driver::{Acceleration, EmCheckpoint, EmObserver, IterationRecord};
    use crate::linear::model::tests::factor_data;
    use crate::linear::{LinearGaussianParams, LinearInit, LinearParametersJson, Noise};
    use emvae_core::data::Dataset;
    use emvae_core::rng::rng_for;
    use rand::Rng as _;

    /// The log-likelihood trajectory of every restart.
    struct Trajectories(Vec<Vec<f64>>);
    impl EmObserver<LinearParametersJson> for Trajectories {
        fn on_iteration(
            &mut self,
            r: &IterationRecord,
            _: &EmCheckpoint<LinearParametersJson>,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            if r.restart == self.0.len() {
                self.0.push(Vec::new());
            }
            self.0[r.restart].push(r.log_likelihood);
            Ok(())
        }
    }

    #[test]
    fn the_log_likelihood_never_decreases() {
        let mut checked = 0;
        for seed in 0..24u64 {
            let mut rng = rng_for(seed, b"linear-monotone", 0);
            let d = rng.random_range(2..=9);
            let q = rng.random_range(1..d);
            let q_true = rng.random_range(1..d);
            // Down to fewer rows than features: a singular covariance, where the floor binds.
            // Few to many rows. (With `n <= d` the likelihood can be unbounded: the noise floor binds
            // and the recorded values are only as accurate as `eps max_j S_jj / psi_j` allows.)
            let n = [2 * d, 5 * d, 40 * d][rng.random_range(0..3)];
            let (data, _) = factor_data(n, d, q_true, false, seed);
            // Features on scales from 0.1 to 10.
            let scales: Vec<f64> = (0..d)
                .map(|_| 10f64.powf(rng.random_range(-1.0..1.0)))
                .collect();
            let mut x = data.x.clone();
            for (k, v) in x.values.iter_mut().enumerate() {
                *v *= scales[k % d];
            }
            let data = Dataset::new(x, "scaled");
            for noise in [Noise::Isotropic, Noise::Diagonal] {
                for acceleration in [Acceleration::None, Acceleration::Squarem] {
                    let mut seen = Trajectories(Vec::new());
                    LinearGaussianParams::new(q)
                        .noise(noise)
                        .init(LinearInit::Random)
                        .n_init(2)
                        .tol(0.0)
                        .max_iter(150)
                        .acceleration(acceleration)
                        .seed(seed)
                        .check()
                        .unwrap()
                        .fit_with(&data, &mut seen, None)
                        .unwrap();
                    for t in &seen.0 {
                        for (i, w) in t.windows(2).enumerate() {
                            let slack = 1e-12 * w[0].abs().max(1.0);
                            assert!(
                                w[1] >= w[0] - slack,
                                "seed {seed} (n {n}, d {d}, q {q}), {noise}, {acceleration:?}: iteration {} \
                                 {} -> {}",
                                i + 1,
                                w[0],
                                w[1]
                            );
                        }
                        checked += t.len();
                    }
                }
            }
        }
        assert_eq!(checked, 24 * 4 * 2 * 150);
    }

    #[test]
    fn fits_recover_the_generating_model() {
        let n = 20_000;
        for isotropic in [true, false] {
            let (data, truth) = factor_data(n, 8, 2, isotropic, 3);
            let noise = truth.noise();
            let fit = LinearGaussianParams::new(2)
                .noise(noise)
                .init(LinearInit::Random)
                .tol(1e-10)
                .check()
                .unwrap()
                .fit(&data)
                .unwrap();
            assert!(fit.converged);
            // W is identified up to rotation: compare C = W W^T + Psi entrywise, within 5 standard
            // errors of a sample covariance.
            let (c, c_true) = (fit.covariance(), truth.covariance());
            for a in 0..8 {
                for b in 0..8 {
                    let se = ((c_true[a * 8 + a] * c_true[b * 8 + b] + c_true[a * 8 + b].powi(2))
                        / n as f64)
                        .sqrt();
                    let err = (c[a * 8 + b] - c_true[a * 8 + b]).abs();
                    assert!(
                        err < 5.0 * se,
                        "{noise}: C[{a}][{b}] off by {err:.4} (se {se:.4})"
                    );
                }
            }
            for (j, (s, t)) in fit
                .parameters
                .noise_variances
                .iter()
                .zip(&truth.parameters.noise_variances)
                .enumerate()
            {
                // sigma^2 pools d - q directions; each psi_j is a variance estimate of its own.
                let tol = if isotropic { 0.01 } else { 0.15 * t };
                assert!((s - t).abs() < tol, "{noise}: psi[{j}] {s:.4} vs {t:.4}");
            }
            let (ev, ev_true) = (
                fit.explained_variance().unwrap(),
                truth.explained_variance().unwrap(),
            );
            for (a, b) in ev.iter().zip(&ev_true) {
                assert!(
                    (a - b).abs() < 0.1 * b,
                    "{noise}: explained variance {a:.3} vs {b:.3}"
                );
            }
        }
    }
}

//! Gaussian emissions: log-densities, expected sufficient statistics and their M-step.
//!
//! ```text
//! log N(x | mu_j, Sigma_j) = -d/2 log 2pi - 1/2 log|Sigma_j| - 1/2 ||L_j^-1 (x - mu_j)||^2,
//! Sigma_j = L_j L_j^T
//! ```
//! Diagonal and spherical covariances take `L_j^-1 = diag(1 / sigma_j)`. The statistics are sums over
//! time weighted by the posteriors `gamma_t(j)`: `N_j = sum_t gamma_t(j)`, `S1_j = sum_t gamma_t(j) x_t`
//! and `S2_j = sum_t gamma_t(j) x_t x_t^T` (only its diagonal for diag and spherical), taken on data
//! shifted by their mean `c` so that the covariance `S2_j / N_j - mu_j mu_j^T` does not cancel
//! catastrophically on data far from the origin.

use emvae_core::linalg;

use super::kernels::{Kernel, dispatch, states};
use crate::EmError;
use crate::gmm::CovarianceType;

/// Gaussian emission parameters of `k` states in `d` dimensions, with what the densities need.
#[derive(Debug, Clone, PartialEq)]
///
/// Read-only outside this crate: the densities' precomputed factors must stay those of the means and
/// covariances.
pub struct GaussianEmissions {
    pub(crate) covariance_type: CovarianceType,
    pub(crate) n_states: usize,
    pub(crate) n_features: usize,
    /// `mu_j`, `[k, d]`.
    pub(crate) means: Vec<f64>,
    /// Laid out by covariance type: `[k, d, d]` full, `[k, d]` diag, `[k]` spherical, `[d, d]` tied.
    pub(crate) covars: Vec<f64>,
    /// `L_j^-1` with the state innermost, so that one time step runs over all states in vector
    /// loops: the lower triangle `[d (d + 1) / 2, k]` (row by row) for full and tied, `1 / sigma_j`
    /// `[d, k]` for diag and spherical.
    whiten_t: Vec<f64>,
    /// `mu_j` as `[d, k]`.
    means_t: Vec<f64>,
    /// `-d/2 log 2pi - 1/2 log|Sigma_j|`, `[k]`.
    log_norm: Vec<f64>,
}

/// `[r, c]` row-major to `[c, r]`.
fn transpose(m: &[f64], r: usize, c: usize) -> Vec<f64> {
    (0..c)
        .flat_map(|j| (0..r).map(move |i| m[i * c + j]))
        .collect()
}

/// Whether covariances are stored as whole matrices (full, tied) or their diagonal.
fn is_matrix(cov: CovarianceType) -> bool {
    matches!(cov, CovarianceType::Full | CovarianceType::Tied)
}

impl GaussianEmissions {
    /// Emissions from means and covariances; the error says which state's covariance is not positive
    /// definite.
    pub(crate) fn new(
        covariance_type: CovarianceType,
        n_features: usize,
        means: Vec<f64>,
        covars: Vec<f64>,
    ) -> Result<Self, String> {
        let d = n_features;
        let k = means.len() / d.max(1);
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        let mut whiten = Vec::new();
        let mut log_norm = Vec::with_capacity(k);
        for j in 0..k {
            let sigma = match covariance_type {
                CovarianceType::Full => &covars[j * d * d..(j + 1) * d * d],
                CovarianceType::Tied => &covars[..],
                _ => &[][..],
            };
            if is_matrix(covariance_type) {
                let l = linalg::cholesky_lower(sigma, d).map_err(|e| format!("state {j}: {e}"))?;
                let half_log_det: f64 = (0..d).map(|a| l[a * d + a].ln()).sum();
                whiten.extend(linalg::invert_lower(&l, d));
                log_norm.push(-(d as f64) * half_log_2pi - half_log_det);
            } else {
                let var = |a: usize| match covariance_type {
                    CovarianceType::Diag => covars[j * d + a],
                    _ => covars[j],
                };
                let mut half_log_det = 0.0;
                for a in 0..d {
                    let v = var(a);
                    if !(v > 0.0 && v.is_finite()) {
                        return Err(format!("state {j}: variance {a} is {v:e}"));
                    }
                    whiten.push(1.0 / v.sqrt());
                    half_log_det += 0.5 * v.ln();
                }
                log_norm.push(-(d as f64) * half_log_2pi - half_log_det);
            }
        }
        let whiten_t = if is_matrix(covariance_type) {
            let pairs = (0..d).flat_map(|a| (0..=a).map(move |b| a * d + b));
            pairs
                .flat_map(|ab| (0..k).map(move |j| j * d * d + ab))
                .map(|i| whiten[i])
                .collect()
        } else {
            transpose(&whiten, k, d)
        };
        Ok(Self {
            covariance_type,
            n_states: k,
            n_features: d,
            means_t: transpose(&means, k, d),
            means,
            covars,
            whiten_t,
            log_norm,
        })
    }

    pub fn covariance_type(&self) -> CovarianceType {
        self.covariance_type
    }

    pub fn n_states(&self) -> usize {
        self.n_states
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// `mu_j`, `[k, d]` row-major.
    pub fn means(&self) -> &[f64] {
        &self.means
    }

    /// Laid out by covariance type: `[k, d, d]` full, `[k, d]` diag, `[k]` spherical, `[d, d]` tied.
    pub fn covars(&self) -> &[f64] {
        &self.covars
    }

    pub fn mean(&self, j: usize) -> &[f64] {
        &self.means[j * self.n_features..(j + 1) * self.n_features]
    }

    /// The full `d x d` covariance matrix of state `j`, whatever the covariance type.
    pub fn covariance_matrix(&self, j: usize) -> Vec<f64> {
        let d = self.n_features;
        let c = &self.covars;
        match self.covariance_type {
            CovarianceType::Full => c[j * d * d..(j + 1) * d * d].to_vec(),
            CovarianceType::Tied => c.clone(),
            CovarianceType::Diag | CovarianceType::Spherical => {
                let mut m = vec![0.0; d * d];
                for a in 0..d {
                    m[a * d + a] = if self.covariance_type == CovarianceType::Diag {
                        c[j * d + a]
                    } else {
                        c[j]
                    };
                }
                m
            }
        }
    }

    /// Number of free parameters: means and covariances.
    pub fn n_parameters(&self) -> usize {
        let (k, d) = (self.n_states, self.n_features);
        k * d + self.covariance_type.n_parameters(k, d)
    }

    /// `out[t, j] = log N(x_t | mu_j, Sigma_j)` for the rows `x` (`[T, d]`) of one sequence.
    pub(crate) fn log_likelihoods(&self, x: &[f64], out: &mut [f64]) {
        dispatch(self.n_states, LogLikelihoods { e: self, x, out });
    }

    #[inline(always)]
    fn log_likelihoods_k<const K: usize>(&self, x: &[f64], out: &mut [f64]) {
        let (k, d) = (states::<K>(self.n_states), self.n_features);
        let mut diff = vec![0.0; d * k];
        let mut z = vec![0.0; k];
        let log_norm = &self.log_norm[..k];
        for (row, lb) in x.chunks_exact(d).zip(out.chunks_exact_mut(k)) {
            // lb accumulates ||L_j^-1 (x - mu_j)||^2 over all states j at once.
            lb.fill(0.0);
            if is_matrix(self.covariance_type) {
                for ((df, mu), &xa) in diff
                    .chunks_exact_mut(k)
                    .zip(self.means_t.chunks_exact(k))
                    .zip(row)
                {
                    df.iter_mut().zip(mu).for_each(|(v, m)| *v = xa - m);
                }
                let (z, lb) = (&mut z[..k], &mut lb[..k]);
                let mut p = 0;
                for a in 0..d {
                    z.fill(0.0);
                    for b in 0..=a {
                        let w = &self.whiten_t[p * k..(p + 1) * k];
                        let df = &diff[b * k..(b + 1) * k];
                        for j in 0..k {
                            z[j] += w[j] * df[j];
                        }
                        p += 1;
                    }
                    for j in 0..k {
                        lb[j] += z[j] * z[j];
                    }
                }
            } else {
                let per_feature = self
                    .means_t
                    .chunks_exact(k)
                    .zip(self.whiten_t.chunks_exact(k));
                for (&xa, (mu, w)) in row.iter().zip(per_feature) {
                    for ((s, m), w) in lb.iter_mut().zip(mu).zip(w) {
                        let z = (xa - m) * w;
                        *s += z * z;
                    }
                }
            }
            lb.iter_mut()
                .zip(log_norm)
                .for_each(|(s, c)| *s = c - 0.5 * *s);
        }
    }

    /// Length of the second-moment statistic per state: `d (d + 1) / 2` (a lower triangle) for full and
    /// tied, `d` otherwise.
    pub(crate) fn second_len(&self) -> usize {
        let d = self.n_features;
        if is_matrix(self.covariance_type) {
            d * (d + 1) / 2
        } else {
            d
        }
    }

    /// Adds one sequence's statistics from the posteriors `gamma` (`[T, k]`) and rows `x` (`[T, d]`):
    /// `obs[a, j] += sum_t gamma_t(j) (x_t - c)_a` and the second moments `second[p, j]` (`p` over the
    /// lower triangle, or the diagonal), state innermost.
    pub(crate) fn accumulate(
        &self,
        gamma: &[f64],
        x: &[f64],
        shift: &[f64],
        obs: &mut [f64],
        second: &mut [f64],
    ) {
        let kernel = Accumulate {
            e: self,
            gamma,
            x,
            shift,
            obs,
            second,
        };
        dispatch(self.n_states, kernel);
    }

    #[inline(always)]
    fn accumulate_k<const K: usize>(
        &self,
        gamma: &[f64],
        x: &[f64],
        shift: &[f64],
        obs: &mut [f64],
        second: &mut [f64],
    ) {
        let (k, d) = (states::<K>(self.n_states), self.n_features);
        let m = self.second_len();
        let matrix = is_matrix(self.covariance_type);
        let mut xc = vec![0.0; d];
        let mut moments = vec![0.0; m];
        for (row, g) in x.chunks_exact(d).zip(gamma.chunks_exact(k)) {
            xc.iter_mut()
                .zip(row)
                .zip(shift)
                .for_each(|((c, x), s)| *c = x - s);
            if matrix {
                let mut p = 0;
                for a in 0..d {
                    for b in 0..=a {
                        moments[p] = xc[a] * xc[b];
                        p += 1;
                    }
                }
            } else {
                moments.iter_mut().zip(&xc).for_each(|(m, v)| *m = v * v);
            }
            for (o, v) in obs.chunks_exact_mut(k).zip(&xc) {
                o.iter_mut().zip(g).for_each(|(o, w)| *o += w * v);
            }
            for (s, v) in second.chunks_exact_mut(k).zip(&moments) {
                s.iter_mut().zip(g).for_each(|(s, w)| *s += w * v);
            }
        }
    }

    /// The M-step: `mu_j = c + S1_j / N_j`, `Sigma_j = S2_j / N_j - (S1_j / N_j)(S1_j / N_j)^T` (pooled
    /// over states for tied, averaged over features for spherical), plus `min_covar` on the diagonal.
    /// A state no posterior mass reached (`N_j = 0`) keeps its parameters.
    pub(crate) fn m_step(
        &self,
        post: &[f64],
        obs: &[f64],
        second: &[f64],
        shift: &[f64],
        min_covar: f64,
    ) -> Result<Self, EmError> {
        let (k, d, m) = (self.n_states, self.n_features, self.second_len());
        let cov = self.covariance_type;
        let mut means = self.means.clone();
        let mut covars = self.covars.clone();
        let mut tied = vec![0.0; d * d];
        let mut tied_weight = 0.0;
        for j in 0..k {
            let n = post[j];
            if n.is_nan() || n <= 0.0 {
                continue;
            }
            let mu_c: Vec<f64> = (0..d).map(|a| obs[a * k + j] / n).collect();
            for a in 0..d {
                means[j * d + a] = shift[a] + mu_c[a];
            }
            let s2: Vec<f64> = (0..m).map(|p| second[p * k + j]).collect();
            match cov {
                CovarianceType::Diag | CovarianceType::Spherical => {
                    let var: Vec<f64> = (0..d).map(|a| s2[a] / n - mu_c[a] * mu_c[a]).collect();
                    if cov == CovarianceType::Diag {
                        for a in 0..d {
                            covars[j * d + a] = var[a] + min_covar;
                        }
                    } else {
                        covars[j] = var.iter().sum::<f64>() / d as f64 + min_covar;
                    }
                }
                CovarianceType::Full | CovarianceType::Tied => {
                    let mut c = vec![0.0; d * d];
                    let mut p = 0;
                    for a in 0..d {
                        for b in 0..=a {
                            let v = if cov == CovarianceType::Full {
                                s2[p] / n - mu_c[a] * mu_c[b]
                            } else {
                                s2[p] - n * mu_c[a] * mu_c[b]
                            };
                            c[a * d + b] = v;
                            c[b * d + a] = v;
                            p += 1;
                        }
                    }
                    if cov == CovarianceType::Full {
                        for a in 0..d {
                            c[a * d + a] += min_covar;
                        }
                        covars[j * d * d..(j + 1) * d * d].copy_from_slice(&c);
                    } else {
                        tied.iter_mut().zip(&c).for_each(|(t, v)| *t += v);
                        tied_weight += n;
                    }
                }
            }
        }
        if cov == CovarianceType::Tied && tied_weight > 0.0 {
            for (a, t) in tied.iter().enumerate() {
                covars[a] = t / tied_weight;
            }
            for a in 0..d {
                covars[a * d + a] += min_covar;
            }
        }
        Self::new(cov, d, means, covars).map_err(|detail| EmError::IllConditioned {
            component: None,
            message: format!(
                "a covariance is not positive definite after the M-step ({detail}): a state has collapsed onto \
                 too few distinct points, or features are constant or collinear; increase hmm.min_covar (now \
                 {min_covar:e}) or use fewer states"
            ),
        })
    }
}

/// [`GaussianEmissions::log_likelihoods`] as a kernel.
struct LogLikelihoods<'a> {
    e: &'a GaussianEmissions,
    x: &'a [f64],
    out: &'a mut [f64],
}

impl Kernel for LogLikelihoods<'_> {
    type Output = ();
    #[inline(always)]
    fn run<const K: usize>(self, _: usize) {
        self.e.log_likelihoods_k::<K>(self.x, self.out);
    }
}

/// [`GaussianEmissions::accumulate`] as a kernel.
struct Accumulate<'a> {
    e: &'a GaussianEmissions,
    gamma: &'a [f64],
    x: &'a [f64],
    shift: &'a [f64],
    obs: &'a mut [f64],
    second: &'a mut [f64],
}

impl Kernel for Accumulate<'_> {
    type Output = ();
    #[inline(always)]
    fn run<const K: usize>(self, _: usize) {
        let Accumulate {
            e,
            gamma,
            x,
            shift,
            obs,
            second,
        } = self;
        e.accumulate_k::<K>(gamma, x, shift, obs, second);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loops for a constant number of states and for any agree bit for bit.
    #[test]
    fn constant_and_general_loops_agree() {
        let x: Vec<f64> = (0..40)
            .map(|i| ((i * 13 % 17) as f64 - 8.0) * 0.3)
            .collect();
        let gamma: Vec<f64> = (0..30).map(|i| [0.2, 0.5, 0.3][i % 3]).collect();
        let means: Vec<f64> = (0..12).map(|i| (i as f64 - 6.0) * 0.5).collect();
        let mut full = Vec::new();
        for j in 0..3 {
            for a in 0..4 {
                for b in 0..4 {
                    full.push(if a == b { 1.0 + j as f64 * 0.2 } else { 0.1 });
                }
            }
        }
        for (cov, covars) in [
            (CovarianceType::Full, full),
            (CovarianceType::Diag, vec![0.7; 12]),
        ] {
            let e = GaussianEmissions::new(cov, 4, means.clone(), covars).unwrap();
            let (mut a, mut b) = (vec![0.0; 30], vec![0.0; 30]);
            e.log_likelihoods_k::<0>(&x, &mut a);
            e.log_likelihoods_k::<3>(&x, &mut b);
            assert_eq!(a, b, "{cov}");
            let m = e.second_len() * 3;
            let shift = [0.1, -0.2, 0.3, 0.0];
            let (mut o1, mut s1, mut o2, mut s2) =
                (vec![0.0; 12], vec![0.0; m], vec![0.0; 12], vec![0.0; m]);
            e.accumulate_k::<0>(&gamma, &x, &shift, &mut o1, &mut s1);
            e.accumulate_k::<3>(&gamma, &x, &shift, &mut o2, &mut s2);
            assert_eq!((o1, s1), (o2, s2), "{cov}");
        }
    }

    /// The whitened form agrees with the textbook density for every covariance type.
    #[test]
    fn log_densities_match_the_definition() {
        let means = vec![0.5, -1.0, 2.0, 0.0];
        let x = [0.3, 0.7, -1.2, 2.5];
        let full = vec![2.0, 0.3, 0.3, 1.0, 0.5, -0.1, -0.1, 0.8];
        let cases = [
            (CovarianceType::Full, full.clone()),
            (CovarianceType::Tied, full[..4].to_vec()),
            (CovarianceType::Diag, vec![2.0, 1.0, 0.5, 0.8]),
            (CovarianceType::Spherical, vec![1.5, 0.4]),
        ];
        for (cov, covars) in cases {
            let e = GaussianEmissions::new(cov, 2, means.clone(), covars).unwrap();
            let mut out = vec![0.0; 4];
            e.log_likelihoods(&x, &mut out);
            for t in 0..2 {
                for j in 0..2 {
                    let s = e.covariance_matrix(j);
                    let det = s[0] * s[3] - s[1] * s[2];
                    let inv = [s[3] / det, -s[1] / det, -s[2] / det, s[0] / det];
                    let dv = [x[2 * t] - means[2 * j], x[2 * t + 1] - means[2 * j + 1]];
                    let q = dv[0] * (inv[0] * dv[0] + inv[1] * dv[1])
                        + dv[1] * (inv[2] * dv[0] + inv[3] * dv[1]);
                    let want = -(2.0 * std::f64::consts::PI).ln() - 0.5 * det.ln() - 0.5 * q;
                    assert!((out[t * 2 + j] - want).abs() < 1e-13, "{cov}: {t} {j}");
                }
            }
        }
        let e = GaussianEmissions::new(CovarianceType::Diag, 2, means, vec![1.0, 0.0, 1.0, 1.0]);
        assert!(e.unwrap_err().contains("state 0: variance 1"));
    }
}

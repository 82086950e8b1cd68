//! Initial parameters of a restart, as hmmlearn draws them where no `*_init` value is given:
//! `startprob` and every row of `transmat` from a Dirichlet(1/k), Gaussian means by k-means and
//! covariances from the data's (plus `min_covar`), categorical emission rows uniform draws normalised.
//!
//! Every draw comes from the stream `hmm-init` number `restart` of the run seed.

use emvae_core::data::Matrix;
use emvae_core::rng::{Rng, rng_for};
use rand::Rng as _;
use rand_distr::{Distribution, Gamma};

use super::categorical::CategoricalEmissions;
use super::data::{Observations, Sequences};
use super::gaussian::GaussianEmissions;
use super::parameters::{Emissions, HmmParameters};
use super::params::HmmValidParams;
use crate::EmError;
use crate::gmm::CovarianceType;

/// Lloyd iterations of the k-means initialisation of the means.
const KMEANS_MAX_ITER: usize = 100;

/// A draw from a symmetric Dirichlet(`alpha`) of dimension `k` (normalised Gamma draws). Entries are
/// kept above the smallest normal float, so that no transition is forbidden by an underflow.
fn dirichlet(k: usize, alpha: f64, rng: &mut Rng) -> Vec<f64> {
    let gamma = Gamma::new(alpha, 1.0).ok();
    let mut v: Vec<f64> = (0..k)
        .map(|_| gamma.map_or(1.0, |g| g.sample(rng)).max(f64::MIN_POSITIVE))
        .collect();
    let s: f64 = v.iter().sum();
    v.iter_mut().for_each(|x| *x /= s);
    v
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// k-means of the rows of `x` (`n >= k`): k-means++ seeding, then Lloyd iterations until no row changes
/// cluster. A cluster left empty keeps its centre. Returns the centres `[k, d]`.
pub(crate) fn kmeans(x: &Matrix, k: usize, rng: &mut Rng) -> Vec<f64> {
    let (n, d) = (x.n_rows, x.n_cols);
    let mut centers = Vec::with_capacity(k * d);
    centers.extend_from_slice(x.row(rng.random_range(0..n)));
    let mut closest: Vec<f64> = x.rows().map(|r| sq_dist(r, &centers[..d])).collect();
    for _ in 1..k {
        let total: f64 = closest.iter().sum();
        let pick = if total > 0.0 {
            let mut u = rng.random::<f64>() * total;
            closest
                .iter()
                .position(|&c| {
                    u -= c;
                    u < 0.0
                })
                .unwrap_or(n - 1)
        } else {
            rng.random_range(0..n)
        };
        let c = x.row(pick).to_vec();
        for (m, r) in closest.iter_mut().zip(x.rows()) {
            *m = m.min(sq_dist(r, &c));
        }
        centers.extend(c);
    }
    let mut assignment = vec![usize::MAX; n];
    for _ in 0..KMEANS_MAX_ITER {
        let mut changed = false;
        for (i, r) in x.rows().enumerate() {
            let mut best = (f64::INFINITY, 0);
            for j in 0..k {
                let dist = sq_dist(r, &centers[j * d..(j + 1) * d]);
                if dist < best.0 {
                    best = (dist, j);
                }
            }
            changed |= assignment[i] != best.1;
            assignment[i] = best.1;
        }
        if !changed {
            break;
        }
        let mut sums = vec![0.0; k * d];
        let mut counts = vec![0usize; k];
        for (r, &j) in x.rows().zip(&assignment) {
            counts[j] += 1;
            sums[j * d..(j + 1) * d]
                .iter_mut()
                .zip(r)
                .for_each(|(s, v)| *s += v);
        }
        for j in (0..k).filter(|&j| counts[j] > 0) {
            for a in 0..d {
                centers[j * d + a] = sums[j * d + a] / counts[j] as f64;
            }
        }
    }
    centers
}

/// The sample covariance of the rows of `x` (divisor `n - 1`, as NumPy's `cov`), plus `min_covar` on
/// the diagonal, laid out for `cov` and `k` states.
fn data_covars(x: &Matrix, cov: CovarianceType, k: usize, min_covar: f64) -> Vec<f64> {
    let (n, d) = (x.n_rows, x.n_cols);
    let mean: Vec<f64> = (0..d)
        .map(|a| x.rows().map(|r| r[a]).sum::<f64>() / n as f64)
        .collect();
    let mut c = vec![0.0; d * d];
    for r in x.rows() {
        for a in 0..d {
            for b in 0..=a {
                c[a * d + b] += (r[a] - mean[a]) * (r[b] - mean[b]);
            }
        }
    }
    let divisor = n.saturating_sub(1).max(1) as f64;
    for a in 0..d {
        for b in 0..=a {
            c[a * d + b] /= divisor;
            c[b * d + a] = c[a * d + b];
        }
        c[a * d + a] += min_covar;
    }
    let diag: Vec<f64> = (0..d).map(|a| c[a * d + a]).collect();
    match cov {
        CovarianceType::Full => c.repeat(k),
        CovarianceType::Tied => c,
        CovarianceType::Diag => diag.repeat(k),
        CovarianceType::Spherical => vec![diag.iter().sum::<f64>() / d as f64; k],
    }
}

impl HmmValidParams {
    /// Initial parameters of restart `restart`: the given `*_init` values, the rest drawn.
    pub(crate) fn initialize(
        &self,
        data: &Sequences,
        restart: usize,
    ) -> Result<HmmParameters, EmError> {
        let p = self.params();
        let k = p.n_states;
        let mut rng = rng_for(p.seed, b"hmm-init", restart as u64);
        let alpha = 1.0 / k as f64;
        let startprob = match &self.startprob_init {
            Some(v) => v.clone(),
            None => dirichlet(k, alpha, &mut rng),
        };
        let transmat = match &self.transmat_init {
            Some(v) => v.clone(),
            None => (0..k).flat_map(|_| dirichlet(k, alpha, &mut rng)).collect(),
        };
        let emissions = match &data.observations {
            Observations::Gaussian(x) => {
                let cov = p.covariance_type;
                let means = match &self.means_init {
                    Some((_, m)) => m.clone(),
                    None => kmeans(x, k, &mut rng),
                };
                let covars = match &self.covars_init {
                    Some((_, c)) => c.clone(),
                    None => data_covars(x, cov, k, p.min_covar),
                };
                let g = GaussianEmissions::new(cov, x.n_cols, means, covars).map_err(|detail| {
                    EmError::IllConditioned {
                        component: None,
                        message: format!(
                            "the data's covariance is not positive definite ({detail}): features are constant \
                             or collinear; set hmm.min_covar > 0 (now {:e}) or give hmm.covars_init",
                            p.min_covar
                        ),
                    }
                })?;
                Emissions::Gaussian(g)
            }
            Observations::Categorical { n_symbols, .. } => {
                let (v, b) = match &self.emissionprob_init {
                    Some((v, b)) => (*v, b.clone()),
                    None => {
                        let mut b: Vec<f64> = (0..k * n_symbols)
                            .map(|_| rng.random::<f64>().max(f64::MIN_POSITIVE))
                            .collect();
                        for row in b.chunks_exact_mut(*n_symbols) {
                            let s: f64 = row.iter().sum();
                            row.iter_mut().for_each(|x| *x /= s);
                        }
                        (*n_symbols, b)
                    }
                };
                Emissions::Categorical(CategoricalEmissions::new(v, b))
            }
        };
        Ok(HmmParameters {
            startprob,
            transmat,
            emissions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmeans_finds_separated_clusters() {
        let mut rng = rng_for(3, b"t", 0);
        let rows: Vec<Vec<f64>> = (0..90)
            .map(|i| {
                let c = (i % 3) as f64 * 10.0;
                vec![c + (i as f64 * 0.37).sin(), -c + (i as f64 * 0.71).cos()]
            })
            .collect();
        let centers = kmeans(&Matrix::from_rows(&rows), 3, &mut rng);
        let mut firsts: Vec<f64> = centers.chunks_exact(2).map(|c| c[0]).collect();
        firsts.sort_by(f64::total_cmp);
        for (f, want) in firsts.iter().zip([0.0, 10.0, 20.0]) {
            assert!((f - want).abs() < 1.0, "{centers:?}");
        }
        let d = dirichlet(4, 0.25, &mut rng);
        assert!((d.iter().sum::<f64>() - 1.0).abs() < 1e-12 && d.iter().all(|&v| v > 0.0));
    }
}

//! The E-step of both discrete mixtures: exact posteriors in log space, reduced to the expected
//! sufficient statistics the M-steps are functions of.
//!
//! With `log p(x_i, z = j) = b_j + sum_a x_ia W_aj` (see [`super::sparse`]),
//! `log p(x_i) = logsumexp_j log p(x_i, z = j)` and `r_ij = p(z = j | x_i)`. A labelled row has its `z`
//! observed: every other component gets `-inf`, so `r_i` is one-hot and its `log p(x_i)` becomes
//! `log p(x_i, z_i)`, as in the Gaussian mixture.
//!
//! The statistics (`N_j = sum_i r_ij`, `S_aj = sum_i r_ij x_ia`, `sum_i log p(x_i)`, the number of
//! rows) are sums over rows, so they add over mini-batches and can be scaled: online EM keeps a running
//! `s <- (1 - rho) s + rho s_batch` ([`MixtureStats::scale`], [`MixtureStats::scale_add`]) and runs the
//! same M-step on it.

use rayon::prelude::*;

use super::sparse::{BLOCK_ROWS, SparseRows};

/// Expected sufficient statistics of a discrete mixture over some rows.
#[derive(Debug, Clone, PartialEq)]
pub struct MixtureStats {
    /// Number of rows summed over (a weight, once scaled).
    pub n_rows: f64,
    /// `N_j = sum_i r_ij`, `[k]`.
    pub nk: Vec<f64>,
    /// `S_aj = sum_i r_ij x_ia`, feature-major `[d, k]` (`S[a * k + j]`): expected counts of feature
    /// (word) `a` in component `j`.
    pub sum_x: Vec<f64>,
    /// `sum_i log p(x_i)` under the parameters of the E-step (labelled rows: `log p(x_i, z_i)`).
    pub log_likelihood: f64,
}

impl MixtureStats {
    pub fn zeros(n_components: usize, n_features: usize) -> Self {
        Self {
            n_rows: 0.0,
            nk: vec![0.0; n_components],
            sum_x: vec![0.0; n_components * n_features],
            log_likelihood: 0.0,
        }
    }

    pub fn n_components(&self) -> usize {
        self.nk.len()
    }

    pub fn n_features(&self) -> usize {
        self.sum_x.len() / self.nk.len().max(1)
    }

    /// `1/n sum_i log p(x_i)`.
    pub fn average_log_likelihood(&self) -> f64 {
        self.log_likelihood / self.n_rows
    }

    /// Multiplies every statistic by `factor`.
    pub fn scale(&mut self, factor: f64) {
        self.n_rows *= factor;
        self.log_likelihood *= factor;
        self.nk.iter_mut().for_each(|v| *v *= factor);
        self.sum_x.iter_mut().for_each(|v| *v *= factor);
    }

    /// `self += weight * other`. Both must describe the same mixture shape (a programming error
    /// otherwise, hence the panic).
    pub fn scale_add(&mut self, other: &Self, weight: f64) {
        assert!(
            self.nk.len() == other.nk.len() && self.sum_x.len() == other.sum_x.len(),
            "statistics of mixtures of different shapes cannot be added"
        );
        self.n_rows += weight * other.n_rows;
        self.log_likelihood += weight * other.log_likelihood;
        self.nk
            .iter_mut()
            .zip(&other.nk)
            .for_each(|(a, b)| *a += weight * b);
        self.sum_x
            .iter_mut()
            .zip(&other.sum_x)
            .for_each(|(a, b)| *a += weight * b);
    }

    /// The statistics of responsibilities `r` (`[n, k]`, `k >= 1`) and log-likelihoods `log_norm` (`[n]`).
    pub(crate) fn from_responsibilities(
        x: &SparseRows,
        k: usize,
        r: &[f64],
        log_norm: &[f64],
    ) -> Self {
        let mut nk = vec![0.0; k];
        for row in r.chunks_exact(k) {
            nk.iter_mut().zip(row).for_each(|(n, r)| *n += r);
        }
        Self {
            n_rows: x.n_rows as f64,
            nk,
            sum_x: x.transpose_product(r, k),
            log_likelihood: log_norm.iter().sum(),
        }
    }
}

/// A mixture's E-step in linear form: `log p(x, z = j) = bias[j] + sum_a x_a w[a, j]`, `w` `[d, k]`.
pub(crate) struct LinearForm {
    pub w: Vec<f64>,
    pub bias: Vec<f64>,
}

/// Exact posteriors of every row.
pub(crate) struct Posterior {
    /// `log p(x_i)` (labelled rows: `log p(x_i, z_i)`), `[n]`.
    pub log_norm: Vec<f64>,
    /// `r_ij`, `[n, k]` row-major.
    pub resp: Vec<f64>,
}

/// Turns `log p(x, z = j)` into `p(z = j | x)` in place and returns `log p(x)`. A row no component can
/// produce (all `-inf`, only possible with zero probabilities read from a model file) gets `-inf` and
/// uniform responsibilities.
fn normalise(row: &mut [f64]) -> f64 {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        let k = row.len() as f64;
        row.fill(1.0 / k);
        return f64::NEG_INFINITY;
    }
    let mut s = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        s += *v;
    }
    row.iter_mut().for_each(|v| *v /= s);
    max + s.ln()
}

/// The posterior of every row of `x` under `form`, labelled rows clamped; parallel over fixed blocks
/// of rows, each row computed alone (so the result does not depend on the thread count).
pub(crate) fn posterior(
    x: &SparseRows,
    form: &LinearForm,
    labels: Option<&[Option<usize>]>,
) -> Posterior {
    let (n, k) = (x.n_rows, form.bias.len());
    let mut resp = vec![0.0; n * k];
    let mut log_norm = vec![0.0; n];
    resp.par_chunks_mut(BLOCK_ROWS * k)
        .zip(log_norm.par_chunks_mut(BLOCK_ROWS))
        .enumerate()
        .for_each(|(b, (r, ln))| {
            let start = b * BLOCK_ROWS;
            x.linear_rows(start, &form.w, &form.bias, r);
            for (i, (row, l)) in r.chunks_exact_mut(k).zip(ln.iter_mut()).enumerate() {
                if let Some(label) = labels.and_then(|ls| ls[start + i]) {
                    for (j, v) in row.iter_mut().enumerate() {
                        if j != label {
                            *v = f64::NEG_INFINITY;
                        }
                    }
                }
                *l = normalise(row);
            }
        });
    Posterior { log_norm, resp }
}

/// The E-step: the expected sufficient statistics of `x` under `form`.
pub(crate) fn e_step(
    x: &SparseRows,
    form: &LinearForm,
    labels: Option<&[Option<usize>]>,
) -> MixtureStats {
    let p = posterior(x, form, labels);
    MixtureStats::from_responsibilities(x, form.bias.len(), &p.resp, &p.log_norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discrete::sparse::SparseBuilder;

    #[test]
    fn posterior_normalises_and_clamps_labels() {
        let mut b = SparseBuilder::new(2, false);
        b.push(0, 2.0);
        b.end_row();
        b.push(1, 1.0);
        b.end_row();
        b.end_row();
        let x = b.finish();
        let form = LinearForm {
            w: vec![-1.0, -2.0, -3.0, -0.5],
            bias: vec![0.3f64.ln(), 0.7f64.ln()],
        };
        let p = posterior(&x, &form, None);
        let joint = [0.3 * (-2.0f64).exp(), 0.7 * (-4.0f64).exp()];
        let total: f64 = joint.iter().sum();
        assert!((p.log_norm[0] - total.ln()).abs() < 1e-14);
        assert!((p.resp[0] - joint[0] / total).abs() < 1e-14);
        // An empty row has probability 1 and the weights as posterior.
        assert!(p.log_norm[2].abs() < 1e-15);
        assert!((p.resp[4] - 0.3).abs() < 1e-15);
        let labelled = posterior(&x, &form, Some(&[None, Some(0), None]));
        assert_eq!(&labelled.resp[2..4], &[1.0, 0.0]);
        assert!((labelled.log_norm[1] - (0.3f64.ln() - 3.0)).abs() < 1e-14);
        assert_eq!(labelled.log_norm[0], p.log_norm[0]);
    }

    #[test]
    fn an_impossible_row_is_minus_infinity_not_nan() {
        let mut row = [f64::NEG_INFINITY, f64::NEG_INFINITY];
        assert_eq!(normalise(&mut row), f64::NEG_INFINITY);
        assert_eq!(row, [0.5, 0.5]);
    }

    #[test]
    fn statistics_add_and_scale() {
        let mut a = MixtureStats {
            n_rows: 2.0,
            nk: vec![1.5, 0.5],
            sum_x: vec![1.0, 0.0, 0.5, 0.5],
            log_likelihood: -3.0,
        };
        let b = a.clone();
        a.scale_add(&b, 0.5);
        assert_eq!(a.nk, vec![2.25, 0.75]);
        assert_eq!(a.n_rows, 3.0);
        assert_eq!(a.average_log_likelihood(), -1.5);
        a.scale(2.0);
        assert_eq!(a.sum_x, vec![3.0, 0.0, 1.5, 1.5]);
        assert_eq!((a.n_components(), a.n_features()), (2, 2));
        assert_eq!(MixtureStats::zeros(2, 3).sum_x.len(), 6);
    }
}

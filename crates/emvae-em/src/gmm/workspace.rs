//! The data of a fit on the device, as sufficient-statistic features.
//!
//! Every covariance type's log-density is linear in a feature map of `x`:
//! `log N(x | mu, Sigma) = w^T phi(x)` with
//! - full and tied: `phi(x) = [x_a x_b (a <= b), x_a, 1]` (`d(d+1)/2 + d + 1` features),
//! - diag: `phi(x) = [x_a^2, x_a, 1]` (`2d + 1`),
//! - spherical: `phi(x) = [|x|^2, x_a, 1]` (`d + 2`).
//!
//! So the E-step for all components is one matrix product `Phi W` (`[n, F] x [F, k]`), and the M-step's
//! sufficient statistics `N_j`, `sum_i r_ij x_i`, `sum_i r_ij x_i x_i^T` are one product `R^T Phi`
//! (`[k, n] x [n, F]`): large, cache-friendly GEMMs instead of `n k d`-sized element-wise passes.
//!
//! The price is cancellation: `(x - mu)^T Lambda (x - mu)` is formed as a sum of terms as large as
//! `kappa = |mu|^T |Lambda| |mu|`. The data are therefore centred on their mean first, and any component
//! whose `kappa` would cost more than [`target_error`] of accuracy is computed exactly, centred on its own
//! mean, by [`Workspace::exact_mahalanobis`] and [`Workspace::exact_scatter`].
//!
//! Where the host kernels serve the device ([`super::host::serves`]: f64 on a CPU backend), the rows are
//! also kept in their layout and the E-step runs there; the tensors below then serve initialisation.

use burn::tensor::{Int, Tensor, TensorData};
use emvae_core::data::Matrix;
use emvae_core::tensor::{Compute, Precision};

use super::host::{self, HostData};
use super::params::CovarianceType;

/// Rows per chunk: bounds the `[c, F]` and `[c, k]` intermediates.
const CHUNK_ROWS: usize = 16_384;
/// Features kept on the device between iterations when `n F` is at most this many elements (512 MB in
/// f64); above it they are rebuilt per chunk when needed.
const CACHE_ELEMENTS: usize = 1 << 26;

/// Absolute accuracy of log-densities the feature form must keep; components that would lose more to
/// cancellation take the exact path. f32 has ~1e-7 relative precision to start with.
pub(crate) fn target_error(precision: Precision) -> f64 {
    match precision {
        Precision::F64 => 1e-11,
        Precision::F32 => 1e-4,
    }
}

pub(crate) struct Workspace {
    pub compute: Compute,
    pub cov_type: CovarianceType,
    pub n: usize,
    pub d: usize,
    pub k: usize,
    /// The data mean; everything on the device is centred on it.
    pub center: Vec<f64>,
    /// The data's variance per feature.
    pub variance: Vec<f64>,
    /// Variances below these (per feature) are rounding error: `10 d eps` times the data's variance.
    pub variance_floor: Vec<f64>,
    /// Centred `X` in row chunks, `[c, d]`.
    pub x: Vec<Tensor<2>>,
    /// The rows for the host kernels, where they serve the device.
    pub(crate) host: Option<HostData>,
    /// `phi(X)` in row chunks, `[c, F]`, when cached (tensor path only).
    phi: Option<Vec<Tensor<2>>>,
    /// Column indices `(a, b)` of the pair features (full and tied).
    pairs: Option<(Tensor<1, Int>, Tensor<1, Int>)>,
    /// Additive log-space mask for labelled rows, `[c, k]`: 0 where the component is allowed,
    /// `-inf` elsewhere. `None` without labels, and on the host path (which applies labels itself).
    pub label_mask: Option<Vec<Tensor<2>>>,
}

/// The mean of the rows of `x` and the (biased) variance of each feature about it.
fn mean_and_variance(x: &Matrix) -> (Vec<f64>, Vec<f64>) {
    let (n, d) = (x.n_rows, x.n_cols);
    let mut center = vec![0.0; d];
    for row in x.rows() {
        center.iter_mut().zip(row).for_each(|(c, v)| *c += v);
    }
    center.iter_mut().for_each(|c| *c /= n as f64);
    let mut variance = vec![0.0; d];
    for row in x.rows() {
        for a in 0..d {
            variance[a] += (row[a] - center[a]).powi(2) / n as f64;
        }
    }
    (center, variance)
}

/// Position of the features of `x_a x_b` (`a <= b`) in `phi`, row-major over the upper triangle.
pub(crate) fn pair_index(a: usize, b: usize, d: usize) -> usize {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    a * d - a * (a + 1) / 2 + b
}

impl Workspace {
    /// Number of features `F` of `phi(x)`.
    pub fn n_features_phi(cov_type: CovarianceType, d: usize) -> usize {
        match cov_type {
            CovarianceType::Full | CovarianceType::Tied => d * (d + 1) / 2 + d + 1,
            CovarianceType::Diag => 2 * d + 1,
            CovarianceType::Spherical => d + 2,
        }
    }

    /// Offset of the linear features `x_a` in `phi`.
    pub fn linear_offset(&self) -> usize {
        match self.cov_type {
            CovarianceType::Full | CovarianceType::Tied => self.d * (self.d + 1) / 2,
            CovarianceType::Diag => self.d,
            CovarianceType::Spherical => 1,
        }
    }

    /// Uploads `x` (and the labels' mask) for a model with `k` components, centred on its own mean.
    pub fn new(
        x: &Matrix,
        labels: Option<&[Option<usize>]>,
        k: usize,
        cov_type: CovarianceType,
        compute: &Compute,
    ) -> Self {
        let (center, variance) = mean_and_variance(x);
        Self::with_centre(x, labels, k, cov_type, compute, center, variance)
    }

    /// Uploads `x` centred on a given `center`, with a given per-feature `variance` (of the data the
    /// centre was estimated on): a stream's mini-batches all share the centre and scale of its first.
    pub fn with_centre(
        x: &Matrix,
        labels: Option<&[Option<usize>]>,
        k: usize,
        cov_type: CovarianceType,
        compute: &Compute,
        center: Vec<f64>,
        variance: Vec<f64>,
    ) -> Self {
        let (n, d) = (x.n_rows, x.n_cols);
        let on_host = host::serves(compute);
        let variance_floor = variance
            .iter()
            .map(|v| 10.0 * d as f64 * compute.eps() * v)
            .collect();
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < n {
            let end = (start + CHUNK_ROWS).min(n);
            let mut values = x.values[start * d..end * d].to_vec();
            for row in values.chunks_exact_mut(d) {
                row.iter_mut().zip(&center).for_each(|(v, c)| *v -= c);
            }
            chunks.push(compute.tensor(values, [end - start, d]));
            start = end;
        }
        let pairs = matches!(cov_type, CovarianceType::Full | CovarianceType::Tied).then(|| {
            let (mut ia, mut ib) = (Vec::new(), Vec::new());
            for a in 0..d {
                for b in a..d {
                    ia.push(a as i64);
                    ib.push(b as i64);
                }
            }
            let len = ia.len();
            (
                Tensor::<1, Int>::from_data(TensorData::new(ia, [len]), &compute.device),
                Tensor::<1, Int>::from_data(TensorData::new(ib, [len]), &compute.device),
            )
        });
        let mut ws = Self {
            compute: compute.clone(),
            cov_type,
            n,
            d,
            k,
            center,
            variance,
            variance_floor,
            x: chunks,
            host: None,
            phi: None,
            pairs,
            label_mask: None,
        };
        if on_host {
            let floor = ws.log_ratio_floor();
            ws.host = Some(HostData::new(x, &ws.center, labels, k, cov_type, floor));
        } else {
            ws.prepare_tensor_path(labels);
        }
        ws
    }

    /// What the tensor path needs beyond `x`: the labels' masks, and `phi(X)` where it fits.
    fn prepare_tensor_path(&mut self, labels: Option<&[Option<usize>]>) {
        let k = self.k;
        self.label_mask = labels.map(|labels| {
            self.x
                .iter()
                .scan(0, |start, x| {
                    let rows = x.dims()[0];
                    let mut mask = vec![0.0; rows * k];
                    for (i, label) in labels[*start..*start + rows].iter().enumerate() {
                        if let Some(l) = label {
                            for j in (0..k).filter(|&j| j != *l) {
                                mask[i * k + j] = f64::NEG_INFINITY;
                            }
                        }
                    }
                    *start += rows;
                    Some(self.compute.tensor(mask, [rows, k]))
                })
                .collect()
        });
        if self.n * Self::n_features_phi(self.cov_type, self.d) <= CACHE_ELEMENTS {
            self.phi = Some((0..self.x.len()).map(|c| self.build_phi(c)).collect());
        }
    }

    /// This workspace on the tensor path even where the host kernels serve its device: the reference
    /// the host kernels are tested against.
    #[cfg(test)]
    pub(crate) fn on_tensors(mut self, labels: Option<&[Option<usize>]>) -> Self {
        self.host = None;
        self.prepare_tensor_path(labels);
        self
    }

    fn build_phi(&self, chunk: usize) -> Tensor<2> {
        let x = self.x[chunk].clone();
        let rows = x.dims()[0];
        let ones = Tensor::<2>::ones(
            [rows, 1],
            (&self.compute.device, self.compute.precision.dtype()),
        );
        let second = match (&self.pairs, self.cov_type) {
            (Some((ia, ib)), _) => {
                x.clone().select(1, ia.clone()) * x.clone().select(1, ib.clone())
            }
            (None, CovarianceType::Diag) => x.clone() * x.clone(),
            (None, _) => (x.clone() * x.clone()).sum_dim(1),
        };
        Tensor::cat(vec![second, x, ones], 1)
    }

    /// `phi(X)` of chunk `chunk`.
    pub fn phi(&self, chunk: usize) -> Tensor<2> {
        match &self.phi {
            Some(cached) => cached[chunk].clone(),
            None => self.build_phi(chunk),
        }
    }

    pub fn n_chunks(&self) -> usize {
        self.x.len()
    }

    /// Squared Mahalanobis distances `||(x - mu)^T P||^2` of chunk `chunk`, `[c, 1]`, computed centred on
    /// `mu` (given centred on the data mean) with `P` a `[d, d]` factor of the precision.
    pub fn exact_mahalanobis(&self, chunk: usize, mu_centred: &[f64], p: &[f64]) -> Tensor<2> {
        let d = self.d;
        let mu = self.compute.tensor(mu_centred.to_vec(), [1, d]);
        let y = (self.x[chunk].clone() - mu).matmul(self.compute.tensor(p.to_vec(), [d, d]));
        (y.clone() * y).sum_dim(1)
    }

    /// Weighted scatter `sum_i r_i (x_i - mu)(x_i - mu)^T`, `[d, d]` row-major, centred on `mu` (given
    /// centred on the data mean), with weights `resp[chunk][:, j]`.
    pub fn exact_scatter(&self, resp: &[Tensor<2>], j: usize, mu_centred: &[f64]) -> Vec<f64> {
        let d = self.d;
        let mu = self.compute.tensor(mu_centred.to_vec(), [1, d]);
        let mut acc: Option<Tensor<2>> = None;
        for (x, r) in self.x.iter().zip(resp) {
            let rows = x.dims()[0];
            let diff = x.clone() - mu.clone();
            let w = r.clone().slice([0..rows, j..j + 1]);
            let part = (diff.clone() * w).transpose().matmul(diff);
            acc = Some(match acc {
                Some(a) => a + part,
                None => part,
            });
        }
        let mut s = emvae_core::tensor::tensor_to_vec(acc.expect("at least one chunk"));
        symmetrise(&mut s, d);
        s
    }
}

/// Replaces a `[d, d]` matrix by the mean of it and its transpose.
///
/// `(r diff)^T diff` rounds `s_ab` and `s_ba` differently (by ~1e-7 relative in f32): a model file must
/// hold a symmetric covariance to pass validation when it is read back.
pub(crate) fn symmetrise(s: &mut [f64], d: usize) {
    for a in 0..d {
        for b in 0..a {
            let m = 0.5 * (s[a * d + b] + s[b * d + a]);
            s[a * d + b] = m;
            s[b * d + a] = m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pair_index;

    #[test]
    fn pair_indices_enumerate_the_upper_triangle() {
        let d = 4;
        let mut expected = 0;
        for a in 0..d {
            for b in a..d {
                assert_eq!(pair_index(a, b, d), expected);
                assert_eq!(pair_index(b, a, d), expected);
                expected += 1;
            }
        }
    }
}

//! The data of a fit, held on the device in row chunks.
//!
//! Full and tied covariances need `[rows, k, d]` intermediates; processing the rows in chunks bounds that
//! to a few megabytes, which keeps it in cache and the memory of a fit at O(n (d + k)).

use burn::tensor::Tensor;
use emvae_core::data::Matrix;
use emvae_core::tensor::Compute;

use super::params::CovarianceType;

/// Elements of a `[rows, k, d]` intermediate per chunk.
const CHUNK_ELEMENTS: usize = 1 << 19;

pub(crate) struct Workspace {
    pub compute: Compute,
    pub cov_type: CovarianceType,
    pub n: usize,
    pub d: usize,
    pub k: usize,
    /// `X` in row chunks, `[c, d]`.
    pub x: Vec<Tensor<2>>,
    /// `X * X` in row chunks (diag and spherical).
    pub x_sq: Vec<Tensor<2>>,
    /// `X^T X`, `[d, d]` (tied).
    pub xtx: Option<Tensor<2>>,
    /// Additive log-space mask for labelled rows, `[c, k]`: 0 where the component is allowed,
    /// `-inf` elsewhere. `None` without labels.
    pub label_mask: Option<Vec<Tensor<2>>>,
}

impl Workspace {
    pub fn rows_per_chunk(n: usize, d: usize, k: usize) -> usize {
        (CHUNK_ELEMENTS / (k * d).max(1)).clamp(64, n.max(64))
    }

    /// Uploads `x` (and the labels' mask) for a model with `k` components.
    pub fn new(
        x: &Matrix,
        labels: Option<&[Option<usize>]>,
        k: usize,
        cov_type: CovarianceType,
        compute: &Compute,
        fitting: bool,
    ) -> Self {
        let (n, d) = (x.n_rows, x.n_cols);
        let rows = Self::rows_per_chunk(n, d, k);
        let mut chunks = Vec::new();
        let mut masks = Vec::new();
        let mut start = 0;
        while start < n {
            let end = (start + rows).min(n);
            let c = x.slice_rows(start, end);
            chunks.push(compute.matrix(&c));
            if let Some(labels) = labels {
                let mut mask = vec![0.0; (end - start) * k];
                for (i, label) in labels[start..end].iter().enumerate() {
                    if let Some(l) = label {
                        for j in 0..k {
                            if j != *l {
                                mask[i * k + j] = f64::NEG_INFINITY;
                            }
                        }
                    }
                }
                masks.push(compute.tensor(mask, [end - start, k]));
            }
            start = end;
        }
        let needs_sq = matches!(cov_type, CovarianceType::Diag | CovarianceType::Spherical);
        // X^T X is constant over a fit of a tied model; prediction does not need it.
        let x_sq = if needs_sq {
            chunks.iter().map(|c| c.clone() * c.clone()).collect()
        } else {
            Vec::new()
        };
        let xtx = (fitting && cov_type == CovarianceType::Tied).then(|| {
            chunks
                .iter()
                .map(|c| c.clone().transpose().matmul(c.clone()))
                .reduce(|a, b| a + b)
                .expect("at least one chunk")
        });
        Self {
            compute: compute.clone(),
            cov_type,
            n,
            d,
            k,
            x: chunks,
            x_sq,
            xtx,
            label_mask: labels.map(|_| masks),
        }
    }
}

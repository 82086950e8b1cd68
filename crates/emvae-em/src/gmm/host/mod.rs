//! The E-step, and the M-step's statistics, on the host: for CPU devices in f64.
//!
//! On a CPU backend the tensors live in host memory anyway, and an E-step composed of tensor operations
//! pays for what composition costs: every intermediate `[n, k]` or `[n, F]` tensor written out and read
//! back, single-threaded element-wise passes, a scalar `exp` per entry. Here one fused pass per tile of
//! rows does it all while the tile is in cache ([`pass`]): build `phi` ([`features`]), `Phi W`
//! ([`products`]), normalise ([`normalise`]: max, vectorised `exp`, sum, `ln`, scale), and add the tile's
//! `R^T Phi` to the M-step's statistics, tiles in parallel ([`tiles`]). `Phi` is never stored whole
//! (for `n = 100,000`, `d = 16` it would be 122 MB, read twice per iteration).
//!
//! Other devices (GPUs) and f32 keep the tensor path of [`super::estep`]; both compute the same
//! quantities, and the choice is made once per workspace by [`serves`].

mod features;
mod normalise;
mod pass;
mod products;
mod tiles;
mod vmath;

use emvae_core::data::Matrix;
use emvae_core::tensor::{Compute, Precision};

use super::params::CovarianceType;
use super::workspace::Workspace;
pub(crate) use pass::RespSource;
use tiles::Tiling;

/// Whether the host kernels serve `compute`: f64 on a backend whose tensors are in host memory.
pub(crate) fn serves(compute: &Compute) -> bool {
    compute.host_memory && compute.precision == Precision::F64
}

/// No label.
const UNLABELLED: u32 = u32::MAX;

/// A workspace's rows in the host kernels' layout.
pub(crate) struct HostData {
    tiling: Tiling,
    cov_type: CovarianceType,
    d: usize,
    k: usize,
    f: usize,
    /// The centred rows, tile by tile transposed: tile `t` is `[d, c_t]` row-major from
    /// `t * rows * d`.
    xt: Vec<f64>,
    /// Each row's label, [`UNLABELLED`] for none; `None` without labels.
    labels: Option<Vec<u32>>,
    /// Least `log r` kept (see [`normalise`]).
    floor: f64,
}

impl HostData {
    /// The rows of `x` centred on `center`, with their labels, for a `k`-component mixture.
    pub fn new(
        x: &Matrix,
        center: &[f64],
        labels: Option<&[Option<usize>]>,
        k: usize,
        cov_type: CovarianceType,
        floor: f64,
    ) -> Self {
        let (n, d) = (x.n_rows, x.n_cols);
        let f = Workspace::n_features_phi(cov_type, d);
        let tiling = Tiling::new(n, f);
        let mut xt = vec![0.0; n * d];
        for t in 0..tiling.n_tiles() {
            let rows = tiling.tile(t);
            let c = rows.len();
            let block = &mut xt[rows.start * d..rows.end * d];
            for (i, row) in (rows.start..rows.end).map(|i| (i - rows.start, x.row(i))) {
                for a in 0..d {
                    block[a * c + i] = row[a] - center[a];
                }
            }
        }
        let labels = labels.map(|l| {
            l.iter()
                .map(|v| v.map_or(UNLABELLED, |j| j as u32))
                .collect()
        });
        Self {
            tiling,
            cov_type,
            d,
            k,
            f,
            xt,
            labels,
            floor,
        }
    }

    /// Tile `t`'s centred rows, `[d, c]` row-major, and `c`.
    fn tile_rows(&self, t: usize) -> (&[f64], usize) {
        let rows = self.tiling.tile(t);
        (&self.xt[rows.start * self.d..rows.end * self.d], rows.len())
    }
}

#[cfg(test)]
mod tests;

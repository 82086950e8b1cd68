//! The fused passes over the tiles: the E-step with the M-step's statistics, the responsibilities for
//! prediction, and the M-step's exact scatters.

use rayon::prelude::*;

use super::features::tile_features;
use super::normalise::{self, normalise_tile};
use super::products::{add_gram, add_moments, log_joint};
use super::tiles::{tree_sum, with_scratch};
use super::{HostData, UNLABELLED};
use crate::gmm::estep::{EStepWeights, ExactComponent};
use crate::gmm::profile::{Phase, Stopwatch};

/// Where the M-step's exact recomputation finds the responsibilities.
pub(crate) enum RespSource<'a> {
    /// Recomputed tile by tile from the E-step's weights (labels applied): the E-step's own.
    Recompute(&'a EStepWeights),
    /// Given, `[n, k]` row-major.
    Rows(&'a [f64]),
}

/// A tile's working memory, carved from the thread's scratch.
struct Buffers<'a> {
    /// Features, `[F, c]`.
    phit: &'a mut [f64],
    /// `log p(x_i, z = j)`, then responsibilities, column-major `[c, k]`.
    w: &'a mut [f64],
    /// `log p(x_i)`, `[c]`.
    log_norm: &'a mut [f64],
    /// The normalisation's scratch.
    norm: &'a mut [f64],
    /// The exact components' and scatters' scratch, `2 d c + c`.
    exact: &'a mut [f64],
}

impl HostData {
    /// Scratch per tile, in values.
    fn scratch_len(&self) -> usize {
        let c = self.tiling.rows;
        (self.f + self.k + 1 + 2 * self.d + 1) * c + normalise::scratch_len(c)
    }

    /// Runs `body` with buffers for tile `t` (sized to its rows) from this thread's scratch.
    fn with_buffers<R>(&self, t: usize, body: impl FnOnce(&mut Buffers) -> R) -> R {
        let (c_max, c) = (self.tiling.rows, self.tiling.tile(t).len());
        with_scratch(self.scratch_len(), |buf| {
            let (phit, rest) = buf.split_at_mut(self.f * c_max);
            let (w, rest) = rest.split_at_mut(self.k * c_max);
            let (log_norm, rest) = rest.split_at_mut(c_max);
            let (norm, exact) = rest.split_at_mut(normalise::scratch_len(c_max));
            body(&mut Buffers {
                phit: &mut phit[..self.f * c],
                w: &mut w[..self.k * c],
                log_norm: &mut log_norm[..c],
                norm,
                exact: &mut exact[..(2 * self.d + 1) * c],
            })
        })
    }

    /// Tile `t`'s features into `b.phit` and `log p(x_i, z = j)` into `b.w`, with labelled rows
    /// clamped to their component when `labelled`.
    fn log_joint(
        &self,
        e: &EStepWeights,
        t: usize,
        labelled: bool,
        b: &mut Buffers,
        clock: &mut Stopwatch,
    ) {
        let (xt, c) = self.tile_rows(t);
        tile_features(self.cov_type, xt, c, b.phit);
        clock.lap(Phase::Features);
        log_joint(b.phit, &e.w, c, self.k, b.w);
        for ex in &e.exact {
            exact_column(xt, c, ex, &mut b.w[ex.j * c..(ex.j + 1) * c], b.exact);
        }
        if let (true, Some(labels)) = (labelled, &self.labels) {
            for (i, &l) in labels[self.tiling.tile(t)].iter().enumerate() {
                if l != UNLABELLED {
                    for j in (0..self.k).filter(|&j| j != l as usize) {
                        b.w[j * c + i] = f64::NEG_INFINITY;
                    }
                }
            }
        }
        clock.lap(Phase::LogJoint);
    }

    /// Tile `t`'s responsibilities into `b.w` and `log p(x_i)` into `b.log_norm` (features in `b.phit`).
    fn responsibilities(
        &self,
        e: &EStepWeights,
        t: usize,
        labelled: bool,
        b: &mut Buffers,
        clock: &mut Stopwatch,
    ) {
        self.log_joint(e, t, labelled, b, clock);
        let c = b.log_norm.len();
        normalise_tile(b.w, c, self.floor, b.log_norm, b.norm);
        clock.lap(Phase::Normalise);
    }

    /// The E-step with the M-step's statistics in one pass: `(sum_i log p(x_i), G^T)` with
    /// `G^T = Phi^T R`, `[F, k]` row-major (labels applied).
    pub fn e_step(&self, e: &EStepWeights) -> (f64, Vec<f64>) {
        let fk = self.f * self.k;
        let mut pass = Stopwatch::start();
        let mut sums = tree_sum(0..self.tiling.n_leaves(), &|l| {
            let mut partial = vec![0.0; fk + 1];
            let mut clock = Stopwatch::start();
            for t in self.tiling.leaf(l) {
                self.with_buffers(t, |b| {
                    self.responsibilities(e, t, true, b, &mut clock);
                    partial[fk] += b.log_norm.iter().sum::<f64>();
                    add_moments(b.phit, b.w, b.log_norm.len(), self.k, &mut partial[..fk]);
                    clock.lap(Phase::Moments);
                });
            }
            partial
        });
        pass.lap(Phase::Pass);
        let total = sums
            .pop()
            .expect("the log-likelihood follows the statistics");
        (total, sums)
    }

    /// `G^T = Phi^T R` for given responsibilities `resp` (`[n, k]` row-major).
    pub fn moments_of(&self, resp: &[f64]) -> Vec<f64> {
        let k = self.k;
        tree_sum(0..self.tiling.n_leaves(), &|l| {
            let mut partial = vec![0.0; self.f * k];
            for t in self.tiling.leaf(l) {
                self.with_buffers(t, |b| {
                    let (xt, c) = self.tile_rows(t);
                    tile_features(self.cov_type, xt, c, b.phit);
                    transpose_rows(&resp[self.tiling.tile(t).start * k..], c, k, b.w);
                    add_moments(b.phit, b.w, c, k, &mut partial);
                });
            }
            partial
        })
    }

    /// Per row, `width` values from tile `t`'s buffers by `write(buffers, c, out)`, rows in parallel.
    fn per_row(
        &self,
        width: usize,
        write: impl Fn(usize, &mut Buffers, &mut [f64]) + Sync,
    ) -> Vec<f64> {
        let mut out = vec![0.0; self.tiling.n * width];
        let leaf_len = self.tiling.tiles_per_leaf * self.tiling.rows * width;
        out.par_chunks_mut(leaf_len)
            .enumerate()
            .for_each(|(l, chunk)| {
                let first = self.tiling.leaf_rows(l).start;
                for t in self.tiling.leaf(l) {
                    let rows = self.tiling.tile(t);
                    let dst = &mut chunk[(rows.start - first) * width..(rows.end - first) * width];
                    self.with_buffers(t, |b| write(t, b, dst));
                }
            });
        out
    }

    /// `log p(x_i)` per row (labels ignored).
    pub fn score_samples(&self, e: &EStepWeights) -> Vec<f64> {
        self.per_row(1, |t, b, out| {
            self.responsibilities(e, t, false, b, &mut Stopwatch::start());
            out.copy_from_slice(b.log_norm);
        })
    }

    /// `p(z = j | x_i)`, `[n, k]` row-major (labels ignored).
    pub fn predict_proba(&self, e: &EStepWeights) -> Vec<f64> {
        self.per_row(self.k, |t, b, out| {
            self.responsibilities(e, t, false, b, &mut Stopwatch::start());
            let c = b.log_norm.len();
            for (i, row) in out.chunks_exact_mut(self.k).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = b.w[j * c + i];
                }
            }
        })
    }

    /// The weighted scatters `sum_i r_ij (x_i - mu)(x_i - mu)^T` (`[d, d]` row-major, one after
    /// another) of components `(j, mu)`, `mu` centred like the rows.
    pub fn scatters(&self, source: RespSource, components: &[(usize, &[f64])]) -> Vec<f64> {
        let (d, k) = (self.d, self.k);
        tree_sum(0..self.tiling.n_leaves(), &|l| {
            let mut partial = vec![0.0; components.len() * d * d];
            for t in self.tiling.leaf(l) {
                self.with_buffers(t, |b| {
                    let (xt, c) = self.tile_rows(t);
                    match source {
                        RespSource::Recompute(e) => {
                            self.responsibilities(e, t, true, b, &mut Stopwatch::start())
                        }
                        RespSource::Rows(resp) => {
                            transpose_rows(&resp[self.tiling.tile(t).start * k..], c, k, b.w)
                        }
                    }
                    let (diff, weighted) = b.exact[..2 * d * c].split_at_mut(d * c);
                    for (s, &(j, mu)) in partial.chunks_exact_mut(d * d).zip(components) {
                        let r = &b.w[j * c..(j + 1) * c];
                        for a in 0..d {
                            let (x, dst) = (&xt[a * c..(a + 1) * c], &mut diff[a * c..(a + 1) * c]);
                            let wd = &mut weighted[a * c..(a + 1) * c];
                            for i in 0..c {
                                dst[i] = x[i] - mu[a];
                                wd[i] = dst[i] * r[i];
                            }
                        }
                        add_gram(weighted, diff, c, s);
                    }
                });
            }
            partial
        })
    }
}

/// `w[j c + i] = rows[i k + j]` for the `c` rows of a tile.
fn transpose_rows(rows: &[f64], c: usize, k: usize, w: &mut [f64]) {
    for (i, row) in rows[..c * k].chunks_exact(k).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            w[j * c + i] = v;
        }
    }
}

/// `out_i = constant - 1/2 |(x_i - mu)^T P|^2` for a component computed centred on its own mean, over a
/// tile `xt` (`[d, c]`); `scratch` holds `(d + 1) c` values.
fn exact_column(xt: &[f64], c: usize, ex: &ExactComponent, out: &mut [f64], scratch: &mut [f64]) {
    let d = xt.len() / c;
    let (diff, rest) = scratch.split_at_mut(d * c);
    let acc = &mut rest[..c];
    for a in 0..d {
        for (v, &x) in diff[a * c..(a + 1) * c]
            .iter_mut()
            .zip(&xt[a * c..(a + 1) * c])
        {
            *v = x - ex.mu_centred[a];
        }
    }
    out.fill(0.0);
    for b in 0..d {
        acc.fill(0.0);
        for a in 0..d {
            let p = ex.p[a * d + b];
            for (s, &v) in acc.iter_mut().zip(&diff[a * c..(a + 1) * c]) {
                *s += v * p;
            }
        }
        for (o, &y) in out.iter_mut().zip(acc.iter()) {
            *o += y * y;
        }
    }
    for o in out.iter_mut() {
        *o = ex.constant - 0.5 * *o;
    }
}

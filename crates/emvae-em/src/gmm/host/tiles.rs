//! How the rows are cut for the host kernels, and the reproducible parallel sum over the pieces.
//!
//! Rows go in tiles small enough that a tile's features (`[F, c]`) stay in the core's L2 cache between
//! the two matrix products that read them; tiles go in leaves of a fixed binary tree whose leaves run in
//! parallel (rayon's pool, the one burn uses). Partial sums are added along that tree, whose shape
//! depends only on `n` and `F`: results do not depend on the number of threads or on scheduling, and
//! the pairwise order loses less to rounding than a running sum.

use std::cell::RefCell;
use std::ops::Range;

/// Target size of a tile's features, in values (256 KiB of f64: L2 is 1-2 MiB per core on current
/// x86 server parts, and the responsibilities, weights and packing buffers share it).
const TILE_VALUES: usize = 1 << 15;
/// Tile rows at most and at least: `c` is a multiple of 8 (one AVX-512 register of f64) in between.
const MAX_TILE_ROWS: usize = 512;
const MIN_TILE_ROWS: usize = 32;
/// Rows per leaf of the reduction tree: enough work per task to hide rayon's overhead, few enough
/// leaves' partial sums (`k F` values each) to stay small, and many leaves for two to eight threads.
const LEAF_ROWS: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tiling {
    pub n: usize,
    /// Rows per tile (the last tile may be shorter).
    pub rows: usize,
    pub tiles_per_leaf: usize,
}

impl Tiling {
    /// The tiling of `n` rows with `f` features each.
    pub fn new(n: usize, f: usize) -> Self {
        let rows = (TILE_VALUES / f.max(1) / 8 * 8).clamp(MIN_TILE_ROWS, MAX_TILE_ROWS);
        Self {
            n,
            rows,
            tiles_per_leaf: (LEAF_ROWS / rows).max(1),
        }
    }

    pub fn n_tiles(&self) -> usize {
        self.n.div_ceil(self.rows)
    }

    /// The rows of tile `t`.
    pub fn tile(&self, t: usize) -> Range<usize> {
        t * self.rows..((t + 1) * self.rows).min(self.n)
    }

    pub fn n_leaves(&self) -> usize {
        self.n_tiles().div_ceil(self.tiles_per_leaf)
    }

    /// The tiles of leaf `l`.
    pub fn leaf(&self, l: usize) -> Range<usize> {
        l * self.tiles_per_leaf..((l + 1) * self.tiles_per_leaf).min(self.n_tiles())
    }

    /// The rows of leaf `l`.
    pub fn leaf_rows(&self, l: usize) -> Range<usize> {
        let tiles = self.leaf(l);
        self.tile(tiles.start).start..self.tile(tiles.end - 1).end
    }
}

/// `sum_l leaf(l)` over `l in leaves`, element-wise over vectors of one length, leaves in parallel and
/// sums in a fixed tree (halves split at the midpoint).
pub(crate) fn tree_sum<F>(leaves: Range<usize>, leaf: &F) -> Vec<f64>
where
    F: Fn(usize) -> Vec<f64> + Sync,
{
    assert!(!leaves.is_empty(), "a sum over no leaves");
    if leaves.len() == 1 {
        return leaf(leaves.start);
    }
    let mid = leaves.start + leaves.len() / 2;
    let (mut a, b) = rayon::join(
        || tree_sum(leaves.start..mid, leaf),
        || tree_sum(mid..leaves.end, leaf),
    );
    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
    a
}

thread_local! {
    /// Per-thread working memory of the kernels, kept between calls: fresh pages would be zeroed by
    /// the kernel on every E-step.
    static SCRATCH: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch, at least `len` values long (contents unspecified).
///
/// `f` must not start parallel work of its own: rayon could run another task needing the scratch on
/// this thread meanwhile (which would panic on the `RefCell`).
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f64]) -> R) -> R {
    SCRATCH.with_borrow_mut(|buf| {
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_and_leaves_cover_the_rows_once() {
        for (n, f) in [
            (1, 153),
            (100_000, 153),
            (100_000, 33),
            (4097, 7),
            (5, 100_000),
        ] {
            let t = Tiling::new(n, f);
            assert!(t.rows.is_multiple_of(8) && t.rows >= MIN_TILE_ROWS && t.rows <= MAX_TILE_ROWS);
            let mut next = 0;
            for l in 0..t.n_leaves() {
                let rows = t.leaf_rows(l);
                assert_eq!(rows.start, next);
                for tile in t.leaf(l) {
                    assert_eq!(t.tile(tile).start, next);
                    next = t.tile(tile).end;
                }
                assert_eq!(rows.end, next);
            }
            assert_eq!(next, n);
        }
    }

    #[test]
    fn the_tree_sum_is_the_sum_whatever_the_threads() {
        let leaf = |l: usize| vec![1.0 / (l as f64 + 1.0), l as f64];
        let sums: Vec<Vec<f64>> = [1, 2, 3]
            .into_iter()
            .map(|threads| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| tree_sum(0..1000, &leaf))
            })
            .collect();
        assert!(sums.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(sums[0][1], 999.0 * 1000.0 / 2.0);
    }
}

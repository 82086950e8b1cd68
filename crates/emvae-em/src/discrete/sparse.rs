//! Sparse non-negative data in compressed sparse row (CSR) form.
//!
//! Binary rows (the Bernoulli mixture) keep the columns of their ones; count rows (the multinomial
//! mixture) their `(word, count)` pairs. Both E-steps are then one sparse-dense product
//! `log p(x_i, z = j) = b_j + sum_a x_ia W_aj` over the stored entries, and both M-steps need the weighted
//! column sums `S_aj = sum_i x_ia r_ij`. Either costs `O(nnz k)`.
//!
//! The column sums are accumulated in one of two ways, both with every sum in a fixed order whatever
//! the number of threads (results are bit-identical run to run, which resuming a checkpoint relies on):
//! - few columns (`d k` small, the Bernoulli mixture): per fixed block of rows into a dense `[d, k]`
//!   accumulator that stays in cache, the blocks' sums then added in block order;
//! - many columns (a vocabulary): column by column over the transpose (compressed sparse columns,
//!   built on first use), so no `[V, k]` accumulator per block is needed.

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::driver::fingerprint;

/// Rows per parallel task of the E-step: fixed, so nothing depends on the thread count.
pub(crate) const BLOCK_ROWS: usize = 512;
/// Rows per block of the accumulated column sums.
const SUM_BLOCK_ROWS: usize = 4096;
/// Largest `[d, k]` accumulator (entries, 512 KB) summed per block of rows; above it, per column.
const BLOCK_ACCUMULATOR_LIMIT: usize = 1 << 16;

#[derive(Debug, Clone)]
pub(crate) struct SparseRows {
    pub n_rows: usize,
    pub n_cols: usize,
    /// Row `i`'s entries are `offsets[i]..offsets[i + 1]`.
    offsets: Vec<usize>,
    cols: Vec<u32>,
    /// `None`: every stored value is 1 (binary data).
    values: Option<Vec<f64>>,
    /// The transpose, built when first needed.
    transpose: OnceLock<Transpose>,
}

/// The same rows, whether or not their transpose was built.
impl PartialEq for SparseRows {
    fn eq(&self, other: &Self) -> bool {
        (self.n_rows, self.n_cols) == (other.n_rows, other.n_cols)
            && self.offsets == other.offsets
            && self.cols == other.cols
            && self.values == other.values
    }
}

/// Compressed sparse columns: column `a`'s entries are `offsets[a]..offsets[a + 1]`, rows ascending.
#[derive(Debug, Clone)]
struct Transpose {
    offsets: Vec<usize>,
    rows: Vec<u32>,
    values: Option<Vec<f64>>,
}

/// Builds a [`SparseRows`] row by row.
pub(crate) struct SparseBuilder {
    n_cols: usize,
    offsets: Vec<usize>,
    cols: Vec<u32>,
    values: Option<Vec<f64>>,
}

impl SparseBuilder {
    /// `n_cols` must fit in `u32` (checked by the constructors that take user data).
    pub fn new(n_cols: usize, binary: bool) -> Self {
        Self {
            n_cols,
            offsets: vec![0],
            cols: Vec::new(),
            values: (!binary).then(Vec::new),
        }
    }

    /// Adds an entry to the current row; columns must ascend within a row and values be > 0.
    pub fn push(&mut self, col: usize, value: f64) {
        self.cols.push(col as u32);
        if let Some(v) = &mut self.values {
            v.push(value);
        }
    }

    pub fn end_row(&mut self) {
        self.offsets.push(self.cols.len());
    }

    /// Appends the rows of `other` (of the same width and kind).
    pub fn append(&mut self, other: SparseBuilder) {
        let base = self.cols.len();
        self.offsets
            .extend(other.offsets[1..].iter().map(|o| o + base));
        self.cols.extend(other.cols);
        if let (Some(v), Some(o)) = (&mut self.values, other.values) {
            v.extend(o);
        }
    }

    pub fn finish(self) -> SparseRows {
        SparseRows {
            n_rows: self.offsets.len() - 1,
            n_cols: self.n_cols,
            offsets: self.offsets,
            cols: self.cols,
            values: self.values,
            transpose: OnceLock::new(),
        }
    }
}

impl SparseRows {
    /// Number of stored entries.
    #[cfg(test)]
    pub fn nnz(&self) -> usize {
        self.cols.len()
    }

    /// Row `i`'s `(column, value)` pairs.
    pub fn row(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let range = self.offsets[i]..self.offsets[i + 1];
        let values = self.values.as_ref().map(|v| &v[range.clone()]);
        self.cols[range]
            .iter()
            .enumerate()
            .map(move |(e, &a)| (a as usize, values.map_or(1.0, |v| v[e])))
    }

    /// Sum of row `i`'s values (a document's length).
    pub fn row_sum(&self, i: usize) -> f64 {
        self.row(i).map(|(_, v)| v).sum()
    }

    /// `out[i - start, j] = bias[j] + sum_a x_ia w[a, j]` for the rows `start..` that `out` (`[rows, k]`,
    /// `k = bias.len()`) holds; `w` is `[n_cols, k]` row-major.
    pub fn linear_rows(&self, start: usize, w: &[f64], bias: &[f64], out: &mut [f64]) {
        let k = bias.len();
        for (i, row) in out.chunks_exact_mut(k).enumerate() {
            row.copy_from_slice(bias);
            let range = self.offsets[start + i]..self.offsets[start + i + 1];
            match &self.values {
                None => {
                    for &a in &self.cols[range] {
                        let wa = &w[a as usize * k..(a as usize + 1) * k];
                        row.iter_mut().zip(wa).for_each(|(o, w)| *o += w);
                    }
                }
                Some(values) => {
                    for (&a, &v) in self.cols[range.clone()].iter().zip(&values[range]) {
                        let wa = &w[a as usize * k..(a as usize + 1) * k];
                        row.iter_mut().zip(wa).for_each(|(o, w)| *o += v * w);
                    }
                }
            }
        }
    }

    /// `S[a, j] = sum_i x_ia r[i, j]`, `[n_cols, k]` row-major, for `r` `[n_rows, k]` (see the module
    /// documentation for the two ways).
    pub fn transpose_product(&self, r: &[f64], k: usize) -> Vec<f64> {
        if self.n_cols * k <= BLOCK_ACCUMULATOR_LIMIT {
            self.sums_by_row_blocks(r, k)
        } else {
            self.sums_by_column(r, k)
        }
    }

    fn sums_by_row_blocks(&self, r: &[f64], k: usize) -> Vec<f64> {
        let partial: Vec<Vec<f64>> = r
            .par_chunks(SUM_BLOCK_ROWS * k)
            .enumerate()
            .map(|(b, rb)| {
                let mut s = vec![0.0; self.n_cols * k];
                for (i, ri) in rb.chunks_exact(k).enumerate() {
                    for (a, v) in self.row(b * SUM_BLOCK_ROWS + i) {
                        let sa = &mut s[a * k..(a + 1) * k];
                        sa.iter_mut().zip(ri).for_each(|(s, r)| *s += v * r);
                    }
                }
                s
            })
            .collect();
        let mut out = vec![0.0; self.n_cols * k];
        for s in partial {
            out.iter_mut().zip(s).for_each(|(o, s)| *o += s);
        }
        out
    }

    fn sums_by_column(&self, r: &[f64], k: usize) -> Vec<f64> {
        let t = self.transpose.get_or_init(|| self.build_transpose());
        let mut out = vec![0.0; self.n_cols * k];
        out.par_chunks_mut(k)
            .with_min_len(16)
            .enumerate()
            .for_each(|(a, s)| {
                let range = t.offsets[a]..t.offsets[a + 1];
                for (e, &i) in range.clone().zip(&t.rows[range]) {
                    let v = t.values.as_ref().map_or(1.0, |v| v[e]);
                    let ri = &r[i as usize * k..(i as usize + 1) * k];
                    s.iter_mut().zip(ri).for_each(|(s, r)| *s += v * r);
                }
            });
        out
    }

    /// The transpose by a counting sort on the column, which keeps rows ascending in every column.
    fn build_transpose(&self) -> Transpose {
        let mut offsets = vec![0usize; self.n_cols + 1];
        for &a in &self.cols {
            offsets[a as usize + 1] += 1;
        }
        for a in 0..self.n_cols {
            offsets[a + 1] += offsets[a];
        }
        let mut next = offsets.clone();
        let mut rows = vec![0u32; self.cols.len()];
        let mut values = self.values.as_ref().map(|v| vec![0.0; v.len()]);
        for i in 0..self.n_rows {
            for e in self.offsets[i]..self.offsets[i + 1] {
                let a = self.cols[e] as usize;
                rows[next[a]] = i as u32;
                if let (Some(t), Some(v)) = (&mut values, &self.values) {
                    t[next[a]] = v[e];
                }
                next[a] += 1;
            }
        }
        Transpose {
            offsets,
            rows,
            values,
        }
    }

    /// Identifies the data and labels (shape, entries, values), for checkpoints.
    pub fn fingerprint(&self, labels: Option<&[Option<usize>]>) -> String {
        let head = [self.n_rows as u64, self.n_cols as u64];
        let offsets = self.offsets.iter().map(|&o| o as u64);
        let cols = self.cols.iter().map(|&a| u64::from(a));
        let values = self.values.iter().flatten().map(|v| v.to_bits());
        let labels = labels
            .into_iter()
            .flatten()
            .map(|l| l.map_or(u64::MAX, |v| v as u64));
        fingerprint(
            head.into_iter()
                .chain(offsets)
                .chain(cols)
                .chain(values)
                .chain(labels)
                .flat_map(u64::to_le_bytes),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emvae_core::data::{Dataset, Matrix};
    use rand::Rng as _;

    fn dataset(rows: &[Vec<f64>]) -> Dataset {
        Dataset::new(Matrix::from_rows(rows), "x.csv")
    }

    #[test]
    fn products_match_dense_loops() {
        let dense = [
            vec![0.0, 2.0, 0.0],
            vec![1.0, 0.0, 3.0],
            vec![0.0, 0.0, 0.0],
            vec![4.0, 1.0, 0.0],
        ];
        let x = SparseRows::from_counts(&dataset(&dense)).unwrap();
        assert_eq!(x.nnz(), 5);
        let k = 2;
        let w = [0.5, -1.0, 2.0, 0.25, -3.0, 1.5];
        let bias = [0.1, -0.2];
        let mut out = vec![0.0; 4 * k];
        x.linear_rows(0, &w, &bias, &mut out);
        let r = [0.2, 0.8, 0.6, 0.4, 0.5, 0.5, 1.0, 0.0];
        let fresh = x.clone();
        let s = x.sums_by_row_blocks(&r, k);
        assert_eq!(x.sums_by_column(&r, k), s);
        assert_eq!(x, fresh, "building the transpose changes no rows");
        for (i, row) in dense.iter().enumerate() {
            for j in 0..k {
                let expected: f64 = bias[j] + (0..3).map(|a| row[a] * w[a * k + j]).sum::<f64>();
                assert!((out[i * k + j] - expected).abs() < 1e-15);
            }
        }
        for a in 0..3 {
            for j in 0..k {
                let expected: f64 = (0..4).map(|i| dense[i][a] * r[i * k + j]).sum();
                assert!((s[a * k + j] - expected).abs() < 1e-15);
            }
        }
        // A block starting later reads the right rows.
        let mut tail = vec![0.0; k];
        x.linear_rows(3, &w, &bias, &mut tail);
        assert_eq!(tail, out[3 * k..]);
        assert_eq!(x.row(3).collect::<Vec<_>>(), vec![(0, 4.0), (1, 1.0)]);
        assert_eq!(x.row_sum(1), 4.0);
    }

    #[test]
    fn both_column_sums_agree_over_many_blocks() {
        let mut rng = emvae_core::rng::rng_for(3, b"sparse", 0);
        let (n, d, k) = (3 * SUM_BLOCK_ROWS + 17, 40, 3);
        let values: Vec<f64> = (0..n * d)
            .map(|_| f64::from(rng.random::<f64>() < 0.1))
            .collect();
        let data = Dataset::new(Matrix::new(n, d, values.clone()), "random");
        let x = SparseRows::from_binary(&data).unwrap();
        let r: Vec<f64> = (0..n * k).map(|_| rng.random::<f64>()).collect();
        let (by_rows, by_cols) = (x.sums_by_row_blocks(&r, k), x.sums_by_column(&r, k));
        for a in 0..d {
            for j in 0..k {
                let dense: f64 = (0..n).map(|i| values[i * d + a] * r[i * k + j]).sum();
                assert!((by_rows[a * k + j] - dense).abs() < 1e-10);
                assert!((by_cols[a * k + j] - dense).abs() < 1e-10);
            }
        }
    }
}

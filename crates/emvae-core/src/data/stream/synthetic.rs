//! Rows drawn on the fly from a known Gaussian mixture: a stream of any length in constant memory.
//!
//! Row `i` is drawn by the generator of its block of [`BLOCK_ROWS`] rows (seeded from the seed and the
//! block's index): component `j` with probability `pi_j`, then `x = mu_j + L_j e` with
//! `Sigma_j = L_j L_j^T`, `e ~ N(0, I)`. So the rows are a fixed sequence whatever the batch sizes, and
//! a rewind gives them again. (They are not those of [`SyntheticMixture::generate`], which draws a whole
//! data set at once.)

use std::path::{Path, PathBuf};

use rand::Rng as _;
use rand_distr::{Distribution, StandardNormal};

use super::RowStream;
use crate::config::InvalidParam;
use crate::data::synthetic::{MixtureTruth, SyntheticMixture};
use crate::data::{DataError, Matrix};
use crate::linalg;
use crate::rng::{Rng, rng_for};

/// Rows per generator: the unit in which draws are reproducible.
pub const BLOCK_ROWS: usize = 4096;

/// A stream of `n_rows` rows drawn from a Gaussian mixture.
#[derive(Debug, Clone)]
pub struct SyntheticStream {
    truth: MixtureTruth,
    n_rows: usize,
    seed: u64,
    d: usize,
    /// Cumulative weights `[k]`.
    cumulative: Vec<f64>,
    /// Lower Cholesky factors of the covariances `[k, d, d]`.
    factors: Vec<f64>,
    /// The next row to draw, and the generator of its block.
    row: usize,
    rng: Rng,
    source: PathBuf,
}

impl SyntheticStream {
    /// The stream of a `[data.synthetic]` specification: its mixture ([`SyntheticMixture::truth`]),
    /// `n_samples` rows, its seed. Streams carry no labels, so `label_fraction` must be 0.
    pub fn new(spec: &SyntheticMixture) -> Result<Self, InvalidParam> {
        spec.check()?;
        if spec.label_fraction != 0.0 {
            return Err(InvalidParam::new(
                "label_fraction",
                "must be 0 for a stream: streamed rows carry no labels",
            ));
        }
        Self::from_truth(spec.truth(), spec.n_samples, spec.seed)
    }

    /// `n_rows` rows from `truth` (weights `[k]`, means `[k, d]`, covariances `[k, d, d]`), drawn with
    /// generators derived from `seed`. Another seed gives other rows of the same mixture.
    pub fn from_truth(truth: MixtureTruth, n_rows: usize, seed: u64) -> Result<Self, InvalidParam> {
        let k = truth.weights.len();
        if k == 0 {
            return Err(InvalidParam::new(
                "weights",
                "the mixture has no components",
            ));
        }
        if let Some(w) = truth
            .weights
            .iter()
            .find(|w| !(w.is_finite() && **w >= 0.0))
        {
            return Err(InvalidParam::new(
                "weights",
                format!("{w} is not a weight >= 0"),
            ));
        }
        let total: f64 = truth.weights.iter().sum();
        if total <= 0.0 {
            return Err(InvalidParam::new("weights", "the weights sum to 0"));
        }
        let d = truth.means.len() / k;
        if d == 0 || truth.means.len() != k * d {
            return Err(InvalidParam::new(
                "means",
                format!(
                    "{} values are not {k} means of equal length",
                    truth.means.len()
                ),
            ));
        }
        if truth.covariances.len() != k * d * d {
            return Err(InvalidParam::new(
                "covariances",
                format!(
                    "{} values are not {k} matrices {d} x {d}",
                    truth.covariances.len()
                ),
            ));
        }
        let mut factors = Vec::with_capacity(k * d * d);
        for (j, c) in truth.covariances.chunks_exact(d * d).enumerate() {
            let l = linalg::cholesky_lower(c, d).map_err(|e| {
                InvalidParam::new(
                    "covariances",
                    format!("matrix {j} is not positive definite: {e}"),
                )
            })?;
            factors.extend(l);
        }
        let cumulative = truth
            .weights
            .iter()
            .scan(0.0, |acc, w| {
                *acc += w / total;
                Some(*acc)
            })
            .collect();
        Ok(Self {
            source: PathBuf::from(format!(
                "synthetic mixture stream (n_rows = {n_rows}, n_features = {d}, n_components = {k}, seed = {seed})"
            )),
            truth,
            n_rows,
            seed,
            d,
            cumulative,
            factors,
            row: 0,
            rng: rng_for(seed, b"synthetic-stream", 0),
        })
    }

    /// The mixture the rows are drawn from.
    pub fn truth(&self) -> &MixtureTruth {
        &self.truth
    }

    /// Draws the next row into `out`.
    fn draw(&mut self, out: &mut Vec<f64>) {
        if self.row.is_multiple_of(BLOCK_ROWS) {
            self.rng = rng_for(
                self.seed,
                b"synthetic-stream",
                (self.row / BLOCK_ROWS) as u64,
            );
        }
        let d = self.d;
        let u: f64 = self.rng.random();
        let j = self
            .cumulative
            .partition_point(|&c| c <= u)
            .min(self.cumulative.len() - 1);
        let e: Vec<f64> = (0..d)
            .map(|_| StandardNormal.sample(&mut self.rng))
            .collect();
        let l = &self.factors[j * d * d..(j + 1) * d * d];
        let mu = &self.truth.means[j * d..(j + 1) * d];
        for r in 0..d {
            let z: f64 = (0..=r).map(|c| l[r * d + c] * e[c]).sum();
            out.push(mu[r] + z);
        }
        self.row += 1;
    }
}

impl RowStream for SyntheticStream {
    fn n_cols(&self) -> usize {
        self.d
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<Matrix>, DataError> {
        let rows = max_rows.max(1).min(self.n_rows - self.row);
        if rows == 0 {
            return Ok(None);
        }
        let mut values = Vec::with_capacity(rows * self.d);
        for _ in 0..rows {
            self.draw(&mut values);
        }
        Ok(Some(Matrix::new(rows, self.d, values)))
    }

    fn rewind(&mut self) -> Result<(), DataError> {
        self.row = 0;
        Ok(())
    }

    fn source(&self) -> &Path {
        &self.source
    }

    fn len_hint(&self) -> Option<usize> {
        Some(self.n_rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::stream::collect_rows;

    fn spec(n: usize) -> SyntheticMixture {
        SyntheticMixture {
            n_samples: n,
            n_features: 3,
            n_components: 4,
            separation: 4.0,
            label_fraction: 0.0,
            seed: 9,
        }
    }

    #[test]
    fn rows_do_not_depend_on_batch_sizes_and_come_again_after_rewind() {
        let n = 2 * BLOCK_ROWS + 123;
        let mut s = SyntheticStream::new(&spec(n)).unwrap();
        let whole = collect_rows(&mut s, n).unwrap();
        assert_eq!(whole.n_rows, n);
        s.rewind().unwrap();
        assert_eq!(collect_rows(&mut s, 1000).unwrap(), whole);
        s.rewind().unwrap();
        assert_eq!(collect_rows(&mut s, 7).unwrap(), whole);
        let other = SyntheticStream::from_truth(s.truth().clone(), n, 10).unwrap();
        assert_ne!(collect_rows(&mut other.clone(), n).unwrap(), whole);
    }

    #[test]
    fn rows_follow_the_mixture() {
        let n = 200_000;
        let mut s = SyntheticStream::new(&spec(n)).unwrap();
        let x = collect_rows(&mut s, 10_000).unwrap();
        let t = s.truth();
        // The overall mean is sum_j pi_j mu_j, within a few standard errors (the spread of the rows
        // is at most about 4 * separation).
        for a in 0..3 {
            let mean = x.rows().map(|r| r[a]).sum::<f64>() / n as f64;
            let expected: f64 = (0..4).map(|j| t.weights[j] * t.means[j * 3 + a]).sum();
            assert!(
                (mean - expected).abs() < 0.1,
                "feature {a}: {mean} vs {expected}"
            );
        }
    }

    #[test]
    fn bad_mixtures_are_errors_naming_the_key() {
        assert_eq!(
            SyntheticStream::new(&SyntheticMixture {
                label_fraction: 0.5,
                ..spec(10)
            })
            .unwrap_err()
            .key,
            "label_fraction"
        );
        let mut t = SyntheticStream::new(&spec(10)).unwrap().truth().clone();
        t.covariances[0] = -1.0;
        assert_eq!(
            SyntheticStream::from_truth(t, 10, 0).unwrap_err().key,
            "covariances"
        );
    }
}

//! What the fitted discrete mixtures share: the fit's outcome in a model file, information criteria,
//! arg-max prediction and categorical draws.

use emvae_core::config::InvalidParam;
use emvae_core::data::Matrix;
use emvae_core::rng::Rng;
use rand::Rng as _;

/// The outcome fields of a model file, checked against each other.
pub(crate) struct FitSummary {
    pub n_iter: usize,
    pub lower_bound: f64,
    pub lower_bounds: Vec<f64>,
    pub best_restart: usize,
}

impl FitSummary {
    /// Requires `n_iter` to count `lower_bounds`.
    pub fn checked(
        n_iter: usize,
        lower_bound: f64,
        lower_bounds: Vec<f64>,
        best_restart: usize,
    ) -> Result<Self, InvalidParam> {
        if n_iter != lower_bounds.len() {
            return Err(InvalidParam::new(
                "n_iter",
                format!(
                    "is {n_iter} but lower_bounds has {} entries",
                    lower_bounds.len()
                ),
            ));
        }
        Ok(Self {
            n_iter,
            lower_bound,
            lower_bounds,
            best_restart,
        })
    }

    /// `(BIC, AIC) = (-2 n score + p ln n, -2 n score + 2 p)` for `p` free parameters.
    pub fn criteria(score: f64, n: usize, p: usize) -> (f64, f64) {
        let (n, p) = (n as f64, p as f64);
        (-2.0 * score * n + p * n.ln(), -2.0 * score * n + 2.0 * p)
    }
}

/// The column of the largest entry of every row (the first on ties).
pub(crate) fn argmax_rows(m: &Matrix) -> Vec<usize> {
    m.rows()
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |best, (j, &v)| {
                    if v > best.1 { (j, v) } else { best }
                })
                .0
        })
        .collect()
}

/// An index drawn with probability proportional to `p` (non-negative, not all 0).
pub(crate) fn draw_categorical(p: &[f64], rng: &mut Rng) -> usize {
    let total: f64 = p.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (j, &v) in p.iter().enumerate() {
        if u < v {
            return j;
        }
        u -= v;
    }
    // Rounding left `u` past the end: the last outcome with mass.
    p.iter().rposition(|&v| v > 0.0).unwrap_or(0)
}

/// Draws from one categorical distribution many times by binary search in its cumulative sums.
pub(crate) struct Cumulative(Vec<f64>);

impl Cumulative {
    pub fn new(p: &[f64]) -> Self {
        let mut acc = 0.0;
        Self(
            p.iter()
                .map(|v| {
                    acc += v;
                    acc
                })
                .collect(),
        )
    }

    pub fn draw(&self, rng: &mut Rng) -> usize {
        let total = self.0.last().copied().unwrap_or(0.0);
        let u = rng.random::<f64>() * total;
        // The first outcome whose cumulative mass exceeds u: never one of zero mass.
        self.0
            .partition_point(|&c| c <= u)
            .min(self.0.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emvae_core::rng::rng_for;

    #[test]
    fn draws_follow_the_probabilities() {
        let p = [0.2, 0.0, 0.5, 0.3];
        let mut rng = rng_for(1, b"t", 0);
        let cumulative = Cumulative::new(&p);
        let (mut a, mut b) = ([0usize; 4], [0usize; 4]);
        let n = 20_000;
        for _ in 0..n {
            a[draw_categorical(&p, &mut rng)] += 1;
            b[cumulative.draw(&mut rng)] += 1;
        }
        for j in 0..4 {
            assert!((a[j] as f64 / n as f64 - p[j]).abs() < 0.015, "{a:?}");
            assert!((b[j] as f64 / n as f64 - p[j]).abs() < 0.015, "{b:?}");
        }
        assert_eq!((a[1], b[1]), (0, 0));
    }

    #[test]
    fn argmax_takes_the_first_of_ties() {
        let m = Matrix::from_rows(&[vec![0.2, 0.5, 0.3], vec![0.5, 0.5, 0.0]]);
        assert_eq!(argmax_rows(&m), vec![1, 0]);
    }
}

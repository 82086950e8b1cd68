//! The E-step over all sequences: expected sufficient statistics, in parallel and reproducibly.
//!
//! Sequences are grouped into blocks of consecutive sequences fixed by the lengths alone; each block
//! sums its statistics in sequence order on one thread (rayon), and the blocks' sums are added in block
//! order. So the result is the same bit for bit whatever the number of threads or their timing.

use std::ops::Range;

use rayon::prelude::*;

use super::data::{Observations, Sequences};
use super::forward_backward::{ForwardBackward, Want};
use super::parameters::{Emissions, HmmParameters};
use crate::EmError;

/// Observations per block: enough work to amortise a task, few enough blocks for two to sixteen threads.
const BLOCK_OBSERVATIONS: usize = 4096;

/// Blocks of consecutive sequences (ranges of sequence indices) of about [`BLOCK_OBSERVATIONS`]
/// observations.
pub(crate) fn blocks(lengths: &[usize]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut rows) = (0, 0);
    for (s, &len) in lengths.iter().enumerate() {
        rows += len;
        if rows >= BLOCK_OBSERVATIONS {
            out.push(start..s + 1);
            (start, rows) = (s + 1, 0);
        }
    }
    if start < lengths.len() {
        out.push(start..lengths.len());
    }
    out
}

/// Expected sufficient statistics of all sequences under some parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stats {
    /// `sum_s log p(x_s)`.
    pub log_prob: f64,
    /// `sum_s gamma_s,1(j)`, `[k]`.
    pub start: Vec<f64>,
    /// `sum_s sum_t xi_s,t(i, j)`, `[k, k]`.
    pub trans: Vec<f64>,
    /// `N_j = sum_s sum_t gamma_s,t(j)`, `[k]`.
    pub post: Vec<f64>,
    /// Gaussian: `sum gamma (x - c)`, `[k, d]`.
    pub obs: Vec<f64>,
    /// Gaussian: second moments of `x - c` (see [`super::gaussian`]).
    pub second: Vec<f64>,
    /// Categorical: expected symbol counts `[n_symbols, k]`.
    pub counts: Vec<f64>,
}

impl Stats {
    fn zeros(emissions: &Emissions, k: usize) -> Self {
        let (obs, second, counts) = match emissions {
            Emissions::Gaussian(g) => (g.n_features * k, g.second_len() * k, 0),
            Emissions::Categorical(c) => (0, 0, c.n_symbols * k),
        };
        Self {
            log_prob: 0.0,
            start: vec![0.0; k],
            trans: vec![0.0; k * k],
            post: vec![0.0; k],
            obs: vec![0.0; obs],
            second: vec![0.0; second],
            counts: vec![0.0; counts],
        }
    }

    fn add(&mut self, other: &Stats) {
        self.log_prob += other.log_prob;
        for (a, b) in [
            (&mut self.start, &other.start),
            (&mut self.trans, &other.trans),
            (&mut self.post, &other.post),
            (&mut self.obs, &other.obs),
            (&mut self.second, &other.second),
            (&mut self.counts, &other.counts),
        ] {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
    }
}

/// The statistics of all sequences; `shift` is the `c` Gaussian statistics are centred on.
pub(crate) fn e_step(
    params: &HmmParameters,
    data: &Sequences,
    shift: &[f64],
    blocks: &[Range<usize>],
) -> Result<Stats, EmError> {
    let k = params.n_states();
    let offsets = data.offsets();
    let partial: Vec<Result<Stats, EmError>> = blocks
        .par_iter()
        .map(|block| {
            let mut stats = Stats::zeros(&params.emissions, k);
            let mut fb = ForwardBackward::new(k);
            for s in block.clone() {
                let rows = offsets[s]..offsets[s] + data.lengths[s];
                let want = Want::PosteriorsAndTransitions;
                let log_prob = fb.run(params, &data.observations, rows.clone(), want);
                if !log_prob.is_finite() {
                    return Err(impossible(data, s, log_prob));
                }
                stats.log_prob += log_prob;
                let gamma = &fb.gamma[..rows.len() * k];
                stats.start.iter_mut().zip(gamma).for_each(|(a, g)| *a += g);
                stats
                    .trans
                    .iter_mut()
                    .zip(&fb.xi)
                    .for_each(|(a, x)| *a += x);
                for g in gamma.chunks_exact(k) {
                    stats.post.iter_mut().zip(g).for_each(|(a, v)| *a += v);
                }
                match (&params.emissions, &data.observations) {
                    (Emissions::Gaussian(e), Observations::Gaussian(x)) => {
                        let d = x.n_cols;
                        let xs = &x.values[rows.start * d..rows.end * d];
                        e.accumulate(gamma, xs, shift, &mut stats.obs, &mut stats.second);
                    }
                    (Emissions::Categorical(e), Observations::Categorical { symbols, .. }) => {
                        e.accumulate(gamma, &symbols[rows], &mut stats.counts);
                    }
                    _ => {}
                }
            }
            Ok(stats)
        })
        .collect();
    let mut total = Stats::zeros(&params.emissions, k);
    for p in partial {
        total.add(&p?);
    }
    Ok(total)
}

/// The error for a sequence of probability 0 (or a likelihood that is not a number).
pub(crate) fn impossible(data: &Sequences, s: usize, log_prob: f64) -> EmError {
    let why = if log_prob.is_nan() {
        "has a log-likelihood that is not a number".to_string()
    } else {
        "has probability 0 under the parameters: zeros in startprob, transmat or emissionprob forbid every \
         state path that could emit it"
            .to_string()
    };
    data.error(format!("sequence {s} {why}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_every_sequence_in_order() {
        let lengths = [3000, 2000, 10, 5000, 1, 1, 4096, 7];
        let b = blocks(&lengths);
        assert_eq!(b, vec![0..2, 2..4, 4..7, 7..8]);
        assert_eq!(blocks(&[5]), vec![0..1]);
    }
}

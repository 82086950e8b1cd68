//! The forward-backward algorithm on one sequence: `log p(x)`, the posterior marginals
//! `gamma_t(j) = p(z_t = j | x)` and the expected transitions `sum_t xi_t(i, j)`,
//! `xi_t(i, j) = p(z_t = i, z_t+1 = j | x)`.
//!
//! Scaled (Rabiner 1989), which needs no logarithm or exponential per state pair: with emission
//! likelihoods scaled per time step, `b'_t(j) = b_j(x_t) / exp(m_t)` (Gaussian:
//! `m_t = max_j log b_j(x_t)`; categorical: `m_t = 0`, as probabilities cannot overflow),
//! ```text
//! alpha'_1 = pi * b'_1,                  c_t = sum_j alpha'_t(j),   alpha^_t = alpha'_t / c_t
//! alpha'_t = (alpha^_t-1 A) * b'_t,      log p(x) = sum_t (log c_t + m_t)
//! beta^_T = 1,                           beta^_t = A (b'_t+1 * beta^_t+1) / c_t+1
//! gamma_t = alpha^_t * beta^_t,          xi_t(i, j) = alpha^_t(i) A_ij b'_t+1(j) beta^_t+1(j) / c_t+1
//! ```
//! `alpha^_t = p(z_t | x_1..t)` stays normalised, so nothing overflows; it underflows only when every
//! state the chain can reach explains `x_t` some 700 nats worse than the best state it cannot reach
//! (`c_t` below the smallest normal float). That sequence is then recomputed in log space, slower but
//! exact there.

use std::ops::Range;

use super::data::Observations;
use super::kernels::{Backward, Forward, dispatch, sum_log};
use super::parameters::HmmParameters;

/// What a pass over one sequence computes besides `log p(x)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    LogLikelihood,
    Posteriors,
    PosteriorsAndTransitions,
}

/// Buffers for one sequence at a time, reused across sequences.
#[derive(Debug, Default)]
pub(crate) struct ForwardBackward {
    k: usize,
    /// `b'_t(j)`, `[T, k]`.
    b: Vec<f64>,
    /// `m_t`, `[T]`.
    shift: Vec<f64>,
    /// `c_t`, `[T]`.
    scale: Vec<f64>,
    /// `alpha^_t(j)`, overwritten by `gamma_t(j)` on the way back.
    pub gamma: Vec<f64>,
    beta: Vec<f64>,
    next: Vec<f64>,
    /// `A^T`, so that `beta^_t = A next` runs as vector updates.
    transposed: Vec<f64>,
    /// Expected transitions `sum_t xi_t(i, j)`, `[k, k]`, of the last sequence.
    pub xi: Vec<f64>,
    /// `log b_j(x_t)` for the log-space fallback.
    log_b: Vec<f64>,
}

/// `log sum_i exp(v_i)`, `-inf` for an empty or all `-inf` input.
pub(crate) fn logsumexp(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = v.clone().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY || m.is_nan() {
        return m;
    }
    m + v.map(|x| (x - m).exp()).sum::<f64>().ln()
}

impl ForwardBackward {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            ..Self::default()
        }
    }

    /// Runs on the sequence of `data` at `rows` under `params`; returns `log p(x)` (`-inf` when the
    /// sequence is impossible, leaving the posteriors undefined) and leaves, as `want` says,
    /// `gamma[..T k]` and `xi`.
    pub(crate) fn run(
        &mut self,
        params: &HmmParameters,
        obs: &Observations,
        rows: Range<usize>,
        want: Want,
    ) -> f64 {
        let (k, t_len) = (self.k, rows.len());
        self.b.resize(t_len * k, 0.0);
        self.shift.resize(t_len, 0.0);
        let e = &params.emissions;
        e.scaled_likelihoods(obs, rows.clone(), &mut self.b, &mut self.shift);
        let (pi, a) = (&params.startprob, &params.transmat);
        match self.forward(pi, a, t_len) {
            Some(log_prob) => {
                if want != Want::LogLikelihood {
                    self.backward(a, t_len, want == Want::PosteriorsAndTransitions);
                }
                log_prob
            }
            None => {
                let mut log_b = std::mem::take(&mut self.log_b);
                log_b.resize(t_len * k, 0.0);
                e.log_likelihoods(obs, rows, &mut log_b);
                let log_prob = self.run_log(pi, a, &log_b, want == Want::PosteriorsAndTransitions);
                self.log_b = log_b;
                log_prob
            }
        }
    }

    /// The scaled forward pass on `b` and `shift`, leaving `alpha^_t` in `gamma`; `None` when it
    /// underflows.
    fn forward(&mut self, startprob: &[f64], transmat: &[f64], t_len: usize) -> Option<f64> {
        let k = self.k;
        self.gamma.resize(t_len * k, 0.0);
        self.scale.resize(t_len, 0.0);
        if self.shift[..t_len].iter().any(|m| !m.is_finite()) {
            return None;
        }
        let kernel = Forward {
            startprob,
            transmat,
            b: &self.b[..t_len * k],
            alpha: &mut self.gamma[..t_len * k],
            scale: &mut self.scale[..t_len],
        };
        let ok = dispatch(k, kernel);
        ok.then(|| sum_log(&self.scale[..t_len]) + self.shift[..t_len].iter().sum::<f64>())
    }

    /// The scaled backward pass after [`Self::forward`]: turns `alpha^_t` into `gamma_t` and sums `xi`.
    fn backward(&mut self, transmat: &[f64], t_len: usize, want_xi: bool) {
        let k = self.k;
        self.beta.resize(k, 0.0);
        self.next.resize(k, 0.0);
        self.xi.clear();
        self.xi.resize(k * k, 0.0);
        self.transposed.clear();
        self.transposed
            .extend((0..k).flat_map(|j| (0..k).map(move |i| transmat[i * k + j])));
        let buffers = Backward {
            b: &self.b[..t_len * k],
            scale: &self.scale[..t_len],
            transposed: &self.transposed,
            gamma: &mut self.gamma[..t_len * k],
            beta: &mut self.beta,
            next: &mut self.next,
            xi: want_xi.then_some(&mut self.xi[..]),
        };
        dispatch(k, buffers);
        if want_xi {
            self.xi.iter_mut().zip(transmat).for_each(|(x, a)| *x *= a);
        }
    }

    /// The same in log space (Rabiner's recursions on `log alpha`, `log beta` with log-sum-exp).
    pub(crate) fn run_log(
        &mut self,
        startprob: &[f64],
        transmat: &[f64],
        log_b: &[f64],
        want_xi: bool,
    ) -> f64 {
        let k = self.k;
        let t_len = log_b.len() / k;
        let log_pi: Vec<f64> = startprob.iter().map(|p| p.ln()).collect();
        let log_a: Vec<f64> = transmat.iter().map(|p| p.ln()).collect();
        let mut log_alpha = vec![0.0; t_len * k];
        for j in 0..k {
            log_alpha[j] = log_pi[j] + log_b[j];
        }
        for t in 1..t_len {
            for j in 0..k {
                let s = logsumexp((0..k).map(|i| log_alpha[(t - 1) * k + i] + log_a[i * k + j]));
                log_alpha[t * k + j] = s + log_b[t * k + j];
            }
        }
        let log_prob = logsumexp(log_alpha[(t_len - 1) * k..].iter().copied());
        self.xi.clear();
        self.xi.resize(k * k, 0.0);
        self.gamma.resize(t_len * k, 0.0);
        if log_prob == f64::NEG_INFINITY || log_prob.is_nan() {
            self.gamma.fill(f64::NAN);
            return log_prob;
        }
        let mut log_beta = vec![0.0; t_len * k];
        for t in (0..t_len.saturating_sub(1)).rev() {
            for i in 0..k {
                log_beta[t * k + i] = logsumexp((0..k).map(|j| {
                    log_a[i * k + j] + log_b[(t + 1) * k + j] + log_beta[(t + 1) * k + j]
                }));
            }
        }
        for t in 0..t_len {
            let row = (0..k).map(|j| log_alpha[t * k + j] + log_beta[t * k + j]);
            let norm = logsumexp(row.clone());
            for (g, v) in self.gamma[t * k..(t + 1) * k].iter_mut().zip(row) {
                *g = (v - norm).exp();
            }
            if want_xi && t + 1 < t_len {
                for i in 0..k {
                    for j in 0..k {
                        let v = log_alpha[t * k + i]
                            + log_a[i * k + j]
                            + log_b[(t + 1) * k + j]
                            + log_beta[(t + 1) * k + j]
                            - log_prob;
                        self.xi[i * k + j] += v.exp();
                    }
                }
            }
        }
        log_prob
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hmm::kernels::scale_log_likelihoods;

    /// Every state path of length `t_len` over `k` states, with its joint log-probability.
    fn paths(pi: &[f64], a: &[f64], log_b: &[f64], k: usize) -> Vec<(Vec<usize>, f64)> {
        let t_len = log_b.len() / k;
        (0..k.pow(t_len as u32))
            .map(|mut code| {
                let z: Vec<usize> = (0..t_len)
                    .map(|_| {
                        let s = code % k;
                        code /= k;
                        s
                    })
                    .collect();
                let mut lp = pi[z[0]].ln() + log_b[z[0]];
                for t in 1..t_len {
                    lp += a[z[t - 1] * k + z[t]].ln() + log_b[t * k + z[t]];
                }
                (z, lp)
            })
            .collect()
    }

    /// The scaled pass (log space where it underflows) on given log-likelihoods.
    fn run_on(fb: &mut ForwardBackward, pi: &[f64], a: &[f64], log_b: &[f64]) -> f64 {
        let t_len = log_b.len() / fb.k;
        fb.b = log_b.to_vec();
        fb.shift = vec![0.0; t_len];
        scale_log_likelihoods(&mut fb.b, &mut fb.shift, fb.k);
        match fb.forward(pi, a, t_len) {
            Some(log_prob) => {
                fb.backward(a, t_len, true);
                log_prob
            }
            None => fb.run_log(pi, a, log_b, true),
        }
    }

    /// Checks log p(x), gamma and sum_t xi against enumeration of all k^T paths.
    fn check(pi: &[f64], a: &[f64], log_b: &[f64], k: usize, scaled: bool) {
        let t_len = log_b.len() / k;
        let all = paths(pi, a, log_b, k);
        let log_p = logsumexp(all.iter().map(|(_, lp)| *lp));
        let mut fb = ForwardBackward::new(k);
        let got = if scaled {
            run_on(&mut fb, pi, a, log_b)
        } else {
            fb.run_log(pi, a, log_b, true)
        };
        assert!(
            (got - log_p).abs() <= 1e-12 * log_p.abs().max(1.0),
            "{got} vs {log_p}"
        );
        for t in 0..t_len {
            for j in 0..k {
                let want: f64 = all
                    .iter()
                    .filter(|(z, _)| z[t] == j)
                    .map(|(_, lp)| (lp - log_p).exp())
                    .sum();
                assert!(
                    (fb.gamma[t * k + j] - want).abs() < 1e-12,
                    "gamma[{t}][{j}]"
                );
            }
        }
        for i in 0..k {
            for j in 0..k {
                let want: f64 = all
                    .iter()
                    .map(|(z, lp)| {
                        let n = (1..t_len).filter(|&t| z[t - 1] == i && z[t] == j).count();
                        n as f64 * (lp - log_p).exp()
                    })
                    .sum();
                assert!((fb.xi[i * k + j] - want).abs() < 1e-12, "xi[{i}][{j}]");
            }
        }
    }

    #[test]
    fn forward_backward_matches_enumeration() {
        let pi3 = [0.5, 0.3, 0.2];
        let a3 = [0.7, 0.2, 0.1, 0.1, 0.6, 0.3, 0.25, 0.25, 0.5];
        let log_b3: Vec<f64> = (0..15)
            .map(|i| -((i * 7 % 11) as f64) * 0.37 - 0.5)
            .collect();
        let pi2 = [0.9, 0.1];
        let a2 = [0.95, 0.05, 0.4, 0.6];
        let log_b2 = [-1.0, -3.0, -0.2, -4.0, -2.5, -0.1, -30.0, -1.0, -0.5, -0.7];
        // 7 states run the loops written for any number of states.
        let pi7 = [0.1, 0.2, 0.05, 0.25, 0.1, 0.2, 0.1];
        let a7: Vec<f64> = (0..49)
            .map(|i| if i % 8 == 0 { 0.4 } else { 0.1 })
            .collect();
        let log_b7: Vec<f64> = (0..28).map(|i| -((i * 5 % 9) as f64) * 0.6).collect();
        for scaled in [true, false] {
            check(&pi3, &a3, &log_b3, 3, scaled);
            check(&pi2, &a2, &log_b2, 2, scaled);
            check(&pi7, &a7, &log_b7, 7, scaled);
        }
    }

    /// A sequence that underflows the scaled recursion (the only reachable state explains x_3 some 5,000
    /// nats worse than the unreachable one) is computed in log space, still exactly.
    #[test]
    fn underflow_falls_back_to_log_space() {
        let pi = [1.0, 0.0];
        let a = [1.0, 0.0, 0.5, 0.5];
        let log_b = [
            -1.0, -2.0, -1.5, -0.5, -5000.0, -0.9, -2.0, -1.0, -0.3, -0.3,
        ];
        check(&pi, &a, &log_b, 2, true);
        let mut fb = ForwardBackward::new(2);
        assert!(run_on(&mut fb, &pi, &a, &log_b) < -5000.0);
        assert!(fb.forward(&pi, &a, 5).is_none());
        // An impossible sequence has log p = -inf.
        let log_b = [f64::NEG_INFINITY, 0.0, -1.0, -1.0];
        assert_eq!(run_on(&mut fb, &pi, &a, &log_b), f64::NEG_INFINITY);
    }
}

//! The Viterbi algorithm: the most probable state path `argmax_z p(z | x)` of one sequence, in log
//! space.
//!
//! ```text
//! delta_1(j) = log pi_j + log b_j(x_1)
//! delta_t(j) = max_i (delta_t-1(i) + log A_ij) + log b_j(x_t),   psi_t(j) = that argmax
//! ```
//! The path ends at `argmax_j delta_T(j)`, whose value is `log p(x, z*)`, and follows `psi` back. Ties
//! go to the lowest state index.

/// The log-probabilities Viterbi needs, computed once per model.
#[derive(Debug, Clone)]
pub(crate) struct Viterbi {
    k: usize,
    log_startprob: Vec<f64>,
    log_transmat: Vec<f64>,
}

impl Viterbi {
    pub(crate) fn new(startprob: &[f64], transmat: &[f64]) -> Self {
        Self {
            k: startprob.len(),
            log_startprob: startprob.iter().map(|p| p.ln()).collect(),
            log_transmat: transmat.iter().map(|p| p.ln()).collect(),
        }
    }

    /// `(log p(x, z*), z*)` for a sequence whose emission log-likelihoods are `log_b` (`[T, k]`).
    pub(crate) fn decode(&self, log_b: &[f64]) -> (f64, Vec<usize>) {
        let k = self.k;
        let t_len = log_b.len() / k;
        let mut delta: Vec<f64> = (0..k).map(|j| self.log_startprob[j] + log_b[j]).collect();
        let mut next = vec![0.0; k];
        let mut psi = vec![0u32; t_len * k];
        for t in 1..t_len {
            for j in 0..k {
                let (mut best, mut arg) = (f64::NEG_INFINITY, 0);
                for i in 0..k {
                    let v = delta[i] + self.log_transmat[i * k + j];
                    if v > best {
                        (best, arg) = (v, i);
                    }
                }
                next[j] = best + log_b[t * k + j];
                psi[t * k + j] = arg as u32;
            }
            std::mem::swap(&mut delta, &mut next);
        }
        let (mut state, mut log_prob) = (0, f64::NEG_INFINITY);
        for (j, &v) in delta.iter().enumerate() {
            if v > log_prob {
                (state, log_prob) = (j, v);
            }
        }
        let mut path = vec![0; t_len];
        for t in (0..t_len).rev() {
            path[t] = state;
            state = psi[t * k + state] as usize;
        }
        (log_prob, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoded path is the best of all k^T paths, with its joint log-probability.
    #[test]
    fn viterbi_finds_the_best_path() {
        let (k, t_len) = (3usize, 6);
        let pi = [0.5, 0.3, 0.2];
        let a = [0.7, 0.2, 0.1, 0.1, 0.6, 0.3, 0.25, 0.25, 0.5];
        let log_b: Vec<f64> = (0..t_len * k)
            .map(|i| -((i * 5 % 13) as f64) * 0.41 - 0.2)
            .collect();
        let (lp, path) = Viterbi::new(&pi, &a).decode(&log_b);
        let mut best = (f64::NEG_INFINITY, vec![]);
        for mut code in 0..k.pow(t_len as u32) {
            let z: Vec<usize> = (0..t_len)
                .map(|_| {
                    let s = code % k;
                    code /= k;
                    s
                })
                .collect();
            let mut v = pi[z[0]].ln() + log_b[z[0]];
            for t in 1..t_len {
                v += a[z[t - 1] * k + z[t]].ln() + log_b[t * k + z[t]];
            }
            if v > best.0 {
                best = (v, z);
            }
        }
        assert_eq!(path, best.1);
        assert!((lp - best.0).abs() < 1e-12);
    }
}

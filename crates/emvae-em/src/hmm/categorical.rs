//! Categorical emissions: `p(x_t = v | z_t = j) = B[j][v]`.
//!
//! The statistic is the expected count of each symbol per state, `C[v][j] = sum_{t: x_t = v} gamma_t(j)`
//! (stored symbol-major so that one time step adds one contiguous row), and the M-step normalises it:
//! `B[j][v] = C[v][j] / sum_w C[w][j]`.

/// Categorical emission parameters of `k` states over `n_symbols` symbols.
#[derive(Debug, Clone, PartialEq)]
///
/// Read-only outside this crate: the transposed tables must stay those of `emissionprob`.
pub struct CategoricalEmissions {
    pub(crate) n_states: usize,
    pub(crate) n_symbols: usize,
    /// `B`, `[k, n_symbols]`, rows summing to 1.
    pub(crate) emissionprob: Vec<f64>,
    /// `B` transposed, `[n_symbols, k]`: one contiguous row per symbol.
    by_symbol: Vec<f64>,
    /// `log B` transposed.
    log_by_symbol: Vec<f64>,
}

impl CategoricalEmissions {
    pub(crate) fn new(n_symbols: usize, emissionprob: Vec<f64>) -> Self {
        let k = emissionprob.len() / n_symbols.max(1);
        let mut by_symbol = vec![0.0; n_symbols * k];
        for j in 0..k {
            for v in 0..n_symbols {
                by_symbol[v * k + j] = emissionprob[j * n_symbols + v];
            }
        }
        Self {
            n_states: k,
            n_symbols,
            emissionprob,
            log_by_symbol: by_symbol.iter().map(|p| p.ln()).collect(),
            by_symbol,
        }
    }

    pub fn n_states(&self) -> usize {
        self.n_states
    }

    pub fn n_symbols(&self) -> usize {
        self.n_symbols
    }

    /// `B`, `[k, n_symbols]` row-major.
    pub fn emissionprob(&self) -> &[f64] {
        &self.emissionprob
    }

    pub fn n_parameters(&self) -> usize {
        self.n_states * self.n_symbols.saturating_sub(1)
    }

    /// `out[t, j] = log B[j][x_t]` for the symbols of one sequence (all below `n_symbols`).
    pub(crate) fn log_likelihoods(&self, symbols: &[usize], out: &mut [f64]) {
        let k = self.n_states;
        for (&v, lb) in symbols.iter().zip(out.chunks_exact_mut(k)) {
            lb.copy_from_slice(&self.log_by_symbol[v * k..(v + 1) * k]);
        }
    }

    /// `out[t, j] = B[j][x_t]`: likelihoods that need no scaling (`shift = 0`).
    pub(crate) fn likelihoods(&self, symbols: &[usize], out: &mut [f64], shift: &mut [f64]) {
        let k = self.n_states;
        for (&v, lb) in symbols.iter().zip(out.chunks_exact_mut(k)) {
            lb.copy_from_slice(&self.by_symbol[v * k..(v + 1) * k]);
        }
        shift.fill(0.0);
    }

    /// Adds one sequence's expected symbol counts `counts[v][j] += gamma_t(j)` for `x_t = v`.
    pub(crate) fn accumulate(&self, gamma: &[f64], symbols: &[usize], counts: &mut [f64]) {
        let k = self.n_states;
        for (&v, g) in symbols.iter().zip(gamma.chunks_exact(k)) {
            for (c, w) in counts[v * k..(v + 1) * k].iter_mut().zip(g) {
                *c += w;
            }
        }
    }

    /// The M-step; a state no posterior mass reached keeps its row.
    pub(crate) fn m_step(&self, counts: &[f64]) -> Self {
        let (k, n) = (self.n_states, self.n_symbols);
        let mut b = self.emissionprob.clone();
        for j in 0..k {
            let total: f64 = (0..n).map(|v| counts[v * k + j]).sum();
            if total > 0.0 {
                for v in 0..n {
                    b[j * n + v] = counts[v * k + j] / total;
                }
            }
        }
        Self::new(n, b)
    }
}

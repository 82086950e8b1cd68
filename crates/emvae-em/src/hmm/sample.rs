//! Drawing sequences from a hidden Markov model: `z_1 ~ pi`, `z_t ~ A[z_t-1]`, `x_t ~ b_{z_t}`.

use emvae_core::config::InvalidParam;
use emvae_core::data::Matrix;
use emvae_core::linalg;
use emvae_core::rng::{Rng, rng_for};
use rand::Rng as _;
use rand_distr::{Distribution, StandardNormal};

use super::data::Sequences;
use super::model::Hmm;
use super::parameters::Emissions;
use crate::EmError;

/// An index drawn with probabilities `p` (summing to 1 up to rounding).
fn draw(p: &[f64], rng: &mut Rng) -> usize {
    let mut u: f64 = rng.random();
    for (i, &w) in p.iter().enumerate() {
        u -= w;
        if u < 0.0 {
            return i;
        }
    }
    // Rounding left `u` just above the total: the last state with mass.
    p.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

impl Hmm {
    /// Draws `n_sequences` sequences of `length` steps: their observations and state paths. Computed
    /// on the host, so the draws depend only on `seed`.
    pub fn sample(
        &self,
        n_sequences: usize,
        length: usize,
        seed: u64,
    ) -> Result<(Sequences, Vec<Vec<usize>>), EmError> {
        if n_sequences == 0 {
            return Err(InvalidParam::new("n_sequences", "must be at least 1, got 0").into());
        }
        if length == 0 {
            return Err(InvalidParam::new("length", "must be at least 1, got 0").into());
        }
        let p = &self.parameters;
        let k = p.n_states();
        let mut rng = rng_for(seed, b"hmm-sample", 0);
        let mut states = Vec::with_capacity(n_sequences);
        for _ in 0..n_sequences {
            let mut z = Vec::with_capacity(length);
            z.push(draw(&p.startprob, &mut rng));
            for t in 1..length {
                let prev = z[t - 1];
                z.push(draw(&p.transmat[prev * k..(prev + 1) * k], &mut rng));
            }
            states.push(z);
        }
        let lengths = vec![length; n_sequences];
        let source = format!("sampled from a {k}-state hidden Markov model, seed {seed}");
        let data = match &p.emissions {
            Emissions::Gaussian(g) => {
                let d = g.n_features;
                let mut chol = Vec::with_capacity(k);
                for j in 0..k {
                    let l = linalg::cholesky_lower(&g.covariance_matrix(j), d).map_err(|e| {
                        EmError::IllConditioned {
                            component: Some(j),
                            message: format!("state {j}: covariance {e}; cannot sample"),
                        }
                    })?;
                    chol.push(l);
                }
                let mut values = Vec::with_capacity(n_sequences * length * d);
                let mut e = vec![0.0; d];
                for &j in states.iter().flatten() {
                    e.iter_mut()
                        .for_each(|v| *v = StandardNormal.sample(&mut rng));
                    let (mu, l) = (g.mean(j), &chol[j]);
                    for a in 0..d {
                        let z: f64 = (0..=a).map(|b| l[a * d + b] * e[b]).sum();
                        values.push(mu[a] + z);
                    }
                }
                let x = Matrix::new(n_sequences * length, d, values);
                Sequences::gaussian(x, Some(lengths), source)?
            }
            Emissions::Categorical(c) => {
                let v = c.n_symbols;
                let symbols = states
                    .iter()
                    .flatten()
                    .map(|&j| draw(&c.emissionprob[j * v..(j + 1) * v], &mut rng))
                    .collect();
                Sequences::categorical_flat(symbols, Some(lengths), v, source)?
            }
        };
        Ok((data, states))
    }
}

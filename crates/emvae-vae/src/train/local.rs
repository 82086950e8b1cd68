//! The non-amortized E-step's state: free variational parameters per training row.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::guide::Posterior;

/// Free variational parameters per training row (non-amortized strategy) with their Adam moments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalPosteriors {
    pub latent: usize,
    pub mean: Vec<f32>,
    pub log_var: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    t: Vec<u32>,
}

impl LocalPosteriors {
    pub(super) fn new(n: usize, latent: usize) -> Self {
        Self {
            latent,
            mean: vec![0.0; n * latent],
            log_var: vec![0.0; n * latent],
            m: vec![0.0; 2 * n * latent],
            v: vec![0.0; 2 * n * latent],
            t: vec![0; n],
        }
    }

    /// The number of rows.
    pub(super) fn rows(&self) -> usize {
        self.t.len()
    }

    /// Whether these posteriors are those of `n` rows in `latent` dimensions (a checkpoint's may not be).
    pub(super) fn fits(&self, n: usize, latent: usize) -> bool {
        let values = n.checked_mul(latent);
        let moments = values.and_then(|v| v.checked_mul(2));
        self.latent == latent
            && values.is_some_and(|v| self.mean.len() == v && self.log_var.len() == v)
            && moments.is_some_and(|v| self.m.len() == v && self.v.len() == v)
            && self.t.len() == n
    }

    pub(super) fn gather(&self, rows: &[usize], device: &Device) -> Posterior {
        let l = self.latent;
        let pick = |v: &[f32]| -> Vec<f32> {
            rows.iter()
                .flat_map(|&r| v[r * l..(r + 1) * l].to_vec())
                .collect()
        };
        let t = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [rows.len(), l]), device);
        Posterior {
            mean: t(pick(&self.mean)),
            log_var: t(pick(&self.log_var)),
        }
    }

    /// Adam on the rows' parameters with gradients (of the loss) `g_mean`, `g_log_var`.
    pub(super) fn update(&mut self, rows: &[usize], g_mean: &[f64], g_log_var: &[f64], lr: f64) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let l = self.latent;
        let n = self.t.len();
        for (i, &r) in rows.iter().enumerate() {
            self.t[r] += 1;
            let k = self.t[r] as i32;
            let step = lr * (1.0 - b2.powi(k)).sqrt() / (1.0 - b1.powi(k));
            for (part, (values, grads)) in
                [(&mut self.mean, g_mean), (&mut self.log_var, g_log_var)]
                    .into_iter()
                    .enumerate()
            {
                for j in 0..l {
                    let g = grads[i * l + j];
                    let s = part * n * l + r * l + j;
                    let m = b1 * self.m[s] as f64 + (1.0 - b1) * g;
                    let v = b2 * self.v[s] as f64 + (1.0 - b2) * g * g;
                    self.m[s] = m as f32;
                    self.v[s] = v as f32;
                    values[r * l + j] -= (step * m / (v.sqrt() + eps)) as f32;
                }
            }
        }
    }
}

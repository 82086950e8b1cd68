//! Gradient-based optimisation of per-data-point posteriors with the model held fixed: the
//! semi-amortized refinement (Kim et al. 2018), held-out posteriors of the non-amortized strategy, and
//! the amortization gap.

use burn::tensor::Tensor;

use crate::amortized::AmortizedModel;
use crate::data::normal_noise;
use crate::guide::Posterior;
use crate::objective::{ObjectiveSpec, batch_terms};

/// The update rule of the refinement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Plain gradient ascent with step size `lr`.
    Sgd { lr: f64 },
    /// Adam (beta 0.9, 0.999, eps 1e-8) with step size `lr`.
    Adam { lr: f64 },
}

/// How [`optimise_posteriors`] runs.
#[derive(Debug, Clone, Copy)]
pub struct Refinement {
    pub steps: usize,
    pub rule: Rule,
    /// Reparameterised samples per step.
    pub samples: usize,
    /// Noise of step `t` comes from `(seed, stream, t)`.
    pub seed: u64,
    pub stream: &'static [u8],
}

/// Maximises `sum_i ELBO_i(mean_i, log_var_i)` over the posteriors of the rows of `x` by `r.steps`
/// updates from `init`.
///
/// `model` must live on an autodiff device; its parameters receive no update (it is used through a
/// gradient-free copy). Returns posteriors on `init`'s device, detached.
pub fn optimise_posteriors<M: AmortizedModel>(
    model: &M,
    x: &M::Batch,
    init: Posterior,
    r: Refinement,
) -> Posterior {
    let Refinement {
        steps,
        rule,
        samples,
        seed,
        stream,
    } = r;
    let fixed = model.clone().no_grad();
    let device = init.mean.device();
    let mut mean = init.mean.detach().inner();
    let mut log_var = init.log_var.detach().inner();
    let [rows, latent] = mean.dims();
    let mut moments: Option<(Tensor<2>, Tensor<2>, Tensor<2>, Tensor<2>)> = None;
    let spec = ObjectiveSpec::elbo(samples);
    for t in 0..steps {
        let m = Tensor::from_inner(mean.clone()).require_grad();
        let lv = Tensor::from_inner(log_var.clone()).require_grad();
        let q = Posterior {
            mean: m.clone(),
            log_var: lv.clone(),
        };
        let eps = normal_noise(samples * rows, latent, seed, stream, t as u64, &device);
        let terms = batch_terms(&fixed, &q, x, eps, &spec);
        let grads = terms.bound.sum().neg().backward();
        let (Some(gm), Some(gl)) = (m.grad(&grads), lv.grad(&grads)) else {
            break;
        };
        match rule {
            Rule::Sgd { lr } => {
                mean = mean - gm.mul_scalar(lr);
                log_var = log_var - gl.mul_scalar(lr);
            }
            Rule::Adam { lr } => {
                let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
                let (m1, v1, m2, v2) = match moments.take() {
                    None => (
                        gm.clone().mul_scalar(1.0 - b1),
                        gm.clone().square().mul_scalar(1.0 - b2),
                        gl.clone().mul_scalar(1.0 - b1),
                        gl.clone().square().mul_scalar(1.0 - b2),
                    ),
                    Some((m1, v1, m2, v2)) => (
                        m1.mul_scalar(b1) + gm.clone().mul_scalar(1.0 - b1),
                        v1.mul_scalar(b2) + gm.square().mul_scalar(1.0 - b2),
                        m2.mul_scalar(b1) + gl.clone().mul_scalar(1.0 - b1),
                        v2.mul_scalar(b2) + gl.square().mul_scalar(1.0 - b2),
                    ),
                };
                let k = (t + 1) as i32;
                let step = lr * (1.0 - b2.powi(k)).sqrt() / (1.0 - b1.powi(k));
                mean = mean - m1.clone().mul_scalar(step) / v1.clone().sqrt().add_scalar(eps);
                log_var = log_var - m2.clone().mul_scalar(step) / v2.clone().sqrt().add_scalar(eps);
                moments = Some((m1, v1, m2, v2));
            }
        }
    }
    Posterior {
        mean: Tensor::from_inner(mean),
        log_var: Tensor::from_inner(log_var),
    }
}

//! Objectives: the ELBO (analytic or Monte Carlo KL, beta weight, free bits) and the importance-weighted
//! bound, computed for a batch from the guide's posterior and host-drawn noise.
//!
//! With `z_s = mu + sigma eps_s` (`s = 1..S`):
//! - ELBO: `1/S sum_s log p(x | z_s) - KL(q(z | x) || p(z))`, the KL analytic for a standard normal
//!   prior, `1/2 sum_l (mu_l^2 + sigma_l^2 - log sigma_l^2 - 1)`, otherwise `1/S sum_s log q(z_s | x) -
//!   log p(z_s)`;
//! - IWAE: `log 1/S sum_s exp(log p(x | z_s) + log p(z_s) - log q(z_s | x))` (Burda et al. 2015), a
//!   tighter bound that tends to `log p(x)` as `S` grows.
//!
//! A model whose guide has a part the bound does not train adds that part's loss (see
//! [`AmortizedModel::log_likelihood_and_guide_loss`]).

use burn::tensor::Tensor;
use emvae_core::tensor::log_sum_exp;

use crate::amortized::AmortizedModel;
use crate::config::{KlEstimator, ObjectiveKind};
use crate::guide::Posterior;

/// Settings of the objective for one step.
#[derive(Debug, Clone, Copy)]
pub struct ObjectiveSpec {
    pub kind: ObjectiveKind,
    pub samples: usize,
    /// KL weight at this step (annealed).
    pub beta: f64,
    pub free_bits: f64,
    pub kl: KlEstimator,
}

impl ObjectiveSpec {
    /// The plain ELBO with `samples` samples (evaluation, refinement).
    pub fn elbo(samples: usize) -> Self {
        Self {
            kind: ObjectiveKind::Elbo,
            samples,
            beta: 1.0,
            free_bits: 0.0,
            kl: KlEstimator::Auto,
        }
    }
}

/// Per-row terms of a batch and the loss to minimise.
#[derive(Debug, Clone)]
pub struct BatchTerms {
    /// Scalar to minimise: the negative weighted objective, averaged over rows.
    pub loss: Tensor<1>,
    /// `E_q log p(x | z)` per row `[batch]`.
    pub rec: Tensor<1>,
    /// `KL(q || p)` per row `[batch]` (analytic or Monte Carlo).
    pub kl: Tensor<1>,
    /// Analytic KL per latent dimension, per row `[batch, latent]` (standard normal prior only).
    pub kl_per_dim: Option<Tensor<2>>,
    /// The bound per row `[batch]`: the ELBO, or the IWAE bound.
    pub bound: Tensor<1>,
}

/// Analytic `KL(N(mu, sigma^2) || N(0, 1))` per dimension `[batch, latent]`.
pub fn analytic_kl(q: &Posterior) -> Tensor<2> {
    (q.mean.clone() * q.mean.clone() + q.log_var.clone().exp() - q.log_var.clone())
        .sub_scalar(1.0)
        .mul_scalar(0.5)
}

/// Mean over the `samples` blocks of a sample-major `[samples * batch]` vector: `[batch]`.
fn mean_over_samples(v: Tensor<1>, samples: usize) -> Tensor<1> {
    if samples == 1 {
        return v;
    }
    let n = v.dims()[0] / samples;
    v.reshape([samples, n]).mean_dim(0).reshape([n])
}

/// The objective's terms for the batch `x` with posterior `q` (one row per data point) and
/// standard-normal noise `eps` `[samples * batch, latent]`.
pub fn batch_terms<M: AmortizedModel>(
    model: &M,
    q: &Posterior,
    x: &M::Batch,
    eps: Tensor<2>,
    spec: &ObjectiveSpec,
) -> BatchTerms {
    let s = spec.samples;
    let batch = q.mean.dims()[0];
    let z = q.sample(eps.clone(), s);
    let (log_lik, guide_loss) = model.log_likelihood_and_guide_loss(x, z.clone(), s);
    let analytic = match spec.kl {
        KlEstimator::Analytic => true,
        KlEstimator::MonteCarlo => false,
        KlEstimator::Auto => model.prior().is_standard_normal(),
    };
    let log_q = || q.log_prob_of_noise(eps.clone(), s);
    let log_p = || model.prior().log_prob(z.clone());
    let rec = mean_over_samples(log_lik.clone(), s);
    let (kl, kl_per_dim) = if analytic {
        let per_dim = analytic_kl(q);
        (per_dim.clone().sum_dim(1).reshape([batch]), Some(per_dim))
    } else {
        (mean_over_samples(log_q() - log_p(), s), None)
    };
    let (loss, bound) = match spec.kind {
        ObjectiveKind::Elbo => {
            let bound = rec.clone() - kl.clone();
            let kl_term = if spec.free_bits > 0.0 {
                match &kl_per_dim {
                    // max(lambda, KL_l) with KL_l the batch average of dimension l.
                    Some(per_dim) => per_dim.clone().mean_dim(0).clamp_min(spec.free_bits).sum(),
                    None => {
                        let dims = q.mean.dims()[1] as f64;
                        kl.clone().mean().clamp_min(spec.free_bits * dims)
                    }
                }
            } else {
                kl.clone().mean()
            };
            (kl_term.mul_scalar(spec.beta) - rec.clone().mean(), bound)
        }
        ObjectiveKind::Iwae => {
            let log_w = (log_lik + log_p() - log_q()).reshape([s, batch]);
            let bound = log_sum_exp(log_w, 0)
                .reshape([batch])
                .sub_scalar((s as f64).ln());
            (bound.clone().mean().neg(), bound)
        }
    };
    let loss = match guide_loss {
        Some(extra) => loss + extra.mean(),
        None => loss,
    };
    BatchTerms {
        loss,
        rec,
        kl,
        kl_per_dim,
        bound,
    }
}

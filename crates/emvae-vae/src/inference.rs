//! Using a trained VAE: posteriors of data (encode), decoding latent codes, sampling from the model,
//! reconstructions.

use burn::tensor::{Device, Tensor, TensorData};
use emvae_core::data::Matrix;
use emvae_core::rng::rng_for;
use emvae_core::tensor::tensor_to_vec;
use rand::Rng as _;
use rand_distr::{Distribution, StandardNormal};

use crate::amortized::{AmortizedModel, ModelConfig, TrainData};
use crate::diagnostics::chunks;
use crate::guide::Posterior;
use crate::model::Prior;
use crate::refine::{Refinement, Rule, optimise_posteriors};
use crate::vae::Vae;

/// Where the posteriors of data rows come from.
#[derive(Debug, Clone)]
pub enum PosteriorSource {
    /// The encoder, q(z | x).
    Encoder,
    /// Precomputed per row (non-amortized models): row-major `[n, latent]`.
    Given {
        mean: Vec<f64>,
        log_var: Vec<f64>,
        latent: usize,
    },
}

impl PosteriorSource {
    /// The posterior of `rows` (whose batch is `x`), on `device` (`x`'s).
    pub fn posterior<M: AmortizedModel>(
        &self,
        model: &M,
        rows: &[usize],
        x: &M::Batch,
        device: &Device,
    ) -> Posterior {
        match self {
            PosteriorSource::Encoder => model.posterior(x),
            PosteriorSource::Given {
                mean,
                log_var,
                latent,
            } => {
                let l = *latent;
                let pick = |v: &[f64]| -> Vec<f32> {
                    rows.iter()
                        .flat_map(|&r| v[r * l..(r + 1) * l].iter().map(|&a| a as f32))
                        .collect()
                };
                let t =
                    |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [rows.len(), l]), device);
                Posterior {
                    mean: t(pick(mean)),
                    log_var: t(pick(log_var)),
                }
            }
        }
    }
}

/// Posteriors of `data` for a model without an encoder (non-amortized): each row's ELBO maximised by
/// Adam (`eval.gap_lr`, `eval.gap_steps` steps) from the prior N(0, I). `device` must be autodiff.
pub fn held_out_posteriors<M: AmortizedModel>(
    model: &M,
    config: &M::Config,
    data: &M::Data,
    seed: u64,
    device: &Device,
) -> PosteriorSource {
    let l = config.latent_dim();
    let (mut mean, mut log_var) = (Vec::new(), Vec::new());
    for (c, rows) in chunks(data.len(), 1024).into_iter().enumerate() {
        let x = data.batch(&rows, 0, device);
        let zeros = || Tensor::<2>::zeros([rows.len(), l], device);
        let init = Posterior {
            mean: zeros(),
            log_var: zeros(),
        };
        let refinement = Refinement {
            steps: config.eval().gap_steps,
            rule: Rule::Adam {
                lr: config.eval().gap_lr,
            },
            samples: config.objective().samples,
            seed: emvae_core::rng::derive_seed(seed, b"held-out", c as u64),
            stream: b"held-out",
        };
        let q = optimise_posteriors(model, &x, init, refinement);
        mean.extend(tensor_to_vec(q.mean));
        log_var.extend(tensor_to_vec(q.log_var));
    }
    PosteriorSource::Given {
        mean,
        log_var,
        latent: l,
    }
}

/// `n` draws from the prior, on the host (reproducible from `seed` on every backend).
pub fn sample_prior(prior: &Prior, n: usize, seed: u64, device: &Device) -> Tensor<2> {
    let (weights, means, vars) = prior.components();
    let l = prior.latent_dim;
    let mut rng = rng_for(seed, b"prior-sample", 0);
    let mut values = Vec::with_capacity(n * l);
    for _ in 0..n {
        let u: f64 = rng.random();
        let mut acc = 0.0;
        let mut j = weights.len() - 1;
        for (i, w) in weights.iter().enumerate() {
            acc += w;
            if u < acc {
                j = i;
                break;
            }
        }
        for d in 0..l {
            let e: f64 = StandardNormal.sample(&mut rng);
            values.push((means[j * l + d] + vars[j * l + d].sqrt() * e) as f32);
        }
    }
    Tensor::from_data(TensorData::new(values, [n, l]), device)
}

/// Likelihood means (Bernoulli probabilities, Gaussian means, categorical probabilities) of latent
/// rows `z` `[n, latent]`, computed in chunks.
pub fn decode(model: &Vae, z: &Matrix, device: &Device) -> Matrix {
    let mut values = Vec::new();
    let mut width = 0;
    for rows in chunks(z.n_rows, 1024) {
        let part: Vec<f32> = rows
            .iter()
            .flat_map(|&r| z.row(r).iter().map(|&v| v as f32))
            .collect();
        let t = Tensor::from_data(TensorData::new(part, [rows.len(), z.n_cols]), device);
        let mean = model.decoder.mean(&model.decoder.forward(t));
        width = mean.dims()[1];
        values.extend(tensor_to_vec(mean));
    }
    Matrix::new(z.n_rows, width, values)
}

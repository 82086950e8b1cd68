//! The guide: the inference network q(z | x) = N(mu(x), diag exp(log_var(x))), which amortizes the
//! E-step across data points (Pyro's "guide").

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor};
use emvae_core::rng::Rng;

use crate::config::{LikelihoodKind, NetworkConfig, PosteriorVariance, VaeConfig};
use crate::nn::{Mlp, linear, param};

/// `log 2 pi`.
pub const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// A diagonal Gaussian posterior per row: `mean` and `log_var`, `[batch, latent]`.
#[derive(Debug, Clone)]
pub struct Posterior {
    pub mean: Tensor<2>,
    pub log_var: Tensor<2>,
}

impl Posterior {
    pub fn detach(self) -> Self {
        Self {
            mean: self.mean.detach(),
            log_var: self.log_var.detach(),
        }
    }

    /// Reparameterised samples `z = mean + exp(log_var / 2) eps` for noise `eps` `[S * batch, latent]`
    /// (sample-major): `[S * batch, latent]`.
    pub fn sample(&self, eps: Tensor<2>, samples: usize) -> Tensor<2> {
        let (mean, std) = self.repeat(samples);
        mean + std * eps
    }

    /// Mean and standard deviation repeated `samples` times along rows (sample-major).
    pub fn repeat(&self, samples: usize) -> (Tensor<2>, Tensor<2>) {
        let std = self.log_var.clone().mul_scalar(0.5).exp();
        if samples == 1 {
            (self.mean.clone(), std)
        } else {
            (
                self.mean.clone().repeat_dim(0, samples),
                std.repeat_dim(0, samples),
            )
        }
    }

    /// `log q(z | x)` of samples `z` `[S * batch, latent]` drawn with noise `eps`: per row `[S * batch]`.
    /// With `z = mean + std eps`, `log q = -1/2 sum (log 2pi + log_var + eps^2)`.
    pub fn log_prob_of_noise(&self, eps: Tensor<2>, samples: usize) -> Tensor<1> {
        let lv = if samples == 1 {
            self.log_var.clone()
        } else {
            self.log_var.clone().repeat_dim(0, samples)
        };
        let rows = lv.dims()[0];
        ((lv + eps.clone() * eps).add_scalar(LN_2PI))
            .sum_dim(1)
            .mul_scalar(-0.5)
            .reshape([rows])
    }

    /// `log q(z | x)` of arbitrary `z` `[S * batch, latent]`.
    pub fn log_prob(&self, z: Tensor<2>, samples: usize) -> Tensor<1> {
        let (mean, std) = self.repeat(samples);
        let eps = (z - mean) / std;
        self.log_prob_of_noise(eps, samples)
    }
}

/// The inference network.
#[derive(Module, Debug)]
pub struct Encoder {
    pub body: Mlp,
    pub mean: Linear,
    pub log_var: Option<Linear>,
    /// One log-variance per latent dimension, shared by all x (`variance = "free"`).
    pub free_log_var: Option<Param<Tensor<1>>>,
    /// Categorical data: categories per column (the input is one-hot encoded).
    #[module(skip)]
    pub n_categories: Option<usize>,
}

impl Encoder {
    pub fn new(config: &VaeConfig, rng: &mut Rng, device: &Device) -> Self {
        let net: &NetworkConfig = &config.encoder;
        let sizes = &net.sizes;
        let n_categories = match config.likelihood.kind {
            LikelihoodKind::Categorical => config.likelihood.n_categories,
            _ => None,
        };
        let mut body_sizes = sizes[..sizes.len() - 1].to_vec();
        body_sizes[0] *= n_categories.unwrap_or(1);
        let hidden = *body_sizes.last().expect("checked: at least [data, latent]");
        let latent = sizes[sizes.len() - 1];
        let body = Mlp::new(&body_sizes, net.activation, rng, device);
        let mean = linear(hidden, latent, rng, device);
        let (log_var, free_log_var) = match net.variance {
            PosteriorVariance::Network => (Some(linear(hidden, latent, rng, device)), None),
            PosteriorVariance::Free => (None, Some(param(vec![0.0; latent], [latent], device))),
        };
        Self {
            body,
            mean,
            log_var,
            free_log_var,
            n_categories,
        }
    }

    /// The network's input for data rows `x` (one-hot for categorical data).
    pub fn input(&self, x: Tensor<2>) -> Tensor<2> {
        match self.n_categories {
            None => x,
            Some(v) => {
                let [b, d] = x.dims();
                let ids: Tensor<2, Int> = x.int();
                ids.one_hot::<3>(v).float().reshape([b, d * v])
            }
        }
    }

    /// `q(z | x)` for rows `x` `[batch, data]`.
    pub fn forward(&self, x: Tensor<2>) -> Posterior {
        let h = self.body.forward(self.input(x));
        let mean = self.mean.forward(h.clone());
        let log_var = match (&self.log_var, &self.free_log_var) {
            (Some(head), _) => head.forward(h),
            (None, Some(free)) => {
                let [b, l] = mean.dims();
                free.val().reshape([1, l]).repeat_dim(0, b)
            }
            (None, None) => unreachable!("one variance head"),
        };
        Posterior { mean, log_var }
    }
}

//! The generative model p(z) p(x | z) (Pyro's "model"): a prior and a decoder network with its
//! likelihood.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor, activation};
use emvae_core::rng::Rng;
use emvae_core::tensor::log_sum_exp;
use rand_distr::{Distribution, StandardNormal};

use crate::config::{GaussianVariance, LikelihoodKind, PriorConfig, PriorKind, VaeConfig};
use crate::guide::LN_2PI;
use crate::nn::{Mlp, linear, param};

/// The likelihood's parameters for a batch of `z`.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a short-lived value on the stack, never stored in bulk
pub enum LikelihoodParams {
    /// `[rows, data]` logits.
    Bernoulli { logits: Tensor<2> },
    /// `[rows, data]` means and log-variances (the latter broadcast from `[1, data]` or `[1, 1]`).
    Gaussian { mean: Tensor<2>, log_var: Tensor<2> },
    /// `[rows, data, categories]` logits.
    Categorical { logits: Tensor<3> },
}

/// The decoder network and the likelihood it parameterises.
#[derive(Module, Debug)]
pub struct Decoder {
    pub body: Mlp,
    pub out: Linear,
    /// Learned Gaussian log-variance: `[1]` (global) or `[data]` (per dimension).
    pub log_var: Option<Param<Tensor<1>>>,
    /// Autoregressive weights `A` `[data, data]`; only the strict upper triangle is used.
    pub autoregressive: Option<Param<Tensor<2>>>,
    #[module(skip)]
    pub kind: LikelihoodKind,
    #[module(skip)]
    pub variance: GaussianVariance,
    #[module(skip)]
    pub data_dim: usize,
    #[module(skip)]
    pub n_categories: usize,
}

impl Decoder {
    pub fn new(config: &VaeConfig, rng: &mut Rng, device: &Device) -> Self {
        let sizes = &config.decoder.sizes;
        let lk = &config.likelihood;
        let data_dim = sizes[sizes.len() - 1];
        let n_categories = lk.n_categories.unwrap_or(1);
        let body = Mlp::new(
            &sizes[..sizes.len() - 1],
            config.decoder.activation,
            rng,
            device,
        );
        let hidden = sizes[sizes.len() - 2];
        let out_width = match (lk.kind, lk.variance) {
            (LikelihoodKind::Categorical, _) => data_dim * n_categories,
            (LikelihoodKind::Gaussian, GaussianVariance::Decoder) => 2 * data_dim,
            _ => data_dim,
        };
        let out = linear(hidden, out_width, rng, device);
        let init = lk.init_variance.ln() as f32;
        let log_var = match (lk.kind, lk.variance) {
            (LikelihoodKind::Gaussian, GaussianVariance::Global) => {
                Some(param(vec![init], [1], device))
            }
            (LikelihoodKind::Gaussian, GaussianVariance::PerDimension) => {
                Some(param(vec![init; data_dim], [data_dim], device))
            }
            _ => None,
        };
        let autoregressive = lk
            .autoregressive
            .then(|| param(vec![0.0; data_dim * data_dim], [data_dim, data_dim], device));
        Self {
            body,
            out,
            log_var,
            autoregressive,
            kind: lk.kind,
            variance: lk.variance,
            data_dim,
            n_categories,
        }
    }

    /// The likelihood's parameters for latent rows `z` `[rows, latent]`.
    pub fn forward(&self, z: Tensor<2>) -> LikelihoodParams {
        let h = self.out.forward(self.body.forward(z));
        let [rows, _] = h.dims();
        let d = self.data_dim;
        match self.kind {
            LikelihoodKind::Bernoulli => LikelihoodParams::Bernoulli { logits: h },
            LikelihoodKind::Categorical => LikelihoodParams::Categorical {
                logits: h.reshape([rows, d, self.n_categories]),
            },
            LikelihoodKind::Gaussian => match &self.log_var {
                Some(lv) => {
                    let width = lv.dims()[0];
                    LikelihoodParams::Gaussian {
                        mean: h,
                        log_var: lv.val().reshape([1, width]),
                    }
                }
                None => LikelihoodParams::Gaussian {
                    mean: h.clone().slice([0..rows, 0..d]),
                    log_var: h.slice([0..rows, d..2 * d]),
                },
            },
        }
    }

    /// The autoregressive term `x @ triu(A, 1)`: dimension `d` sees `x_j` for `j < d` only.
    fn autoregressive_logits(&self, x: Tensor<2>) -> Option<Tensor<2>> {
        self.autoregressive
            .as_ref()
            .map(|a| x.matmul(a.val().triu(1)))
    }

    /// `log p(x | z)` per row, summed over the data's dimensions: `[rows]`. `x` `[rows, data]`.
    pub fn log_prob(&self, params: &LikelihoodParams, x: Tensor<2>) -> Tensor<1> {
        let rows = x.dims()[0];
        let per_dim = match params {
            // x l - softplus(l) = x l - max(l, 0) - log(1 + exp(-|l|)), stable for any l.
            LikelihoodParams::Bernoulli { logits } => {
                let l = match self.autoregressive_logits(x.clone()) {
                    Some(ar) => logits.clone() + ar,
                    None => logits.clone(),
                };
                x * l.clone() - activation::relu(l.clone()) - l.abs().neg().exp().log1p()
            }
            LikelihoodParams::Gaussian { mean, log_var } => {
                let diff = x - mean.clone();
                let inv_var = log_var.clone().neg().exp();
                (diff.clone() * diff * inv_var + log_var.clone())
                    .add_scalar(LN_2PI)
                    .mul_scalar(-0.5)
            }
            LikelihoodParams::Categorical { logits } => {
                let log_p = activation::log_softmax(logits.clone(), 2);
                let ids: Tensor<2, Int> = x.int();
                let onehot = ids.one_hot::<3>(self.n_categories).float();
                (log_p * onehot).sum_dim(2).squeeze_dim::<2>(2)
            }
        };
        per_dim.sum_dim(1).reshape([rows])
    }

    /// The likelihood's mean per row (probabilities, means, or per-category probabilities flattened),
    /// for decoding. For an autoregressive decoder, the probabilities of each dimension given the
    /// previous ones taken at their most probable values (greedy decoding, one dimension at a time).
    pub fn mean(&self, params: &LikelihoodParams) -> Tensor<2> {
        match params {
            LikelihoodParams::Bernoulli { logits } if self.autoregressive.is_some() => {
                let [rows, d] = logits.dims();
                let mut x = Tensor::<2>::zeros([rows, d], &logits.device());
                let mut probs = Tensor::<2>::zeros([rows, d], &logits.device());
                for j in 0..d {
                    let l = logits.clone()
                        + self
                            .autoregressive_logits(x.clone())
                            .expect("autoregressive");
                    let p = activation::sigmoid(l.slice([0..rows, j..j + 1]));
                    probs = probs.slice_assign([0..rows, j..j + 1], p.clone());
                    x = x.slice_assign([0..rows, j..j + 1], p.greater_elem(0.5).float());
                }
                probs
            }
            LikelihoodParams::Bernoulli { logits } => activation::sigmoid(logits.clone()),
            LikelihoodParams::Gaussian { mean, .. } => mean.clone(),
            LikelihoodParams::Categorical { logits } => {
                let [b, d, v] = logits.dims();
                activation::softmax(logits.clone(), 2).reshape([b, d * v])
            }
        }
    }
}

/// A mixture of diagonal Gaussians in latent space.
#[derive(Module, Debug)]
pub struct MixturePrior {
    pub logits: Param<Tensor<1>>,
    pub means: Param<Tensor<2>>,
    pub log_vars: Param<Tensor<2>>,
}

/// The prior p(z): standard normal, or a mixture of Gaussians when `mixture` is set.
#[derive(Module, Debug)]
pub struct Prior {
    pub mixture: Option<MixturePrior>,
    #[module(skip)]
    pub latent_dim: usize,
}

impl Prior {
    pub fn new(config: &VaeConfig, rng: &mut Rng, device: &Device) -> Self {
        Self::from_config(&config.prior, config.latent_dim(), rng, device)
    }

    /// The prior of `prior` over `l` latent dimensions (mixture components drawn from `rng`).
    pub fn from_config(prior: &PriorConfig, l: usize, rng: &mut Rng, device: &Device) -> Self {
        let mixture = match prior.kind {
            PriorKind::StandardNormal => None,
            PriorKind::Mixture => {
                let k = prior.n_components;
                let means = (0..k * l)
                    .map(|_| {
                        let v: f64 = StandardNormal.sample(rng);
                        v as f32
                    })
                    .collect();
                let m = MixturePrior {
                    logits: param(vec![0.0; k], [k], device),
                    means: param(means, [k, l], device),
                    log_vars: param(vec![0.0; k * l], [k, l], device),
                };
                Some(if prior.learnable { m } else { m.no_grad() })
            }
        };
        Self {
            mixture,
            latent_dim: l,
        }
    }

    pub fn is_standard_normal(&self) -> bool {
        self.mixture.is_none()
    }

    /// `log p(z)` per row `[rows]` for `z` `[rows, latent]`.
    pub fn log_prob(&self, z: Tensor<2>) -> Tensor<1> {
        let [rows, l] = z.dims();
        match &self.mixture {
            None => (z.clone() * z)
                .add_scalar(LN_2PI)
                .sum_dim(1)
                .mul_scalar(-0.5)
                .reshape([rows]),
            Some(m) => {
                let k = m.logits.dims()[0];
                let log_w = activation::log_softmax(m.logits.val(), 0).reshape([1, k]);
                let means = m.means.val().reshape([1, k, l]);
                let log_vars = m.log_vars.val().reshape([1, k, l]);
                let diff = z.reshape([rows, 1, l]) - means;
                let comp = (diff.clone() * diff * log_vars.clone().neg().exp() + log_vars)
                    .add_scalar(LN_2PI)
                    .sum_dim(2)
                    .mul_scalar(-0.5)
                    .reshape([rows, k]);
                log_sum_exp(comp + log_w, 1).reshape([rows])
            }
        }
    }

    /// Host-side parameters of the prior: `(weights [k], means [k, l], variances [k, l])`, with one
    /// unit component for the standard normal.
    pub fn components(&self) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        use emvae_core::tensor::tensor_to_vec;
        let l = self.latent_dim;
        match &self.mixture {
            None => (vec![1.0], vec![0.0; l], vec![1.0; l]),
            Some(m) => {
                let w = tensor_to_vec(activation::softmax(m.logits.val(), 0));
                let means = tensor_to_vec(m.means.val());
                let vars = tensor_to_vec(m.log_vars.val().exp());
                (w, means, vars)
            }
        }
    }
}

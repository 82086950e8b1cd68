//! The `[vae]` table of a config: model (prior, likelihood, decoder), guide (encoder), objective,
//! E-step strategy, training and evaluation. Unchecked as read; [`VaeConfig::check`] validates it.
//!
//! ```toml
//! [vae.encoder]          # q(z | x): data -> hidden -> latent (mean and log-variance heads)
//! sizes = [784, 512, 256, 32]
//! activation = "relu"
//! [vae.decoder]          # p(x | z): latent -> hidden -> data
//! sizes = [32, 256, 512, 784]
//! [vae.likelihood]
//! kind = "bernoulli"     # bernoulli | gaussian | categorical
//! [vae.prior]
//! kind = "standard_normal"   # standard_normal | mixture
//! ```

use emvae_core::config::InvalidParam;
use serde::{Deserialize, Serialize};

/// Non-linearity after every hidden layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Relu,
    Tanh,
    Elu,
    Softplus,
    Sigmoid,
    Gelu,
    LeakyRelu,
    /// No non-linearity: the network is affine.
    Linear,
}

/// How the encoder's posterior log-variance is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PosteriorVariance {
    /// A linear head on the encoder's last hidden layer, as the mean.
    #[default]
    Network,
    /// One learned log-variance per latent dimension, the same for every `x` (the linear VAE of
    /// Lucas et al. 2019, whose optimum is probabilistic PCA).
    Free,
}

/// A multilayer perceptron given by its layer widths, ends included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// `[input, hidden..., output]`: encoder `[data, ..., latent]`, decoder `[latent, ..., data]`.
    pub sizes: Vec<usize>,
    #[serde(default)]
    pub activation: Activation,
    /// Encoder only: how the posterior variance is produced.
    #[serde(default)]
    pub variance: PosteriorVariance,
}

/// The prior p(z).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorKind {
    #[default]
    StandardNormal,
    /// A mixture of diagonal Gaussians in latent space (a GMM prior).
    Mixture,
}

fn default_prior_components() -> usize {
    10
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorConfig {
    #[serde(default)]
    pub kind: PriorKind,
    /// Mixture prior: number of components.
    #[serde(default = "default_prior_components")]
    pub n_components: usize,
    /// Mixture prior: learn weights, means and variances with the decoder (else fixed at init).
    #[serde(default = "default_true")]
    pub learnable: bool,
}

impl Default for PriorConfig {
    fn default() -> Self {
        Self {
            kind: PriorKind::default(),
            n_components: default_prior_components(),
            learnable: true,
        }
    }
}

/// The likelihood p(x | z).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LikelihoodKind {
    /// Binary data; the decoder outputs logits.
    Bernoulli,
    /// Real data; the decoder outputs means, the variance per `variance`.
    Gaussian,
    /// Each of the data's columns is a category id in `0..n_categories` (tokens).
    Categorical,
}

/// Where a Gaussian likelihood's variance comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GaussianVariance {
    /// One learned sigma^2 shared by every dimension.
    #[default]
    Global,
    /// One learned sigma^2 per data dimension.
    PerDimension,
    /// Output by the decoder for every `z` (heteroscedastic).
    Decoder,
}

fn default_init_variance() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LikelihoodConfig {
    pub kind: LikelihoodKind,
    /// Gaussian: where sigma^2 comes from.
    #[serde(default)]
    pub variance: GaussianVariance,
    /// Gaussian with a learned global or per-dimension variance: its initial value.
    #[serde(default = "default_init_variance")]
    pub init_variance: f64,
    /// Categorical: number of categories of every column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_categories: Option<usize>,
    /// Bernoulli: make the decoder autoregressive, `p(x | z) = prod_d p(x_d | z, x_<d)` with logits
    /// `h_d(z) + sum_{j<d} A_jd x_j` (a fully visible sigmoid belief net added to the MLP). Such a
    /// decoder can model the data without z: the setting in which posterior collapse appears.
    #[serde(default)]
    pub autoregressive: bool,
}

/// Which bound is maximised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectiveKind {
    /// The evidence lower bound `E_q[log p(x | z)] - beta KL(q || p)`.
    #[default]
    Elbo,
    /// The importance-weighted bound `E[log 1/K sum_k p(x, z_k) / q(z_k | x)]` (Burda et al. 2015).
    Iwae,
}

/// How the KL term is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlEstimator {
    /// Analytic where the prior allows it (standard normal), Monte Carlo otherwise.
    #[default]
    Auto,
    Analytic,
    MonteCarlo,
}

/// KL weight schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Annealing {
    #[default]
    None,
    /// From `anneal_start` to `beta` linearly over `anneal_steps` steps.
    Linear,
    /// Fu et al. 2019: `anneal_cycles` cycles of `anneal_steps` steps, rising linearly over the first
    /// `anneal_ratio` of each cycle, then held at `beta`; after the cycles, `beta`.
    Cyclical,
}

fn default_one_f() -> f64 {
    1.0
}
fn default_one() -> usize {
    1
}
fn default_anneal_steps() -> usize {
    10_000
}
fn default_anneal_cycles() -> usize {
    4
}
fn default_anneal_ratio() -> f64 {
    0.5
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveConfig {
    #[serde(default)]
    pub kind: ObjectiveKind,
    /// Samples of z per data point: Monte Carlo samples for the ELBO, K for IWAE.
    #[serde(default = "default_one")]
    pub samples: usize,
    /// Weight of the KL term (the ELBO at 1).
    #[serde(default = "default_one_f")]
    pub beta: f64,
    #[serde(default)]
    pub kl: KlEstimator,
    /// Free bits (Kingma et al. 2016): each latent dimension's batch-average KL counts at least this
    /// many nats in the objective. 0 disables.
    #[serde(default)]
    pub free_bits: f64,
    #[serde(default)]
    pub annealing: Annealing,
    #[serde(default)]
    pub anneal_start: f64,
    #[serde(default = "default_anneal_steps")]
    pub anneal_steps: usize,
    #[serde(default = "default_anneal_cycles")]
    pub anneal_cycles: usize,
    #[serde(default = "default_anneal_ratio")]
    pub anneal_ratio: f64,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            kind: ObjectiveKind::default(),
            samples: 1,
            beta: 1.0,
            kl: KlEstimator::default(),
            free_bits: 0.0,
            annealing: Annealing::default(),
            anneal_start: 0.0,
            anneal_steps: default_anneal_steps(),
            anneal_cycles: default_anneal_cycles(),
            anneal_ratio: default_anneal_ratio(),
        }
    }
}

/// How the posterior is approximated in each step: the E-step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Encoder and decoder updated jointly on the objective (a VAE).
    #[default]
    Amortized,
    /// He et al. 2019: before each decoder step, update the encoder alone until its objective stops
    /// improving; return to joint updates once the mutual information I(x; z) stops rising.
    Aggressive,
    /// Free variational parameters (mean, log-variance) per data point, updated with the decoder
    /// (variational EM without an encoder).
    NonAmortized,
    /// Kim et al. 2018: the encoder's output refined by `refine_steps` gradient steps on each data
    /// point's ELBO; the decoder learns at the refined posterior, the encoder on its own ELBO.
    SemiAmortized,
    /// Monte Carlo EM: self-normalised importance sampling with `mc_samples` draws from the encoder
    /// (or the prior) as the E-step; the decoder maximises the weighted complete-data log-likelihood.
    MonteCarloEm,
}

/// Proposal of the Monte Carlo E-step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proposal {
    #[default]
    Encoder,
    Prior,
}

fn default_inner_max() -> usize {
    100
}
fn default_inner_window() -> usize {
    10
}
fn default_refine_steps() -> usize {
    20
}
fn default_refine_lr() -> f64 {
    1.0
}
fn default_posterior_lr() -> f64 {
    1e-2
}
fn default_mc_samples() -> usize {
    10
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EStepConfig {
    #[serde(default)]
    pub strategy: Strategy,
    /// Aggressive: most encoder steps before each decoder step.
    #[serde(default = "default_inner_max")]
    pub inner_max_steps: usize,
    /// Aggressive: the inner loop stops when the mean loss of the last `inner_window` encoder steps
    /// is no better than that of the window before.
    #[serde(default = "default_inner_window")]
    pub inner_window: usize,
    /// Semi-amortized: gradient steps refining each posterior.
    #[serde(default = "default_refine_steps")]
    pub refine_steps: usize,
    /// Semi-amortized: step size of the refinement (gradient ascent on the per-point ELBO).
    #[serde(default = "default_refine_lr")]
    pub refine_lr: f64,
    /// Non-amortized: Adam step size of the per-point variational parameters.
    #[serde(default = "default_posterior_lr")]
    pub posterior_lr: f64,
    /// Monte Carlo EM: importance samples per data point.
    #[serde(default = "default_mc_samples")]
    pub mc_samples: usize,
    #[serde(default)]
    pub proposal: Proposal,
}

impl Default for EStepConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::default(),
            inner_max_steps: default_inner_max(),
            inner_window: default_inner_window(),
            refine_steps: default_refine_steps(),
            refine_lr: default_refine_lr(),
            posterior_lr: default_posterior_lr(),
            mc_samples: default_mc_samples(),
            proposal: Proposal::default(),
        }
    }
}

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    #[default]
    Constant,
    /// Multiply by `lr_decay` at every epoch in `lr_milestones`.
    Step,
    /// Burda et al. 2015: `lr 10^(-i/7)` for `3^i` epochs, `i = 0..7` (3280 epochs in all).
    Burda,
    /// Validation-driven (He et al. 2019): multiply by `lr_decay` when the held-out loss (negative
    /// ELBO) has not improved for `patience` evaluations; stop after `max_decays` decays.
    Plateau,
}

fn default_epochs() -> usize {
    100
}
fn default_batch() -> usize {
    128
}
fn default_lr() -> f64 {
    1e-3
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_adam_eps() -> f64 {
    1e-8
}
fn default_lr_decay() -> f64 {
    0.1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Stop after this many optimisation steps in all, if sooner than `epochs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Adam's step size.
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_betas")]
    pub adam_betas: [f64; 2],
    /// Adam's epsilon (PyTorch's default 1e-8; burn's own default is 1e-5).
    #[serde(default = "default_adam_eps")]
    pub adam_eps: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value; 0 disables.
    #[serde(default)]
    pub grad_clip: f64,
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    #[serde(default = "default_lr_decay")]
    pub lr_decay: f64,
    #[serde(default)]
    pub lr_milestones: Vec<usize>,
    /// Plateau schedule: evaluations without improvement before the rate is decayed.
    #[serde(default = "default_patience")]
    pub patience: usize,
    /// Plateau schedule: training stops at this many decays (early stopping).
    #[serde(default = "default_max_decays")]
    pub max_decays: usize,
    /// Data-parallel shards of each minibatch (every E-step strategy): the shards' gradients are
    /// computed concurrently, one thread each, on replicas of the model and summed in a fixed order,
    /// so results depend on this number and never on the machine's core count. 1 runs the step whole;
    /// 0 (the default) chooses from the config alone: 2 when a step is large enough for a second
    /// thread to pay (see [`TrainConfig::resolved_shards`]), else 1.
    #[serde(default)]
    pub shards: usize,
}

/// Batch rows x parameters above which `shards = 0` means 2 shards: below it (the digits VAE,
/// 64 x 175,000) the threads' hand-offs cost more than the second core gives; above it (the MLP VAE
/// benchmark, 128 x 1.1 million, and the sentence VAE) two shards train 1.3 to 1.6 times faster.
pub const AUTO_SHARD_WORK: usize = 1 << 25;

impl TrainConfig {
    /// The shard count a model of `parameters` parameters trains with.
    pub fn resolved_shards(&self, parameters: usize) -> usize {
        match self.shards {
            0 if self.batch_size.saturating_mul(parameters) >= AUTO_SHARD_WORK => 2,
            0 => 1,
            n => n,
        }
    }
}

fn default_patience() -> usize {
    2
}
fn default_max_decays() -> usize {
    5
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: default_epochs(),
            max_steps: None,
            batch_size: default_batch(),
            lr: default_lr(),
            adam_betas: default_betas(),
            adam_eps: default_adam_eps(),
            weight_decay: 0.0,
            grad_clip: 0.0,
            lr_schedule: LrSchedule::default(),
            lr_decay: default_lr_decay(),
            lr_milestones: Vec::new(),
            patience: default_patience(),
            max_decays: default_max_decays(),
            shards: 0,
        }
    }
}

fn default_iw_samples() -> usize {
    50
}
fn default_final_iw() -> usize {
    500
}
fn default_gap_steps() -> usize {
    200
}
fn default_gap_lr() -> f64 {
    1e-2
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Epochs between held-out evaluations (diagnostics every epoch are on the training batches).
    #[serde(default = "default_one")]
    pub every: usize,
    /// K of the importance-weighted NLL during training.
    #[serde(default = "default_iw_samples")]
    pub iw_samples: usize,
    /// K of the final importance-weighted NLL.
    #[serde(default = "default_final_iw")]
    pub final_iw_samples: usize,
    /// Also measure the amortization gap at the end: the ELBO with per-point optimised posteriors
    /// (started at the encoder's) minus the encoder's ELBO.
    #[serde(default)]
    pub amortization_gap: bool,
    #[serde(default = "default_gap_steps")]
    pub gap_steps: usize,
    #[serde(default = "default_gap_lr")]
    pub gap_lr: f64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            every: 1,
            iw_samples: default_iw_samples(),
            final_iw_samples: default_final_iw(),
            amortization_gap: false,
            gap_steps: default_gap_steps(),
            gap_lr: default_gap_lr(),
        }
    }
}

/// The whole `[vae]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeConfig {
    pub encoder: NetworkConfig,
    pub decoder: NetworkConfig,
    pub likelihood: LikelihoodConfig,
    #[serde(default)]
    pub prior: PriorConfig,
    #[serde(default)]
    pub objective: ObjectiveConfig,
    #[serde(default)]
    pub estep: EStepConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalConfig,
}

pub(crate) fn positive(key: &str, v: f64) -> Result<(), InvalidParam> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(InvalidParam::new(
            key,
            format!("must be a finite number > 0, got {v}"),
        ))
    }
}

pub(crate) fn at_least_one(key: &str, v: usize) -> Result<(), InvalidParam> {
    if v >= 1 {
        Ok(())
    } else {
        Err(InvalidParam::new(key, "must be at least 1, got 0"))
    }
}

impl VaeConfig {
    /// Latent dimension: the encoder's last width.
    pub fn latent_dim(&self) -> usize {
        self.encoder.sizes.last().copied().unwrap_or(0)
    }

    /// Data dimension: the decoder's last width.
    pub fn data_dim(&self) -> usize {
        self.decoder.sizes.last().copied().unwrap_or(0)
    }

    /// Validates everything that does not depend on the data; keys are relative to `[vae]`.
    pub fn check(&self) -> Result<(), InvalidParam> {
        let (enc, dec) = (&self.encoder.sizes, &self.decoder.sizes);
        if enc.len() < 2 {
            return Err(InvalidParam::new(
                "encoder.sizes",
                format!("needs at least [data, latent], got {enc:?}"),
            ));
        }
        if dec.len() < 2 {
            return Err(InvalidParam::new(
                "decoder.sizes",
                format!("needs at least [latent, data], got {dec:?}"),
            ));
        }
        for (name, sizes) in [("encoder", enc), ("decoder", dec)] {
            if let Some(i) = sizes.iter().position(|&s| s == 0) {
                let what = match (name, i) {
                    ("encoder", i) if i + 1 == sizes.len() => "the latent size",
                    ("decoder", 0) => "the latent size",
                    _ => "a layer width",
                };
                return Err(InvalidParam::new(
                    format!("{name}.sizes[{i}]"),
                    format!("{what} must be at least 1, got 0"),
                ));
            }
        }
        if enc[enc.len() - 1] != dec[0] {
            return Err(InvalidParam::new(
                "decoder.sizes[0]",
                format!(
                    "the decoder's input ({}) must be the encoder's latent size (encoder.sizes ends with {})",
                    dec[0],
                    enc[enc.len() - 1]
                ),
            ));
        }
        if enc[0] != dec[dec.len() - 1] {
            return Err(InvalidParam::new(
                format!("decoder.sizes[{}]", dec.len() - 1),
                format!(
                    "the decoder's output ({}) must be the encoder's input size (encoder.sizes starts with {})",
                    dec[dec.len() - 1],
                    enc[0]
                ),
            ));
        }
        if self.decoder.variance != PosteriorVariance::Network {
            return Err(InvalidParam::new(
                "decoder.variance",
                "applies to the encoder only (the decoder's variance is likelihood.variance)",
            ));
        }
        let lk = &self.likelihood;
        match lk.kind {
            LikelihoodKind::Categorical => match lk.n_categories {
                Some(v) if v >= 2 => {}
                Some(v) => {
                    return Err(InvalidParam::new(
                        "likelihood.n_categories",
                        format!("must be at least 2, got {v}"),
                    ));
                }
                None => {
                    return Err(InvalidParam::new(
                        "likelihood.n_categories",
                        "a categorical likelihood needs n_categories",
                    ));
                }
            },
            _ if lk.n_categories.is_some() => {
                return Err(InvalidParam::new(
                    "likelihood.n_categories",
                    "applies to kind = \"categorical\" only",
                ));
            }
            _ => {}
        }
        positive("likelihood.init_variance", lk.init_variance)?;
        if lk.autoregressive && lk.kind != LikelihoodKind::Bernoulli {
            return Err(InvalidParam::new(
                "likelihood.autoregressive",
                "an autoregressive decoder is available for kind = \"bernoulli\" only",
            ));
        }
        if self.prior.kind == PriorKind::Mixture {
            at_least_one("prior.n_components", self.prior.n_components)?;
        }
        check_training(
            &self.objective,
            &self.estep,
            &self.train,
            &self.eval,
            self.prior.kind == PriorKind::Mixture,
        )
    }
}

/// Validates the training settings every amortized model shares (keys relative to the model's table).
pub fn check_training(
    objective: &ObjectiveConfig,
    estep: &EStepConfig,
    train: &TrainConfig,
    eval: &EvalConfig,
    mixture_prior: bool,
) -> Result<(), InvalidParam> {
    let o = objective;
    at_least_one("objective.samples", o.samples)?;
    if !(o.beta.is_finite() && o.beta >= 0.0) {
        return Err(InvalidParam::new(
            "objective.beta",
            format!("must be >= 0, got {}", o.beta),
        ));
    }
    if !(o.free_bits.is_finite() && o.free_bits >= 0.0) {
        return Err(InvalidParam::new(
            "objective.free_bits",
            format!("must be >= 0 nats, got {}", o.free_bits),
        ));
    }
    if o.kind == ObjectiveKind::Iwae {
        let stray = if o.beta != 1.0 {
            Some("beta")
        } else if o.free_bits > 0.0 {
            Some("free_bits")
        } else if o.annealing != Annealing::None {
            Some("annealing")
        } else {
            None
        };
        if let Some(k) = stray {
            return Err(InvalidParam::new(
                format!("objective.{k}"),
                "the importance-weighted bound has no separate KL term to weight: use kind = \"elbo\"",
            ));
        }
    }
    if o.kl == KlEstimator::Analytic && mixture_prior {
        return Err(InvalidParam::new(
            "objective.kl",
            "the KL to a mixture prior has no closed form: use \"monte_carlo\" or \"auto\"",
        ));
    }
    if o.annealing != Annealing::None {
        at_least_one("objective.anneal_steps", o.anneal_steps)?;
        at_least_one("objective.anneal_cycles", o.anneal_cycles)?;
        if !(o.anneal_ratio > 0.0 && o.anneal_ratio <= 1.0) {
            return Err(InvalidParam::new(
                "objective.anneal_ratio",
                format!("must be in (0, 1], got {}", o.anneal_ratio),
            ));
        }
    }
    let e = estep;
    at_least_one("estep.inner_max_steps", e.inner_max_steps)?;
    at_least_one("estep.inner_window", e.inner_window)?;
    at_least_one("estep.mc_samples", e.mc_samples)?;
    positive("estep.refine_lr", e.refine_lr)?;
    positive("estep.posterior_lr", e.posterior_lr)?;
    if e.strategy != Strategy::Amortized && o.kind == ObjectiveKind::Iwae {
        return Err(InvalidParam::new(
            "estep.strategy",
            "the importance-weighted objective is used with the amortized strategy only",
        ));
    }
    let t = train;
    at_least_one("train.epochs", t.epochs)?;
    at_least_one("train.batch_size", t.batch_size)?;
    if t.shards > t.batch_size {
        return Err(InvalidParam::new(
            "train.shards",
            format!(
                "{} shards of a minibatch of {} rows leave some shards empty: use at most batch_size",
                t.shards, t.batch_size
            ),
        ));
    }
    positive("train.lr", t.lr)?;
    positive("train.adam_eps", t.adam_eps)?;
    for (i, b) in t.adam_betas.iter().enumerate() {
        if !(0.0..1.0).contains(b) {
            return Err(InvalidParam::new(
                format!("train.adam_betas[{i}]"),
                format!("must be in [0, 1), got {b}"),
            ));
        }
    }
    if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
        return Err(InvalidParam::new("train.weight_decay", "must be >= 0"));
    }
    if !(t.grad_clip.is_finite() && t.grad_clip >= 0.0) {
        return Err(InvalidParam::new(
            "train.grad_clip",
            "must be >= 0 (0 disables clipping)",
        ));
    }
    if t.lr_schedule == LrSchedule::Plateau {
        if !(t.lr_decay > 0.0 && t.lr_decay < 1.0) {
            return Err(InvalidParam::new(
                "train.lr_decay",
                format!(
                    "the plateau schedule needs a decay in (0, 1), got {}",
                    t.lr_decay
                ),
            ));
        }
        at_least_one("train.patience", t.patience)?;
        at_least_one("train.max_decays", t.max_decays)?;
    }
    if t.lr_schedule == LrSchedule::Step {
        positive("train.lr_decay", t.lr_decay)?;
        if t.lr_milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err(InvalidParam::new(
                "train.lr_milestones",
                "must be increasing epochs",
            ));
        }
    }
    if t.max_steps == Some(0) {
        return Err(InvalidParam::new("train.max_steps", "must be at least 1"));
    }
    let ev = eval;
    at_least_one("eval.every", ev.every)?;
    at_least_one("eval.iw_samples", ev.iw_samples)?;
    at_least_one("eval.final_iw_samples", ev.final_iw_samples)?;
    at_least_one("eval.gap_steps", ev.gap_steps)?;
    positive("eval.gap_lr", ev.gap_lr)?;
    Ok(())
}

impl crate::amortized::ModelConfig for VaeConfig {
    fn objective(&self) -> &ObjectiveConfig {
        &self.objective
    }
    fn estep(&self) -> &EStepConfig {
        &self.estep
    }
    fn train(&self) -> &TrainConfig {
        &self.train
    }
    fn eval(&self) -> &EvalConfig {
        &self.eval
    }
    fn latent_dim(&self) -> usize {
        VaeConfig::latent_dim(self)
    }
    fn mixture_prior(&self) -> bool {
        self.prior.kind == PriorKind::Mixture
    }
    fn architecture(&self) -> String {
        serde_json::to_string(&(&self.encoder, &self.decoder, &self.likelihood, &self.prior))
            .expect("configs serialise")
    }
    fn check(&self) -> Result<(), InvalidParam> {
        VaeConfig::check(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> VaeConfig {
        toml::from_str(text).unwrap()
    }

    const BASE: &str = "[encoder]\nsizes = [784, 512, 32]\n[decoder]\nsizes = [32, 512, 784]\n[likelihood]\nkind = \"bernoulli\"\n";

    /// `shards = 0` is a rule of the config alone: one shard for small steps, two for large ones; an
    /// explicit count is kept, and more shards than rows is refused.
    #[test]
    fn shard_count_follows_the_step_size() {
        let mut t = TrainConfig {
            batch_size: 64,
            ..TrainConfig::default()
        };
        assert_eq!(t.resolved_shards(175_000), 1, "the digits VAE");
        t.batch_size = 128;
        assert_eq!(t.resolved_shards(1_090_000), 2, "the MLP benchmark");
        t.shards = 3;
        assert_eq!(t.resolved_shards(10), 3);
        t.shards = 129;
        let err = check_training(
            &ObjectiveConfig::default(),
            &EStepConfig::default(),
            &t,
            &EvalConfig::default(),
            false,
        )
        .unwrap_err();
        assert_eq!(err.key, "train.shards");
    }

    #[test]
    fn defaults_are_complete_and_valid() {
        let c = config(BASE);
        c.check().unwrap();
        assert_eq!(c.latent_dim(), 32);
        assert_eq!(c.data_dim(), 784);
        assert_eq!(c.train.adam_eps, 1e-8);
        assert_eq!(c.objective.beta, 1.0);
    }

    #[test]
    fn sizes_must_agree_and_latent_must_be_positive() {
        let mut c = config(BASE);
        c.decoder.sizes = vec![16, 512, 784];
        assert_eq!(c.check().unwrap_err().key, "decoder.sizes[0]");
        let mut c = config(BASE);
        c.decoder.sizes = vec![32, 512, 700];
        assert_eq!(c.check().unwrap_err().key, "decoder.sizes[2]");
        let mut c = config(BASE);
        c.encoder.sizes = vec![784, 512, 0];
        c.decoder.sizes = vec![0, 512, 784];
        let e = c.check().unwrap_err();
        assert_eq!(e.key, "encoder.sizes[2]");
        assert!(e.message.contains("latent size"));
    }

    #[test]
    fn iwae_rejects_kl_weights() {
        let mut c = config(BASE);
        c.objective.kind = ObjectiveKind::Iwae;
        c.objective.free_bits = 0.5;
        assert_eq!(c.check().unwrap_err().key, "objective.free_bits");
    }
}

//! The training loop: minibatch EM with the configured E-step strategy, KL and learning-rate schedules,
//! per-epoch diagnostics, and checkpoints from which a run resumes bit for bit.
//!
//! Reproducibility: weights are initialised and all noise is drawn on the host from streams derived
//! from the seed and the step number (never from the backend's global generator), and each epoch's
//! visiting order is derived from the seed and the epoch. So a checkpoint needs only the model, the
//! optimiser's moments and the loop's counters to continue exactly as an uninterrupted run.

use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use emvae_core::hash::fnv1a64;
use emvae_core::rng::{derive_seed, rng_for};
use emvae_core::tensor::tensor_to_vec;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::adam::Adam;
use crate::amortized::{AmortizedModel, ModelConfig, TrainData};
use crate::config::{LrSchedule, ObjectiveKind, Proposal, Strategy};
use crate::data::normal_noise;
use crate::diagnostics::{DiagnoseOptions, Diagnostics, amortization_gap, diagnose};
use crate::error::VaeError;
use crate::guide::Posterior;
use crate::inference::{PosteriorSource, held_out_posteriors, sample_prior};
use crate::objective::{ObjectiveSpec, batch_terms};
use crate::refine::{Refinement, Rule, optimise_posteriors};
use crate::schedule::{beta_at, lr_at};
use crate::shard::{ShardedStep, StepMetrics, mean_of, metrics_of};
use crate::vae::Vae;

/// The trainer of the MLP VAE ([`Vae`]).
pub type Trainer = AmortizedTrainer<Vae>;

/// Format tag of checkpoints.
pub const CHECKPOINT_FORMAT: &str = "emvae.vae.checkpoint.v2";
/// The format before the fused optimiser (burn's Adam record), which this version cannot continue.
const CHECKPOINT_FORMAT_V1: &str = "emvae.vae.checkpoint.v1";
const MAGIC: &[u8; 8] = b"EMVAECK2";
/// Checkpoints of the first format (burn's optimiser record, no checksum).
const MAGIC_V1: &[u8; 8] = b"EMVAECK1";

/// Running sums over the current epoch's batches (kept in checkpoints so that an epoch interrupted and
/// resumed reports what an uninterrupted one reports).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochSums {
    pub loss: f64,
    pub bound: f64,
    pub reconstruction: f64,
    pub kl: f64,
    pub rows: u64,
    pub batches: u64,
    pub seconds: f64,
    /// Throughput units (examples, or tokens for text) processed.
    #[serde(default)]
    pub units: u64,
}

/// Counters of the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimisation steps done (one per minibatch; an aggressive inner loop counts as one).
    pub step: u64,
    /// The current epoch (0-based); equals the number of finished epochs between epochs.
    pub epoch: u64,
    /// Minibatches done in the current epoch.
    pub batch_in_epoch: u64,
    /// Aggressive strategy: still in the aggressive phase.
    pub aggressive: bool,
    /// Aggressive strategy: the mutual information at the last check.
    pub last_mi: Option<f64>,
    pub sums: EpochSums,
    /// Seconds spent in optimisation steps so far.
    pub seconds: f64,
    /// Training rows processed so far (minibatch rows; aggressive inner steps not counted).
    pub rows: u64,
    /// Throughput units (examples, or tokens for text) processed so far.
    #[serde(default)]
    pub units: u64,
    pub finished: bool,
    /// The best held-out loss (negative ELBO) seen at an evaluation.
    #[serde(default)]
    pub best_loss: Option<f64>,
    /// Plateau schedule: evaluations since the last improvement.
    #[serde(default)]
    pub bad_evals: u32,
    /// Plateau schedule: decays of the learning rate so far.
    #[serde(default)]
    pub decays: u32,
    /// Plateau schedule: the factor on the configured learning rate.
    #[serde(default = "one")]
    pub lr_scale: f64,
}

fn one() -> f64 {
    1.0
}

/// One line of `metrics.jsonl`: an epoch (or the partial epoch where `max_steps` ended training).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: u64,
    pub step: u64,
    /// Averages over the epoch's training batches.
    pub loss: f64,
    pub elbo: f64,
    pub reconstruction: f64,
    pub kl: f64,
    pub beta: f64,
    pub lr: f64,
    pub seconds: f64,
    pub examples_per_second: f64,
    /// Throughput in the data's units (tokens per second for text), where they are not examples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggressive: Option<bool>,
    /// At a held-out evaluation: whether this is the best model so far (lowest held-out loss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<bool>,
    /// Training stopped here because the held-out loss stopped improving (plateau schedule).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub early_stop: bool,
    /// Diagnostics on the held-out data (the training data when none is held out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval: Option<Diagnostics>,
}

/// How [`Trainer::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    /// Stopped after the requested number of steps; resume from a checkpoint.
    Stopped,
}

/// Sees the loop's progress; returning an error stops training.
pub trait TrainObserver<M: AmortizedModel> {
    fn on_step(&mut self, _state: &TrainState) {}
    fn on_epoch(
        &mut self,
        record: &EpochRecord,
        trainer: &AmortizedTrainer<M>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

impl<M: AmortizedModel> TrainObserver<M> for () {
    fn on_epoch(
        &mut self,
        _: &EpochRecord,
        _: &AmortizedTrainer<M>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

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
    fn new(n: usize, latent: usize) -> Self {
        Self {
            latent,
            mean: vec![0.0; n * latent],
            log_var: vec![0.0; n * latent],
            m: vec![0.0; 2 * n * latent],
            v: vec![0.0; 2 * n * latent],
            t: vec![0; n],
        }
    }

    /// Whether these posteriors are those of `n` rows in `latent` dimensions (a checkpoint's may not be).
    fn fits(&self, n: usize, latent: usize) -> bool {
        let values = n.checked_mul(latent);
        let moments = values.and_then(|v| v.checked_mul(2));
        self.latent == latent
            && values.is_some_and(|v| self.mean.len() == v && self.log_var.len() == v)
            && moments.is_some_and(|v| self.m.len() == v && self.v.len() == v)
            && self.t.len() == n
    }

    fn gather(&self, rows: &[usize], device: &Device) -> Posterior {
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
    fn update(&mut self, rows: &[usize], g_mean: &[f64], g_log_var: &[f64], lr: f64) {
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

/// State of a checkpoint beside the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointMeta {
    format: String,
    model_fingerprint: String,
    data_rows: usize,
    data_dim: usize,
    seed: u64,
    state: TrainState,
    local: Option<LocalPosteriors>,
}

/// A fingerprint of the model's architecture (what its parameters' shapes depend on).
pub fn model_fingerprint<C: ModelConfig>(config: &C) -> String {
    format!("{:016x}", fnv1a64(config.architecture().as_bytes()))
}

/// Squared norms of the gradients of the visited parameters.
struct GradNorm<'a> {
    grads: &'a GradientsParams,
    total: f64,
}

impl ModuleVisitor for GradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.total += tensor_to_vec((g.clone() * g).sum())[0];
        }
    }
}

/// Scales the visited parameters' gradients.
struct GradScale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for GradScale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Replaces `*slot` by `f(*slot)`, moving the value through `f`. Aborts the process if `f` panics
/// (the slot would otherwise hold a value already moved out).
fn replace_with<T>(slot: &mut T, f: impl FnOnce(T) -> T) {
    struct AbortOnUnwind;
    impl Drop for AbortOnUnwind {
        fn drop(&mut self) {
            std::process::abort();
        }
    }
    let guard = AbortOnUnwind;
    // SAFETY: the value read out is written back before `slot` is used again; if `f` unwinds, the
    // guard aborts before anything can observe (or drop) the moved-out slot.
    unsafe {
        let value = std::ptr::read(slot);
        std::ptr::write(slot, f(value));
    }
    std::mem::forget(guard);
}

/// Clips the global norm of `grads` (over `model`'s parameters) to `max_norm`.
fn clip_global_norm<M: Module>(grads: &mut GradientsParams, model: &M, max_norm: f64) {
    let mut norm = GradNorm { grads, total: 0.0 };
    model.visit(&mut norm);
    let total = norm.total.sqrt();
    if total > max_norm {
        model.visit(&mut GradScale {
            grads,
            factor: max_norm / total,
        });
    }
}

/// Trains any [`AmortizedModel`]: the one loop, objective set, diagnostics and checkpoint format of
/// every amortized model.
pub struct AmortizedTrainer<M: AmortizedModel> {
    pub config: M::Config,
    pub seed: u64,
    /// The autodiff device training runs on.
    pub device: Device,
    pub model: M,
    optim: Adam,
    pub state: TrainState,
    pub train: M::Data,
    /// Held-out data (binarised once).
    pub test: Option<M::Data>,
    pub local: Option<LocalPosteriors>,
    /// Data-parallel shards of each step (`train.shards`, resolved for this model's size).
    pub shards: usize,
}

/// Number of values in a module's float parameters.
pub fn parameter_count<M: Module>(module: &M) -> usize {
    crate::adam::parameter_sizes(module).iter().sum()
}

impl<M: AmortizedModel> AmortizedTrainer<M> {
    /// Checks that the data suit the model (keys relative to the model's table).
    pub fn check_data(config: &M::Config, train: &M::Data) -> Result<(), VaeError> {
        M::check_data(config, train)
    }

    /// A new run: a freshly initialised model on `device` (an autodiff device).
    pub fn new(
        config: M::Config,
        seed: u64,
        device: Device,
        train: M::Data,
        test: Option<M::Data>,
    ) -> Result<Self, VaeError> {
        config.check()?;
        Self::check_data(&config, &train)?;
        let device = if device.is_autodiff() {
            device
        } else {
            device.autodiff()
        };
        let model = M::init(&config, seed, &device);
        let local = (config.estep().strategy == Strategy::NonAmortized)
            .then(|| LocalPosteriors::new(train.len(), config.latent_dim()));
        let aggressive = config.estep().strategy == Strategy::Aggressive;
        let shards = config.train().resolved_shards(parameter_count(&model));
        Ok(Self {
            shards,
            optim: Adam::new(config.train()),
            model,
            state: TrainState {
                step: 0,
                epoch: 0,
                batch_in_epoch: 0,
                aggressive,
                last_mi: None,
                sums: EpochSums::default(),
                seconds: 0.0,
                rows: 0,
                units: 0,
                finished: false,
                best_loss: None,
                bad_evals: 0,
                decays: 0,
                lr_scale: 1.0,
            },
            config,
            seed,
            device,
            train,
            test: test.map(|t| t.for_evaluation()),
            local,
        })
    }

    /// Continues a run from checkpoint bytes written by [`Trainer::checkpoint_bytes`].
    pub fn resume(
        config: M::Config,
        seed: u64,
        device: Device,
        train: M::Data,
        test: Option<M::Data>,
        bytes: &[u8],
    ) -> Result<Self, VaeError> {
        let mut trainer = Self::new(config, seed, device, train, test)?;
        let parts = split_checkpoint(bytes)?;
        let meta: CheckpointMeta = serde_json::from_slice(parts[0])
            .map_err(|e| VaeError::Checkpoint(format!("damaged checkpoint state: {e}")))?;
        if meta.format == CHECKPOINT_FORMAT_V1 {
            return Err(VaeError::Checkpoint(
                "it was written by an earlier emvae whose optimiser state this version cannot read: \
                 start the run again (--force), or finish it with the emvae that began it"
                    .into(),
            ));
        }
        if meta.format != CHECKPOINT_FORMAT {
            return Err(VaeError::Checkpoint(format!(
                "format `{}` is not a VAE checkpoint (`{CHECKPOINT_FORMAT}`)",
                meta.format
            )));
        }
        if meta.model_fingerprint != model_fingerprint(&trainer.config) {
            return Err(VaeError::Checkpoint(
                "it was written by a different model (encoder, decoder, likelihood or prior differ)".into(),
            ));
        }
        let (rows, width) = trainer.train.shape();
        if (meta.data_rows, meta.data_dim) != (rows, width) || meta.seed != seed {
            return Err(VaeError::Checkpoint(format!(
                "it was written for other data or seed ({} x {} rows, seed {}; now {rows} x {width}, seed {seed})",
                meta.data_rows, meta.data_dim, meta.seed
            )));
        }
        check_state(&trainer, &meta.state, meta.local.as_ref())?;
        trainer.model = load_model(trainer.model, parts[1])?;
        trainer.optim = Adam::from_bytes(trainer.config.train(), parts[2], &trainer.model)
            .map_err(|e| VaeError::Checkpoint(format!("optimiser state: {e}")))?;
        trainer.state = meta.state;
        trainer.local = meta.local;
        Ok(trainer)
    }

    /// Everything needed to resume, as one blob (written atomically by the caller).
    pub fn checkpoint_bytes(&self) -> Result<Vec<u8>, VaeError> {
        let (data_rows, data_dim) = self.train.shape();
        let meta = CheckpointMeta {
            format: CHECKPOINT_FORMAT.into(),
            model_fingerprint: model_fingerprint(&self.config),
            data_rows,
            data_dim,
            seed: self.seed,
            state: self.state.clone(),
            local: self.local.clone(),
        };
        let meta = serde_json::to_vec(&meta).map_err(|e| VaeError::Checkpoint(e.to_string()))?;
        let model = self.model_bytes()?;
        let optim = self.optim.to_bytes();
        let mut out = MAGIC.to_vec();
        for part in [&meta[..], &model[..], &optim[..]] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        let sum = fnv1a64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        Ok(out)
    }

    /// The model's parameters as burnpack bytes.
    pub fn model_bytes(&self) -> Result<Vec<u8>, VaeError> {
        model_bytes(self.model.clone())
    }

    pub fn steps_per_epoch(&self) -> u64 {
        self.train.len().div_ceil(self.config.train().batch_size) as u64
    }

    /// Total steps of the run.
    pub fn total_steps(&self) -> u64 {
        let by_epochs = self.steps_per_epoch() * self.config.train().epochs as u64;
        self.config
            .train()
            .max_steps
            .map_or(by_epochs, |m| by_epochs.min(m as u64))
    }

    fn spec(&self) -> ObjectiveSpec {
        let o = self.config.objective();
        ObjectiveSpec {
            kind: o.kind,
            samples: o.samples,
            beta: beta_at(o, self.state.step),
            free_bits: o.free_bits,
            kl: o.kl,
        }
    }

    fn noise(&self, rows: usize, stream: &[u8], index: u64) -> Tensor<2> {
        normal_noise(
            rows,
            self.config.latent_dim(),
            self.seed,
            stream,
            index,
            &self.device,
        )
    }

    fn apply(&mut self, grads: GradientsParams, lr: f64) -> Result<(), VaeError> {
        let mut grads = grads;
        if self.config.train().grad_clip > 0.0 {
            clip_global_norm(&mut grads, &self.model, self.config.train().grad_clip);
        }
        // The model is moved into the update, not cloned: parameters held once are updated in place
        // of their buffers, where a clone would make every one of them a copy.
        let optim = &mut self.optim;
        let mut non_finite = None;
        replace_with(&mut self.model, |model| {
            let (model, bad) = optim.step(lr, model, grads);
            non_finite = bad;
            model
        });
        match non_finite {
            // The parameters are now garbage: stop before anything (a checkpoint) is written from them.
            Some(parameter) => Err(VaeError::Diverged(format!(
                "training diverged at step {} (epoch {}): the gradient of {parameter} is NaN or \
                 infinite; lower train.lr or set train.grad_clip, then continue from the last \
                 checkpoint with --resume",
                self.state.step + 1,
                self.state.epoch + 1
            ))),
            None => Ok(()),
        }
    }

    /// Runs until the configured epochs or steps are done, or `stop_after` more steps have run.
    pub fn run(
        &mut self,
        observer: &mut dyn TrainObserver<M>,
        stop_after: Option<u64>,
    ) -> Result<Outcome, VaeError> {
        let total = self.total_steps();
        let batch = self.config.train().batch_size;
        let mut this_session = 0u64;
        // The epoch's minibatches, drawn once per epoch.
        let mut batches: Option<(u64, Vec<Vec<usize>>)> = None;
        while !self.state.finished && self.state.step < total {
            if stop_after.is_some_and(|s| this_session >= s) {
                return Ok(Outcome::Stopped);
            }
            let epoch = self.state.epoch;
            if batches.as_ref().is_none_or(|(e, _)| *e != epoch) {
                batches = Some((epoch, self.train.epoch_batches(batch, self.seed, epoch)));
            }
            let epoch_batches = &batches.as_ref().expect("drawn above").1;
            let rows = epoch_batches[self.state.batch_in_epoch as usize].clone();
            let lr = self.lr();
            let t0 = Instant::now();
            let (loss, bound, rec, kl) = self.step(&rows, lr)?;
            if !loss.is_finite() {
                // Name the term that went first (the parameters this step started from were finite, or
                // the previous step would have stopped here); the last checkpoint predates this step.
                let term = if !rec.is_finite() {
                    format!("the reconstruction term E_q[log p(x|z)] is {rec}")
                } else if !kl.is_finite() {
                    format!("the KL term is {kl}")
                } else {
                    format!("the loss is {loss}")
                };
                return Err(VaeError::Diverged(format!(
                    "training diverged at step {} (epoch {}): {term}; lower train.lr or set train.grad_clip, \
                     then continue from the last checkpoint with --resume",
                    self.state.step + 1,
                    self.state.epoch + 1
                )));
            }
            let seconds = t0.elapsed().as_secs_f64();
            let s = &mut self.state;
            let w = rows.len() as f64;
            s.sums.loss += loss * w;
            s.sums.bound += bound * w;
            s.sums.reconstruction += rec * w;
            s.sums.kl += kl * w;
            s.sums.rows += rows.len() as u64;
            s.sums.batches += 1;
            s.sums.seconds += seconds;
            let units = self.train.units(&rows) as u64;
            s.sums.units += units;
            s.units += units;
            s.seconds += seconds;
            s.rows += rows.len() as u64;
            s.step += 1;
            s.batch_in_epoch += 1;
            this_session += 1;
            observer.on_step(&self.state);
            let epoch_done = self.state.batch_in_epoch == self.steps_per_epoch();
            if epoch_done || self.state.step == total {
                self.finish_epoch(observer, lr, epoch_done)?;
            }
        }
        self.state.finished = true;
        Ok(Outcome::Finished)
    }

    fn finish_epoch(
        &mut self,
        observer: &mut dyn TrainObserver<M>,
        lr: f64,
        complete: bool,
    ) -> Result<(), VaeError> {
        let epoch = self.state.epoch + 1;
        let last = self.state.step == self.total_steps();
        let eval = if epoch.is_multiple_of(self.config.eval().every as u64) || last {
            Some(self.evaluate(Some(self.config.eval().iw_samples))?)
        } else {
            None
        };
        let best = eval.as_ref().map(|d| self.track_validation(-d.elbo, epoch));
        if last || self.state.finished {
            self.model.finish_training(&self.train, self.seed)?;
        }
        let aggressive =
            (self.config.estep().strategy == Strategy::Aggressive).then_some(self.state.aggressive);
        if self.state.aggressive {
            // He et al. 2019: leave the aggressive phase once I(x; z) stops rising.
            let mi = match &eval {
                Some(d) => d.mutual_information,
                None => self.evaluate(None)?.mutual_information,
            };
            if self.state.last_mi.is_some_and(|prev| mi <= prev) {
                self.state.aggressive = false;
                tracing::info!(
                    "epoch {epoch}: mutual information stopped rising ({mi:.4}); aggressive phase over"
                );
            }
            self.state.last_mi = Some(mi);
        }
        let s = &self.state.sums;
        let rows = s.rows.max(1) as f64;
        let record = EpochRecord {
            epoch,
            step: self.state.step,
            loss: s.loss / rows,
            elbo: s.bound / rows,
            reconstruction: s.reconstruction / rows,
            kl: s.kl / rows,
            beta: beta_at(self.config.objective(), self.state.step.saturating_sub(1)),
            lr,
            seconds: s.seconds,
            examples_per_second: s.rows as f64 / s.seconds.max(1e-12),
            units_per_second: (s.units != s.rows).then(|| s.units as f64 / s.seconds.max(1e-12)),
            aggressive,
            best,
            early_stop: self.state.finished && !last,
            eval,
        };
        if complete {
            self.state.epoch += 1;
            self.state.batch_in_epoch = 0;
        }
        self.state.sums = EpochSums::default();
        if last {
            self.state.finished = true;
        }
        observer.on_epoch(&record, self).map_err(VaeError::Observer)
    }

    /// Records a held-out loss; returns whether it is the best so far. Under the plateau schedule, a
    /// run of `patience` evaluations without improvement decays the learning rate, and the
    /// `max_decays`-th decay ends training (He et al. 2019).
    fn track_validation(&mut self, loss: f64, epoch: u64) -> bool {
        let improved = self.state.best_loss.is_none_or(|b| loss < b);
        if improved {
            self.state.best_loss = Some(loss);
            self.state.bad_evals = 0;
            return true;
        }
        let t = self.config.train().clone();
        if t.lr_schedule == LrSchedule::Plateau {
            self.state.bad_evals += 1;
            if self.state.bad_evals as usize >= t.patience {
                self.state.bad_evals = 0;
                self.state.decays += 1;
                self.state.lr_scale *= t.lr_decay;
                if self.state.decays as usize >= t.max_decays {
                    tracing::info!(
                        "epoch {epoch}: held-out loss stopped improving after {} learning-rate decays; stopping",
                        self.state.decays
                    );
                    self.state.finished = true;
                } else {
                    tracing::info!(
                        "epoch {epoch}: held-out loss {loss:.4} no better than {:.4} for {} evaluations; learning rate x{}",
                        self.state.best_loss.unwrap_or(f64::NAN),
                        t.patience,
                        t.lr_decay
                    );
                }
            }
        }
        false
    }

    /// The learning rate of the current step: the configured schedule times the plateau factor.
    pub fn lr(&self) -> f64 {
        lr_at(self.config.train(), self.state.epoch) * self.state.lr_scale
    }

    /// The data diagnostics are measured on: the held-out rows, else the training rows (binarised once).
    fn eval_data(&self) -> std::borrow::Cow<'_, M::Data> {
        match &self.test {
            Some(test) => std::borrow::Cow::Borrowed(test),
            None => std::borrow::Cow::Owned(self.train.for_evaluation()),
        }
    }

    /// Diagnostics on the held-out data (or the training data), with IW-NLL at `iw_samples`.
    pub fn evaluate(&self, iw_samples: Option<usize>) -> Result<Diagnostics, VaeError> {
        let data = self.eval_data();
        let source = self.posterior_source(&data);
        let plain = self.device.clone().without_autodiff();
        let model = self.model.valid();
        Ok(diagnose(
            &model,
            &data,
            &source,
            &plain,
            DiagnoseOptions {
                elbo_samples: 1,
                iw_samples,
                seed: self.seed,
                ..Default::default()
            },
        ))
    }

    /// How posteriors of `data` are obtained: the encoder, or (non-amortized) per-point optimisation.
    pub fn posterior_source(&self, data: &M::Data) -> PosteriorSource {
        match self.config.estep().strategy {
            Strategy::NonAmortized => {
                held_out_posteriors(&self.model, &self.config, data, self.seed, &self.device)
            }
            _ => PosteriorSource::Encoder,
        }
    }

    /// Final diagnostics: IW-NLL with `final_iw_samples`, and the amortization gap when asked for.
    pub fn final_diagnostics(&self) -> Result<(Diagnostics, Option<(f64, f64)>), VaeError> {
        let d = self.evaluate(Some(self.config.eval().final_iw_samples))?;
        let gap = if self.config.eval().amortization_gap
            && self.config.estep().strategy != Strategy::NonAmortized
        {
            let data = self.eval_data();
            Some(amortization_gap(
                &self.model,
                &data,
                self.config.eval().gap_steps,
                self.config.eval().gap_lr,
                self.config.objective().samples.max(10),
                self.seed,
                &self.device,
            ))
        } else {
            None
        };
        Ok((d, gap))
    }

    /// One optimisation step on `rows`.
    fn step(&mut self, rows: &[usize], lr: f64) -> Result<StepMetrics, VaeError> {
        let b = rows.len();
        let spec = self.spec();
        let step = self.state.step;
        let strategy =
            if self.config.estep().strategy == Strategy::Aggressive && !self.state.aggressive {
                Strategy::Amortized
            } else {
                self.config.estep().strategy
            };
        match strategy {
            Strategy::Amortized | Strategy::Aggressive => {
                let aggressive = strategy == Strategy::Aggressive;
                if aggressive {
                    self.aggressive_encoder_updates(lr, &spec)?;
                }
                // After the aggressive inner loop, one decoder step with the (fixed) encoder's posterior.
                let (metrics, grads) = self.sharded_gradients(rows, &spec, aggressive);
                // A non-finite loss is reported by the loop with the term that went first.
                if metrics.0.is_finite() {
                    self.apply(grads, lr)?;
                }
                Ok(metrics)
            }
            Strategy::NonAmortized => {
                let x = self.train.batch(rows, self.state.epoch, &self.device);
                let local = self
                    .local
                    .as_ref()
                    .expect("non-amortized runs hold local posteriors");
                let init = local.gather(rows, &self.device);
                let mean = init.mean.require_grad();
                let log_var = init.log_var.require_grad();
                let q = Posterior {
                    mean: mean.clone(),
                    log_var: log_var.clone(),
                };
                let eps = self.noise(spec.samples * b, b"noise", step);
                let terms = batch_terms(&self.model, &q, &x, eps, &spec);
                let metrics = metrics_of(&terms);
                let grads = terms.loss.backward();
                let gm = mean.grad(&grads).map(tensor_to_vec).unwrap_or_default();
                let gl = log_var.grad(&grads).map(tensor_to_vec).unwrap_or_default();
                let model_grads = GradientsParams::from_grads(grads, &self.model);
                self.apply(model_grads, lr)?;
                let post_lr = self.config.estep().posterior_lr;
                if let Some(local) = self.local.as_mut()
                    && !gm.is_empty()
                {
                    local.update(rows, &gm, &gl, post_lr);
                }
                Ok(metrics)
            }
            Strategy::SemiAmortized => {
                let x = self.train.batch(rows, self.state.epoch, &self.device);
                let q0 = self.model.posterior(&x);
                let e = self.config.estep();
                let refinement = Refinement {
                    steps: e.refine_steps,
                    rule: Rule::Sgd { lr: e.refine_lr },
                    samples: spec.samples,
                    seed: derive_seed(self.seed, b"refine", step),
                    stream: b"refine",
                };
                let refined = optimise_posteriors(&self.model, &x, q0.clone().detach(), refinement);
                // The decoder learns at the refined posterior ...
                let eps = self.noise(spec.samples * b, b"noise", step);
                let terms = batch_terms(&self.model, &refined, &x, eps, &spec);
                let metrics = metrics_of(&terms);
                let decoder_grads = GradientsParams::from_grads(terms.loss.backward(), &self.model);
                // ... the encoder on its own ELBO (decoder gradients of this term dropped).
                let eps = self.noise(spec.samples * b, b"noise-encoder", step);
                let enc_terms = batch_terms(&self.model, &q0, &x, eps, &spec);
                let encoder_grads = self.model.guide_gradients(enc_terms.loss.backward());
                self.apply(decoder_grads, lr)?;
                self.apply(encoder_grads, lr)?;
                Ok(metrics)
            }
            Strategy::MonteCarloEm => {
                let x = self.train.batch(rows, self.state.epoch, &self.device);
                self.monte_carlo_em_step(x, lr, &spec)
            }
        }
    }

    /// The objective's metrics and parameter gradients on the minibatch `rows`, in `train.shards`
    /// data-parallel shards ([`crate::shard`]). Noise: one block for an unsharded step (as before
    /// shards existed, so such runs continue bit for bit), one stream per shard otherwise.
    fn sharded_gradients(
        &self,
        rows: &[usize],
        spec: &ObjectiveSpec,
        detach_guide: bool,
    ) -> (StepMetrics, GradientsParams) {
        let step = self.state.step;
        let shards = self.shards;
        let noise = |shard: usize, len: usize| {
            if shards == 1 {
                self.noise(spec.samples * len, b"noise", step)
            } else {
                let stream = format!("noise-shard-{shard}");
                self.noise(spec.samples * len, stream.as_bytes(), step)
            }
        };
        let sharded = ShardedStep {
            model: &self.model,
            data: &self.train,
            epoch: self.state.epoch,
            device: &self.device,
            spec,
            detach_guide,
        };
        sharded.gradients(rows, shards, &noise)
    }

    /// He et al. 2019's inner loop: encoder-only steps on fresh random minibatches until the mean loss
    /// of the last `inner_window` steps is no better than the window before (or `inner_max_steps`).
    fn aggressive_encoder_updates(
        &mut self,
        lr: f64,
        spec: &ObjectiveSpec,
    ) -> Result<(), VaeError> {
        let e = self.config.estep().clone();
        let b = self.config.train().batch_size.min(self.train.len());
        let step = self.state.step;
        let mut rng = rng_for(self.seed, b"aggressive-batches", step);
        let (mut window, mut previous) = (0.0, f64::INFINITY);
        for i in 0..e.inner_max_steps {
            let rows: Vec<usize> = (0..b)
                .map(|_| rng.random_range(0..self.train.len()))
                .collect();
            let x = self.train.batch(&rows, self.state.epoch, &self.device);
            let q = self.model.posterior(&x);
            let eps = self.noise(
                spec.samples * b,
                b"aggressive-noise",
                derive_seed(step, b"inner", i as u64),
            );
            let terms = batch_terms(&self.model, &q, &x, eps, spec);
            window += mean_of(&terms.loss);
            let grads = self.model.guide_gradients(terms.loss.backward());
            self.apply(grads, lr)?;
            if (i + 1) % e.inner_window == 0 {
                if window >= previous {
                    break;
                }
                previous = window;
                window = 0.0;
            }
        }
        Ok(())
    }

    /// Monte Carlo EM: self-normalised importance weights `w_k ∝ p(x, z_k) / r(z_k)` over `K` draws
    /// from the proposal `r` (the encoder, or the prior) form the E-step; the M-step maximises
    /// `sum_k w_k log p(x, z_k)` over the decoder and prior. The encoder is trained on its own ELBO
    /// (decoder gradients of that term dropped) either way: as the proposal it improves the E-step, and
    /// it gives posteriors for evaluation and encoding.
    fn monte_carlo_em_step(
        &mut self,
        x: M::Batch,
        lr: f64,
        spec: &ObjectiveSpec,
    ) -> Result<StepMetrics, VaeError> {
        let k = self.config.estep().mc_samples;
        let step = self.state.step;
        let q = self.model.posterior(&x);
        let b = q.mean.dims()[0];
        let (z, log_r) = match self.config.estep().proposal {
            Proposal::Encoder => {
                let fixed = q.clone().detach();
                let eps = self.noise(k * b, b"mcem", step);
                (
                    fixed.sample(eps.clone(), k),
                    fixed.log_prob_of_noise(eps, k),
                )
            }
            Proposal::Prior => {
                let z = sample_prior(
                    self.model.prior(),
                    k * b,
                    derive_seed(self.seed, b"mcem-prior", step),
                    &self.device,
                );
                let log_r = self.model.prior().log_prob(z.clone()).detach();
                (z, log_r)
            }
        };
        let log_lik = self.model.log_likelihood(&x, z.clone(), k);
        let log_joint = log_lik.clone() + self.model.prior().log_prob(z);
        let log_w = (log_joint.clone().detach() - log_r).reshape([k, b]);
        let weights = burn::tensor::activation::softmax(log_w.clone(), 0);
        let loss = (weights * log_joint.reshape([k, b]))
            .sum_dim(0)
            .mean()
            .neg();
        let bound = emvae_core::tensor::log_sum_exp(log_w, 0).sub_scalar((k as f64).ln());
        let rec = log_lik.reshape([k, b]).mean_dim(0);
        let mut metrics = (
            mean_of(&loss),
            tensor_to_vec(bound.mean())[0],
            tensor_to_vec(rec.mean())[0],
            0.0,
        );
        let model_grads = GradientsParams::from_grads(loss.backward(), &self.model);
        let eps = self.noise(spec.samples * b, b"noise-encoder", step);
        let elbo = ObjectiveSpec {
            kind: ObjectiveKind::Elbo,
            ..*spec
        };
        let terms = batch_terms(&self.model, &q, &x, eps, &elbo);
        metrics.3 = mean_of(&terms.kl);
        let encoder_grads = self.model.guide_gradients(terms.loss.backward());
        self.apply(model_grads, lr)?;
        self.apply(encoder_grads, lr)?;
        Ok(metrics)
    }
}

/// Checks that the loop can continue from a checkpoint's `state` and `local` posteriors: a minibatch
/// within the epoch, and local posteriors of every training row exactly when the run is non-amortized.
fn check_state<M: AmortizedModel>(
    trainer: &AmortizedTrainer<M>,
    state: &TrainState,
    local: Option<&LocalPosteriors>,
) -> Result<(), VaeError> {
    let bad = |m: String| {
        Err(VaeError::Checkpoint(format!(
            "damaged checkpoint state: {m}"
        )))
    };
    let per_epoch = trainer.steps_per_epoch();
    if state.batch_in_epoch >= per_epoch {
        return bad(format!(
            "it is at minibatch {} of an epoch of {per_epoch}",
            state.batch_in_epoch
        ));
    }
    let (rows, latent) = (trainer.train.len(), trainer.config.latent_dim());
    match (
        trainer.config.estep().strategy == Strategy::NonAmortized,
        local,
    ) {
        (true, None) => bad("a non-amortized run's checkpoint without its local posteriors".into()),
        (false, Some(_)) => bad("local posteriors in the checkpoint of an amortized run".into()),
        (true, Some(l)) if !l.fits(rows, latent) => bad(format!(
            "local posteriors of {} rows in {} dimensions do not fit {rows} rows in {latent}",
            l.t.len(),
            l.latent
        )),
        _ => Ok(()),
    }
}

/// The three parts (state, model, optimiser) of a checkpoint, after checking its magic number, its
/// layout and its checksum.
fn split_checkpoint(bytes: &[u8]) -> Result<Vec<&[u8]>, VaeError> {
    if bytes.starts_with(MAGIC_V1) {
        return Err(VaeError::Checkpoint(
            "it was written by an earlier emvae whose optimiser state this version cannot read: \
             start the run again (--force), or finish it with the emvae that began it"
                .into(),
        ));
    }
    let bad = |what: &str| VaeError::Checkpoint(format!("not a readable emvae checkpoint: {what}"));
    if !bytes.starts_with(&MAGIC[..]) {
        return Err(bad(
            "bad magic number (not a checkpoint, or another program's file)",
        ));
    }
    let Some(body_len) = bytes.len().checked_sub(8) else {
        return Err(bad("truncated"));
    };
    let (body, sum) = bytes.split_at(body_len);
    let mut rest = &body[MAGIC.len().min(body.len())..];
    let mut parts = Vec::new();
    for _ in 0..3 {
        if rest.len() < 8 {
            return Err(bad("truncated"));
        }
        let len = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")) as usize;
        rest = &rest[8..];
        if rest.len() < len {
            return Err(bad("truncated"));
        }
        parts.push(&rest[..len]);
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        return Err(bad("unexpected bytes after its parts"));
    }
    if fnv1a64(body) != u64::from_le_bytes(sum.try_into().expect("8 bytes")) {
        return Err(bad("checksum mismatch (the file was edited or damaged)"));
    }
    Ok(parts)
}

/// Loads burnpack `bytes` into `model`, rejecting a record of another architecture.
/// A model's parameters as burnpack bytes (what [`load_model`] reads).
pub fn model_bytes<M: Module>(model: M) -> Result<Vec<u8>, VaeError> {
    Ok(model
        .into_record()
        .into_bytes()
        .map_err(|e| VaeError::Checkpoint(format!("model: {e}")))?
        .to_vec())
}

pub fn load_model<M: Module>(model: M, bytes: &[u8]) -> Result<M, VaeError> {
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| VaeError::Checkpoint(format!("damaged model record: {e}")))?;
    model.try_load_record(record).map_err(|e| {
        VaeError::Checkpoint(format!("the saved parameters do not fit this model: {e}"))
    })
}

/// Collects every float parameter's values, in visiting order.
struct ParamValues(Vec<Vec<f64>>);

impl ModuleVisitor for ParamValues {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(tensor_to_vec(param.val()));
    }
}

/// The values of a module's float parameters (what two models must share to be the same model; their
/// parameter ids, which burnpack files also record, are drawn per process).
pub fn parameter_values<M: Module>(module: &M) -> Vec<Vec<f64>> {
    let mut values = ParamValues(Vec::new());
    module.visit(&mut values);
    values.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VaeConfig;
    use crate::data::{Binarization, VaeData};
    use emvae_core::data::Matrix;
    use serde_json::Value;

    fn trainer(strategy: &str) -> Trainer {
        let text = format!(
            "[encoder]\nsizes = [4, 8, 2]\n[decoder]\nsizes = [2, 8, 4]\n[likelihood]\nkind = \"bernoulli\"\n\
             [train]\nbatch_size = 4\nepochs = 3\n[estep]\nstrategy = \"{strategy}\"\n"
        );
        let config: VaeConfig = toml::from_str(&text).unwrap();
        let values = (0..48).map(|i| f64::from(i % 3 == 0)).collect();
        let data = VaeData::new(&Matrix::new(12, 4, values), Binarization::None);
        Trainer::new(config, 0, Device::flex().autodiff(), data, None).unwrap()
    }

    /// The checkpoint of `t` with its state edited by `edit`, under a checksum that matches.
    fn edited(t: &Trainer, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let bytes = t.checkpoint_bytes().unwrap();
        let parts = split_checkpoint(&bytes).unwrap();
        let mut meta: Value = serde_json::from_slice(parts[0]).unwrap();
        edit(&mut meta);
        let meta = serde_json::to_vec(&meta).unwrap();
        let mut out = MAGIC.to_vec();
        for part in [&meta[..], parts[1], parts[2]] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        let sum = fnv1a64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    fn resume(t: &Trainer, bytes: &[u8]) -> Result<Trainer, VaeError> {
        Trainer::resume(
            t.config.clone(),
            t.seed,
            t.device.clone(),
            t.train.clone(),
            None,
            bytes,
        )
    }

    fn refused(t: &Trainer, bytes: &[u8], needle: &str) {
        match resume(t, bytes) {
            Err(VaeError::Checkpoint(m)) => assert!(m.contains(needle), "{m} lacks {needle}"),
            Err(e) => panic!("{needle}: another error: {e}"),
            Ok(_) => panic!("{needle}: resumed"),
        }
    }

    /// `emvae bench fuzz` found checkpoints that resumed and then panicked at the first step: a
    /// minibatch past the epoch's last, a non-amortized run without its local posteriors or with too
    /// few of them.
    #[test]
    fn a_state_the_loop_cannot_continue_from_is_refused() {
        let mut t = trainer("non_amortized");
        t.run(&mut (), Some(2)).unwrap();
        let mut resumed = resume(&t, &edited(&t, |_| {})).unwrap();
        resumed.run(&mut (), Some(1)).unwrap();
        refused(
            &t,
            &edited(&t, |m| m["state"]["batch_in_epoch"] = 3.into()),
            "minibatch 3 of an epoch of 3",
        );
        refused(
            &t,
            &edited(&t, |m| m["local"] = Value::Null),
            "without its local posteriors",
        );
        refused(
            &t,
            &edited(&t, |m| {
                m["local"]["t"].as_array_mut().unwrap().pop();
            }),
            "local posteriors of 11 rows",
        );
        refused(
            &t,
            &edited(&t, |m| m["local"]["latent"] = 3.into()),
            "in 3 dimensions",
        );
        let amortized = trainer("amortized");
        let local = serde_json::to_value(&t.local).unwrap();
        refused(
            &amortized,
            &edited(&amortized, |m| m["local"] = local),
            "local posteriors in the checkpoint of an amortized run",
        );
    }
}

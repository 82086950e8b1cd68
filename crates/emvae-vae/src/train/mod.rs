//! The training loop: minibatch EM with the configured E-step strategy, KL and learning-rate schedules,
//! per-epoch diagnostics, and checkpoints from which a run resumes bit for bit.
//!
//! Reproducibility: weights are initialised and all noise is drawn on the host from streams derived
//! from the seed and the step number (never from the backend's global generator), and each epoch's
//! visiting order is derived from the seed and the epoch. So a checkpoint needs only the model, the
//! optimiser's moments and the loop's counters to continue exactly as an uninterrupted run.

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::adam::Adam;
use crate::amortized::{AmortizedModel, ModelConfig, TrainData};
use crate::config::{LrSchedule, Strategy};
use crate::data::normal_noise;
use crate::diagnostics::{DiagnoseOptions, Diagnostics, EVAL_VALUES, amortization_gap, diagnose};
use crate::error::VaeError;
use crate::inference::{PosteriorSource, held_out_posteriors};
use crate::objective::ObjectiveSpec;
use crate::schedule::{beta_at, lr_at};
use crate::vae::Vae;

/// The trainer of the MLP VAE ([`Vae`]).
pub type Trainer = AmortizedTrainer<Vae>;

mod checkpoint;
mod clip;
mod estep;
mod local;

pub use checkpoint::{
    CHECKPOINT_FORMAT, gradient_values, load_model, model_bytes, model_fingerprint,
    parameter_values,
};
pub use local::LocalPosteriors;

use clip::clip_global_norm;

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
    /// Values one decoder evaluation of the diagnostics may hold
    /// ([`DiagnoseOptions::values_per_evaluation`]; [`EVAL_VALUES`] unless the caller, which knows the
    /// device, sets another).
    pub eval_values: usize,
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
            eval_values: EVAL_VALUES,
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
                values_per_evaluation: self.eval_values,
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
                self.eval_values,
                &self.device,
            ))
        } else {
            None
        };
        Ok((d, gap))
    }
}

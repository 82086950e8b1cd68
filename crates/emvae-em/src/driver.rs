//! One EM driver for every exact model, as scikit-learn's `BaseMixture.fit` is one loop for its
//! subclasses.
//!
//! A model plugs in with an E-step (the exact posterior, or the expected sufficient statistics it
//! implies, and the average log-likelihood of the parameters that entered it), an M-step, an
//! initialisation per restart and a checkpoint form of its parameters. The driver owns everything
//! else: restarts (`n_init`, the best final log-likelihood wins), convergence (the change of the average
//! log-likelihood below `tol`), the observer that sees every iteration, resumable checkpoints, and
//! SQUAREM acceleration for models whose parameters are a vector.
//!
//! One iteration is scikit-learn's: an E-step with the current parameters, whose average
//! log-likelihood is recorded (the log-likelihood of the parameters entering it), then an M-step. EM
//! never decreases it; SQUAREM keeps that guarantee with its safeguard (see [`Acceleration`]).

use std::fmt::Debug;
use std::time::Instant;

use emvae_core::config::InvalidParam;
use emvae_core::data::Dataset;
use emvae_core::hash::Fnv64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::EmError;

/// A model fitted by exact EM on data it holds.
pub trait EmModel {
    /// The parameters EM iterates on.
    type Params: Clone;
    /// Their checkpoint form; floats round-trip exactly through JSON.
    type Saved: Clone + Debug + PartialEq + Serialize + DeserializeOwned;
    /// What the E-step hands the M-step: the posterior or its expected sufficient statistics.
    type Posterior;
    /// Format tag of this model's checkpoints.
    const CHECKPOINT_FORMAT: &'static str;

    /// Initial parameters of restart `restart` (0-based); random draws derive from the seed and it.
    fn initialize(&self, restart: usize) -> Result<Self::Params, EmError>;

    /// The E-step: the average log-likelihood `1/n sum_i log p(x_i | params)` (labelled rows: of
    /// `(x_i, z_i)`) and the exact posterior under `params`.
    fn e_step(&self, params: &Self::Params) -> Result<(f64, Self::Posterior), EmError>;

    /// The M-step: the parameters maximising the expected complete-data log-likelihood.
    fn m_step(&self, posterior: Self::Posterior) -> Result<Self::Params, EmError>;

    fn save(&self, params: &Self::Params) -> Self::Saved;

    /// Parameters from a checkpoint, checked against this fit (shape, validity). `after_m_step` is
    /// false for a restart's initial parameters, which may be looser (weights not yet normalised).
    /// The error completes "its parameters ...".
    fn load(&self, saved: &Self::Saved, after_m_step: bool) -> Result<Self::Params, String>;

    /// The parameters as a point of a vector space where extrapolation makes sense, for SQUAREM;
    /// `None` (the default) when the model does not support acceleration.
    fn to_vector(&self, _params: &Self::Params) -> Option<Vec<f64>> {
        None
    }

    /// Parameters from such a point; `None` when it lies outside the parameter space (a negative
    /// variance), which makes SQUAREM step back towards plain EM.
    #[allow(clippy::wrong_self_convention)] // the model knows the parameters' shapes
    fn from_vector(&self, _v: &[f64]) -> Option<Self::Params> {
        None
    }
}

/// How iterations map parameters to parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Acceleration {
    /// Plain EM: one E-step and one M-step per iteration.
    #[default]
    None,
    /// SQUAREM (Varadhan and Roland 2008, scheme S3): from `t0`, two EM steps give `t1`, `t2`;
    /// `r = t1 - t0`, `v = t2 - 2 t1 + t0`, `alpha = -|r| / |v|` (at most -1) and the extrapolated
    /// `t' = t0 - 2 alpha r + alpha^2 v`, followed by one EM step from `t'`. Safeguard: `t'` is accepted
    /// only if it is a valid point whose log-likelihood is at least that of `t1`; otherwise `alpha`
    /// moves halfway to -1, where `t' = t2`, a plain EM point. So the recorded log-likelihood never
    /// decreases, as with plain EM.
    Squarem,
}

/// The loop's settings, shared by every exact model's hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct EmSettings {
    pub max_iter: usize,
    pub tol: f64,
    pub n_init: usize,
    pub acceleration: Acceleration,
}

/// One EM iteration: a line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationRecord {
    /// 0-based initialisation (of `n_init`).
    pub restart: usize,
    /// 1-based iteration within the restart.
    pub iteration: usize,
    /// Average log-likelihood of the parameters entering this iteration's E-step.
    pub log_likelihood: f64,
    /// Change from the previous iteration (`null` on the first, where it is infinite).
    pub change: Option<f64>,
    /// Wall-clock seconds of this iteration.
    pub seconds: f64,
    /// E-steps this iteration ran, when more than one (SQUAREM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_steps: Option<usize>,
}

/// Sees every iteration; may persist the checkpoint. Returning an error stops the fit.
pub trait EmObserver<S> {
    fn on_iteration(
        &mut self,
        record: &IterationRecord,
        checkpoint: &EmCheckpoint<S>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// Observes nothing.
impl<S> EmObserver<S> for () {
    fn on_iteration(
        &mut self,
        _: &IterationRecord,
        _: &EmCheckpoint<S>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

/// The best finished restart so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestFit<S> {
    pub restart: usize,
    pub parameters: S,
    pub lower_bounds: Vec<f64>,
    pub converged: bool,
}

/// Everything needed to continue a fit exactly where it stopped: the parameters after the last M-step
/// (exact: JSON floats round-trip), the trajectory, and the best finished restart. Random draws come
/// from streams derived from the seed and the restart index, so nothing else is needed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmCheckpoint<S> {
    pub format: String,
    /// Identifies the data the fit runs on.
    pub data_fingerprint: String,
    /// Identifies the hyper-parameters, seed and precision.
    pub params_fingerprint: String,
    pub restart: usize,
    /// Iterations done in this restart.
    pub iteration: usize,
    /// Iterations done over all restarts (the number of metrics records this checkpoint covers).
    pub total_iterations: usize,
    /// E-steps done over all restarts (more than the iterations with SQUAREM).
    #[serde(default)]
    pub e_steps: usize,
    pub lower_bounds: Vec<f64>,
    pub converged: bool,
    pub parameters: S,
    pub best: Option<BestFit<S>>,
    /// Seconds spent in EM iterations so far.
    pub seconds: f64,
}

/// The outcome of [`fit`]: the best restart.
#[derive(Debug, Clone, PartialEq)]
pub struct EmFit<P> {
    pub params: P,
    /// Whether the best restart converged (its last change was below `tol`).
    pub converged: bool,
    /// The best restart's average log-likelihoods, one per iteration.
    pub lower_bounds: Vec<f64>,
    /// Which restart was best (0-based).
    pub best_restart: usize,
    /// E-steps over all restarts.
    pub e_steps: usize,
}

impl<P> EmFit<P> {
    /// Iterations of the best restart.
    pub fn n_iter(&self) -> usize {
        self.lower_bounds.len()
    }

    /// Average log-likelihood entering the best restart's last E-step.
    pub fn lower_bound(&self) -> f64 {
        self.lower_bounds
            .last()
            .copied()
            .unwrap_or(f64::NEG_INFINITY)
    }
}

/// 64-bit FNV-1a of `bytes`, as hex: a fingerprint, not a cryptographic hash.
pub fn fingerprint(bytes: impl IntoIterator<Item = u8>) -> String {
    let mut h = Fnv64::default();
    for b in bytes {
        h.write(&[b]);
    }
    format!("{:016x}", h.finish())
}

/// Fingerprint of a data set: its shape, values and labels.
///
/// FNV-1a over 64-bit words rather than bytes (with a rotation so high bits mix down): one multiply
/// per value, so fingerprinting is a few milliseconds even where a fit's statistics take tens (pPCA
/// on 100,000 x 50 rows). Every step is a bijection of the state, so any single changed value changes
/// the fingerprint.
pub fn data_fingerprint(data: &Dataset) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |w: u64| h = (h ^ w).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
    eat(data.x.n_rows as u64);
    eat(data.x.n_cols as u64);
    data.x.values.iter().for_each(|v| eat(v.to_bits()));
    for l in data.labels.iter().flatten() {
        eat(l.map_or(u64::MAX, |v| v as u64));
    }
    format!("{h:016x}")
}

/// Fingerprint of hyper-parameters (as JSON) with the seed and precision they run with.
pub fn params_fingerprint<T: Serialize>(
    params: &T,
    seed: u64,
    precision: impl std::fmt::Display,
) -> String {
    let text = format!(
        "{}|seed={seed}|{precision}",
        serde_json::to_string(params).unwrap_or_default()
    );
    fingerprint(text.into_bytes())
}

/// Fits `model` by EM: `n_init` restarts of at most `max_iter` iterations each, showing every iteration
/// to `observer`, continuing from `resume` when given (its fingerprints must be `fingerprints`, as
/// `(data, params)`).
pub fn fit<M: EmModel>(
    model: &M,
    settings: &EmSettings,
    fingerprints: (String, String),
    observer: &mut dyn EmObserver<M::Saved>,
    resume: Option<EmCheckpoint<M::Saved>>,
) -> Result<EmFit<M::Params>, EmError> {
    let (data_fp, params_fp) = fingerprints;
    let mut state = match resume {
        Some(c) => {
            check_checkpoint::<M>(&c, &data_fp, &params_fp, settings.n_init)?;
            c
        }
        None => EmCheckpoint {
            format: M::CHECKPOINT_FORMAT.into(),
            data_fingerprint: data_fp,
            params_fingerprint: params_fp,
            restart: 0,
            iteration: 0,
            total_iterations: 0,
            e_steps: 0,
            lower_bounds: Vec::new(),
            converged: false,
            parameters: model.save(&model.initialize(0)?),
            best: None,
            seconds: 0.0,
        },
    };
    let loaded = |saved: &M::Saved, key: &str, after_m_step: bool| {
        model
            .load(saved, after_m_step)
            .map_err(|m| EmError::Checkpoint(format!("its {key} {m}")))
    };
    if let Some(best) = &state.best {
        loaded(&best.parameters, "best.parameters", true)?;
    }
    // Before a restart's first M-step (iteration 0) the parameters may be looser.
    let mut current = loaded(&state.parameters, "parameters", state.iteration > 0)?;

    loop {
        while !state.converged && state.iteration < settings.max_iter {
            let start = Instant::now();
            let step = match settings.acceleration {
                Acceleration::None => em_step(model, &current)?,
                Acceleration::Squarem => squarem_step(model, &current)?,
            };
            current = step.next;
            let previous = state.lower_bounds.last().copied();
            let change = previous.map(|prev| step.log_likelihood - prev);
            state.lower_bounds.push(step.log_likelihood);
            state.iteration += 1;
            state.total_iterations += 1;
            state.e_steps += step.e_steps;
            state.converged = change.is_some_and(|c| c.abs() < settings.tol);
            let seconds = start.elapsed().as_secs_f64();
            state.seconds += seconds;
            state.parameters = model.save(&current);
            let record = IterationRecord {
                restart: state.restart,
                iteration: state.iteration,
                log_likelihood: step.log_likelihood,
                change,
                seconds,
                e_steps: (step.e_steps > 1).then_some(step.e_steps),
            };
            tracing::debug!(
                restart = state.restart,
                iteration = state.iteration,
                log_likelihood = step.log_likelihood,
                change = change.unwrap_or(f64::INFINITY),
                "EM iteration"
            );
            observer
                .on_iteration(&record, &state)
                .map_err(EmError::Observer)?;
        }
        let final_lb = state
            .lower_bounds
            .last()
            .copied()
            .unwrap_or(f64::NEG_INFINITY);
        let better = state
            .best
            .as_ref()
            .is_none_or(|b| final_lb > b.lower_bounds.last().copied().unwrap_or(f64::NEG_INFINITY));
        if better {
            state.best = Some(BestFit {
                restart: state.restart,
                parameters: state.parameters.clone(),
                lower_bounds: state.lower_bounds.clone(),
                converged: state.converged,
            });
        }
        tracing::debug!(
            "initialisation {} finished after {} iterations (converged: {}), log-likelihood {final_lb:.8}",
            state.restart,
            state.iteration,
            state.converged
        );
        if state.restart + 1 >= settings.n_init {
            break;
        }
        state.restart += 1;
        state.iteration = 0;
        state.lower_bounds.clear();
        state.converged = false;
        current = model.initialize(state.restart)?;
        state.parameters = model.save(&current);
    }
    let best = state
        .best
        .ok_or_else(|| EmError::Checkpoint("no restart finished".into()))?;
    Ok(EmFit {
        params: loaded(&best.parameters, "best.parameters", true)?,
        converged: best.converged,
        lower_bounds: best.lower_bounds,
        best_restart: best.restart,
        e_steps: state.e_steps,
    })
}

/// Checks what a checkpoint must agree on before its parameters are looked at.
fn check_checkpoint<M: EmModel>(
    c: &EmCheckpoint<M::Saved>,
    data_fp: &str,
    params_fp: &str,
    n_init: usize,
) -> Result<(), EmError> {
    if c.format != M::CHECKPOINT_FORMAT {
        return Err(EmError::Checkpoint(format!(
            "format `{}` is not a `{}` checkpoint",
            c.format,
            M::CHECKPOINT_FORMAT
        )));
    }
    if c.data_fingerprint != data_fp {
        return Err(EmError::Checkpoint(
            "it was written for other data (shape, values or labels differ)".into(),
        ));
    }
    if c.params_fingerprint != params_fp {
        return Err(EmError::Checkpoint(
            "it was written with other hyper-parameters, seed or precision".into(),
        ));
    }
    if c.restart >= n_init {
        return Err(EmError::Checkpoint(format!(
            "it is at initialisation {} of n_init = {n_init}",
            c.restart
        )));
    }
    Ok(())
}

/// One driver iteration's result.
struct Step<P> {
    /// Log-likelihood of the parameters entering the iteration.
    log_likelihood: f64,
    next: P,
    e_steps: usize,
}

fn em_step<M: EmModel>(model: &M, params: &M::Params) -> Result<Step<M::Params>, EmError> {
    let (log_likelihood, posterior) = model.e_step(params)?;
    Ok(Step {
        log_likelihood,
        next: model.m_step(posterior)?,
        e_steps: 1,
    })
}

/// Extrapolations SQUAREM tries before it falls back to the plain EM point `t2`.
const MAX_BACKTRACKS: usize = 4;

/// One SQUAREM cycle from `t0` (see [`Acceleration::Squarem`]).
fn squarem_step<M: EmModel>(model: &M, t0: &M::Params) -> Result<Step<M::Params>, EmError> {
    let (l0, post0) = model.e_step(t0)?;
    let p1 = model.m_step(post0)?;
    let (l1, post1) = model.e_step(&p1)?;
    let p2 = model.m_step(post1)?;
    let mut e_steps = 2;
    let vectors = (
        model.to_vector(t0),
        model.to_vector(&p1),
        model.to_vector(&p2),
    );
    let (Some(v0), Some(v1), Some(v2)) = vectors else {
        return Err(EmError::InvalidParam(InvalidParam::new(
            "acceleration",
            "\"squarem\" is not available for this model; use \"none\"",
        )));
    };
    let r: Vec<f64> = v1.iter().zip(&v0).map(|(a, b)| a - b).collect();
    let v: Vec<f64> = (0..v0.len()).map(|i| v2[i] - 2.0 * v1[i] + v0[i]).collect();
    let norm = |x: &[f64]| x.iter().map(|a| a * a).sum::<f64>().sqrt();
    let (nr, nv) = (norm(&r), norm(&v));
    let mut alpha = if nv > 0.0 && nr.is_finite() && nv.is_finite() {
        (-nr / nv).min(-1.0)
    } else {
        -1.0
    };
    // Each failed try halves the way to -1 (towards t2); after a few, plain EM is as good.
    for _ in 0..MAX_BACKTRACKS {
        if alpha >= -1.0 {
            break;
        }
        let point: Vec<f64> = (0..v0.len())
            .map(|i| v0[i] - 2.0 * alpha * r[i] + alpha * alpha * v[i])
            .collect();
        if let Some(candidate) = model.from_vector(&point) {
            let (lc, postc) = model.e_step(&candidate)?;
            e_steps += 1;
            if lc.is_finite() && lc >= l1 {
                return Ok(Step {
                    log_likelihood: l0,
                    next: model.m_step(postc)?,
                    e_steps,
                });
            }
        }
        alpha = (alpha - 1.0) / 2.0;
    }
    // alpha = -1: t' = t2, a plain EM point; one more EM step from it keeps three steps per cycle.
    let (_, post2) = model.e_step(&p2)?;
    e_steps += 1;
    Ok(Step {
        log_likelihood: l0,
        next: model.m_step(post2)?,
        e_steps,
    })
}

//! The EM loop: restarts, convergence, observation and resumable checkpoints.
//!
//! One iteration is exactly scikit-learn's: an E-step with the current parameters, whose average
//! log-likelihood is recorded (the "lower bound" of the parameters entering it), then an M-step. A restart
//! stops when the log-likelihood changes by less than `tol`, or after `max_iter` iterations; the restart
//! with the highest final log-likelihood wins.

use std::time::Instant;

use emvae_core::config::InvalidParam;
use emvae_core::data::Dataset;
use emvae_core::rng::rng_for;
use emvae_core::tensor::{Compute, Precision};
use serde::{Deserialize, Serialize};

use super::init::initial_responsibilities;
use super::model::GaussianMixture;
use super::parameters::{
    GmmParameters, GmmParametersJson, covariances_from_precisions,
    precisions_cholesky_from_covariances, precisions_cholesky_from_precisions,
};
use super::params::{GmmValidParams, InitKind};
use super::workspace::Workspace;
use crate::EmError;

/// Format tag of [`GmmCheckpoint`].
pub const CHECKPOINT_FORMAT: &str = "emvae.gmm.checkpoint.v1";

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
}

/// Sees every iteration; may persist the checkpoint. Returning an error stops the fit.
pub trait EmObserver {
    fn on_iteration(
        &mut self,
        record: &IterationRecord,
        checkpoint: &GmmCheckpoint,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// Observes nothing.
impl EmObserver for () {
    fn on_iteration(
        &mut self,
        _: &IterationRecord,
        _: &GmmCheckpoint,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

/// The best finished restart so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestFit {
    pub restart: usize,
    pub parameters: GmmParametersJson,
    pub lower_bounds: Vec<f64>,
    pub converged: bool,
}

/// Everything needed to continue a fit exactly where it stopped: the parameters after the last M-step
/// (exact: JSON floats round-trip), the trajectory, and the best finished restart. Random draws come
/// from streams derived from the seed and the restart index, so nothing else is needed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GmmCheckpoint {
    pub format: String,
    /// Identifies the data (shape, values, labels) the fit runs on.
    pub data_fingerprint: String,
    /// Identifies the hyper-parameters, seed and precision.
    pub params_fingerprint: String,
    pub restart: usize,
    /// Iterations done in this restart.
    pub iteration: usize,
    /// Iterations done over all restarts (the number of metrics records this checkpoint covers).
    pub total_iterations: usize,
    pub lower_bounds: Vec<f64>,
    pub converged: bool,
    pub parameters: GmmParametersJson,
    pub best: Option<BestFit>,
    /// Seconds spent in EM iterations so far.
    pub seconds: f64,
}

/// 64-bit FNV-1a, as hex: a fingerprint, not a cryptographic hash.
fn fingerprint(bytes: impl IntoIterator<Item = u8>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn data_fingerprint(data: &Dataset) -> String {
    let shape = [data.x.n_rows as u64, data.x.n_cols as u64];
    let labels = data
        .labels
        .iter()
        .flatten()
        .map(|l| l.map_or(u64::MAX, |v| v as u64));
    fingerprint(
        shape
            .into_iter()
            .chain(data.x.values.iter().map(|v| v.to_bits()))
            .chain(labels)
            .flat_map(u64::to_le_bytes),
    )
}

impl GmmValidParams {
    fn params_fingerprint(&self, precision: Precision) -> String {
        let text = format!(
            "{}|seed={}|{precision}",
            serde_json::to_string(self.params()).expect("params serialise"),
            self.params().seed
        );
        fingerprint(text.into_bytes())
    }

    /// Checks that the data suits these parameters: enough rows, matching widths, labels in range.
    pub fn check_data(&self, data: &Dataset) -> Result<(), EmError> {
        let (n, d, k) = (data.n_rows(), data.n_cols(), self.n_components());
        if n < k {
            return Err(data
                .error(format!(
                    "{n} rows but n_components is {k}: a mixture needs at least as many rows as components"
                ))
                .into());
        }
        if let Some((dm, _)) = &self.means_init
            && *dm != d
        {
            return Err(InvalidParam::new(
                "means_init",
                format!("rows have {dm} numbers but the data has {d} features"),
            )
            .into());
        }
        if let Some(s) = &self.second_moments_init
            && let Some(ds) = s.n_features
            && ds != d
        {
            let key = match s.kind {
                InitKind::Precisions => "precisions_init",
                InitKind::Covariances => "covariances_init",
            };
            return Err(InvalidParam::new(
                key,
                format!("is for {ds} features but the data has {d}"),
            )
            .into());
        }
        if let Some(labels) = &data.labels {
            if labels.len() != n {
                return Err(data
                    .error(format!("{} labels for {n} rows", labels.len()))
                    .into());
            }
            if let Some((i, l)) = labels
                .iter()
                .enumerate()
                .find_map(|(i, l)| l.filter(|&v| v >= k).map(|v| (i, v)))
            {
                return Err(data
                    .row_error(
                        i,
                        format!(
                            "label {l} is out of range: n_components is {k}, labels are 0..{}",
                            k - 1
                        ),
                    )
                    .into());
            }
        }
        Ok(())
    }

    /// Fits by EM.
    pub fn fit(&self, data: &Dataset, compute: &Compute) -> Result<GaussianMixture, EmError> {
        self.fit_with(data, compute, &mut (), None)
    }

    /// Fits by EM, showing every iteration to `observer`, continuing from `resume` when given.
    pub fn fit_with(
        &self,
        data: &Dataset,
        compute: &Compute,
        observer: &mut dyn EmObserver,
        resume: Option<GmmCheckpoint>,
    ) -> Result<GaussianMixture, EmError> {
        self.check_data(data)?;
        let p = self.params();
        let labels = data.labels.as_deref();
        let ws = Workspace::new(&data.x, labels, p.n_components, p.covariance_type, compute);
        let data_fp = data_fingerprint(data);
        let params_fp = self.params_fingerprint(compute.precision);

        let mut state = match resume {
            Some(c) => {
                if c.format != CHECKPOINT_FORMAT {
                    return Err(EmError::Checkpoint(format!(
                        "format `{}` is not a Gaussian-mixture checkpoint (`{CHECKPOINT_FORMAT}`)",
                        c.format
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
                self.check_checkpoint_shape(&c, ws.d)?;
                c
            }
            None => GmmCheckpoint {
                format: CHECKPOINT_FORMAT.into(),
                data_fingerprint: data_fp,
                params_fingerprint: params_fp,
                restart: 0,
                iteration: 0,
                total_iterations: 0,
                lower_bounds: Vec::new(),
                converged: false,
                parameters: (&self.initialize(&ws, data, 0)?).into(),
                best: None,
                seconds: 0.0,
            },
        };
        // Before a restart's first M-step (iteration 0) the weights may sum to less than 1.
        let mut current = state
            .parameters
            .clone()
            .validate(state.iteration > 0)
            .map_err(|e| EmError::Checkpoint(e.to_string()))?;

        loop {
            while !state.converged && state.iteration < p.max_iter {
                let start = Instant::now();
                let (lower_bound, resp) = ws.e_step(&current);
                current = self.m_step(&ws, &resp)?;
                let previous = state.lower_bounds.last().copied();
                let change = previous.map(|prev| lower_bound - prev);
                state.lower_bounds.push(lower_bound);
                state.iteration += 1;
                state.total_iterations += 1;
                state.converged = change.is_some_and(|c| c.abs() < p.tol);
                let seconds = start.elapsed().as_secs_f64();
                state.seconds += seconds;
                state.parameters = (&current).into();
                let record = IterationRecord {
                    restart: state.restart,
                    iteration: state.iteration,
                    log_likelihood: lower_bound,
                    change,
                    seconds,
                };
                tracing::debug!(
                    restart = state.restart,
                    iteration = state.iteration,
                    log_likelihood = lower_bound,
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
            let better = state.best.as_ref().is_none_or(|b| {
                final_lb > b.lower_bounds.last().copied().unwrap_or(f64::NEG_INFINITY)
            });
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
            if state.restart + 1 >= p.n_init {
                break;
            }
            state.restart += 1;
            state.iteration = 0;
            state.lower_bounds.clear();
            state.converged = false;
            current = self.initialize(&ws, data, state.restart)?;
            state.parameters = (&current).into();
        }
        let best = state.best.expect("at least one restart ran");
        Ok(GaussianMixture {
            parameters: GmmParameters::try_from(best.parameters)
                .map_err(|e| EmError::Checkpoint(e.to_string()))?,
            converged: best.converged,
            n_iter: best.lower_bounds.len(),
            lower_bound: best
                .lower_bounds
                .last()
                .copied()
                .unwrap_or(f64::NEG_INFINITY),
            lower_bounds: best.lower_bounds,
            best_restart: best.restart,
        })
    }

    /// Checks what the fingerprints do not cover: that the checkpoint's parameters (and its best
    /// restart's) are a mixture of this fit's components, covariance type and `d` features, and that
    /// its restart is one of `n_init`.
    fn check_checkpoint_shape(&self, c: &GmmCheckpoint, d: usize) -> Result<(), EmError> {
        let p = self.params();
        if c.restart >= p.n_init {
            return Err(EmError::Checkpoint(format!(
                "it is at initialisation {} of n_init = {}",
                c.restart, p.n_init
            )));
        }
        let expected = (p.n_components, p.covariance_type, d);
        let best = c.best.as_ref().map(|b| ("best.parameters", &b.parameters));
        for (key, params) in std::iter::once(("parameters", &c.parameters)).chain(best) {
            let found = (
                params.n_components,
                params.covariance_type,
                params.n_features,
            );
            if found != expected {
                return Err(EmError::Checkpoint(format!(
                    "its {key} are a {}-component {} mixture of {} features; this fit is a {}-component {} \
                     mixture of {} features",
                    found.0, found.1, found.2, expected.0, expected.1, expected.2
                )));
            }
        }
        Ok(())
    }

    /// The M-step from responsibilities.
    fn m_step(
        &self,
        ws: &Workspace,
        resp: &[burn::tensor::Tensor<2>],
    ) -> Result<GmmParameters, EmError> {
        let reg = self.params().reg_covar;
        let est = ws.estimate_gaussian_parameters(resp, reg);
        let total: f64 = est.nk.iter().sum();
        let precisions_cholesky = precisions_cholesky_from_covariances(
            ws.cov_type,
            ws.d,
            &est.covariances,
            reg,
            Some(&ws.variance_floor),
        )?;
        Ok(GmmParameters {
            covariance_type: ws.cov_type,
            n_components: ws.k,
            n_features: ws.d,
            weights: est.nk.iter().map(|v| v / total).collect(),
            means: est.means,
            covariances: est.covariances,
            precisions_cholesky,
        })
    }

    /// Initial parameters for restart `restart` (scikit-learn's `_initialize_parameters` then
    /// `_initialize`): estimated from initial responsibilities, then overridden by explicit values.
    fn initialize(
        &self,
        ws: &Workspace,
        data: &Dataset,
        restart: usize,
    ) -> Result<GmmParameters, EmError> {
        let p = self.params();
        let (n, k, d) = (ws.n, ws.k, ws.d);
        let reg = p.reg_covar;
        let estimate = if self.fully_specified_init() {
            None
        } else {
            let mut rng = rng_for(p.seed, b"gmm-init", restart as u64);
            let resp = initial_responsibilities(
                ws,
                &data.x,
                data.labels.as_deref(),
                p.init_params,
                p.kmeans_max_iter,
                &mut rng,
            );
            let chunks =
                ws.x.iter()
                    .scan(0, |start, x| {
                        let rows = x.dims()[0];
                        let t = ws
                            .compute
                            .tensor(resp[*start * k..(*start + rows) * k].to_vec(), [rows, k]);
                        *start += rows;
                        Some(t)
                    })
                    .collect::<Vec<_>>();
            Some(ws.estimate_gaussian_parameters(&chunks, reg))
        };
        let weights = match (&self.weights_init, &estimate) {
            (Some(w), _) => w.clone(),
            (None, Some(e)) => e.nk.iter().map(|v| v / n as f64).collect(),
            (None, None) => unreachable!("estimated unless fully specified"),
        };
        let means = match (&self.means_init, &estimate) {
            (Some((_, m)), _) => m.clone(),
            (None, Some(e)) => e.means.clone(),
            (None, None) => unreachable!("estimated unless fully specified"),
        };
        let (covariances, precisions_cholesky) = match (&self.second_moments_init, estimate) {
            (Some(s), _) if s.kind == InitKind::Precisions => (
                covariances_from_precisions(p.covariance_type, d, &s.values)?,
                precisions_cholesky_from_precisions(p.covariance_type, d, &s.values)?,
            ),
            (Some(s), _) => (
                s.values.clone(),
                precisions_cholesky_from_covariances(p.covariance_type, d, &s.values, reg, None)?,
            ),
            (None, Some(e)) => {
                let floor = Some(ws.variance_floor.as_slice());
                let pc = precisions_cholesky_from_covariances(
                    p.covariance_type,
                    d,
                    &e.covariances,
                    reg,
                    floor,
                )?;
                (e.covariances, pc)
            }
            (None, None) => unreachable!("estimated unless fully specified"),
        };
        Ok(GmmParameters {
            covariance_type: p.covariance_type,
            n_components: k,
            n_features: d,
            weights,
            means,
            covariances,
            precisions_cholesky,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gmm::{CovarianceType, GmmParams};
    use burn::tensor::Device;
    use emvae_core::data::synthetic::SyntheticMixture;

    /// Every checkpoint of a 2-iteration, 2-restart fit of `k` components.
    fn checkpoints(k: usize, cov: CovarianceType) -> (GmmValidParams, Dataset, Vec<GmmCheckpoint>) {
        struct Keep(Vec<GmmCheckpoint>);
        impl EmObserver for Keep {
            fn on_iteration(
                &mut self,
                _: &IterationRecord,
                c: &GmmCheckpoint,
            ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                self.0.push(c.clone());
                Ok(())
            }
        }
        let data = SyntheticMixture {
            n_samples: 30,
            n_features: 2,
            n_components: 2,
            separation: 4.0,
            label_fraction: 0.0,
            seed: 1,
        }
        .generate()
        .data;
        let valid = GmmParams::new(k)
            .covariance_type(cov)
            .tol(0.0)
            .max_iter(2)
            .n_init(2)
            .check()
            .unwrap();
        let mut keep = Keep(Vec::new());
        valid.fit_with(&data, &compute(), &mut keep, None).unwrap();
        (valid, data, keep.0)
    }

    fn compute() -> Compute {
        Compute::new(Device::flex(), Precision::F64)
    }

    /// `emvae bench fuzz` found a checkpoint whose parameters (valid on their own) were those of another
    /// number of components: it resumed, and the E-step indexed past its arrays.
    #[test]
    fn a_checkpoint_of_another_mixture_is_refused() {
        let (valid, data, two) = checkpoints(2, CovarianceType::Spherical);
        let (_, _, three) = checkpoints(3, CovarianceType::Spherical);
        let (_, _, full) = checkpoints(2, CovarianceType::Full);
        // The checkpoints as written resume.
        for c in &two {
            valid
                .fit_with(&data, &compute(), &mut (), Some(c.clone()))
                .unwrap();
        }
        let cases = [
            (three[1].parameters.clone(), None, "3-component spherical"),
            (full[1].parameters.clone(), None, "2-component full"),
            (
                two[1].parameters.clone(),
                three[3].best.clone(),
                "best.parameters are a 3-component",
            ),
        ];
        for (parameters, best, needle) in cases {
            let mut c = two[3].clone();
            c.parameters = parameters;
            c.best = best.or(c.best);
            match valid.fit_with(&data, &compute(), &mut (), Some(c)) {
                Err(EmError::Checkpoint(m)) => assert!(m.contains(needle), "{m} lacks {needle}"),
                other => panic!("{needle}: {other:?}"),
            }
        }
        let mut c = two[1].clone();
        c.restart = usize::MAX;
        match valid.fit_with(&data, &compute(), &mut (), Some(c)) {
            Err(EmError::Checkpoint(m)) => assert!(m.contains("n_init = 2"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

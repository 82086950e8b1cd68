//! The Gaussian mixture on the EM driver ([`crate::driver`]): its E-step, M-step, initialisation and
//! checkpoint form.

use emvae_core::config::InvalidParam;
use emvae_core::data::Dataset;
use emvae_core::rng::rng_for;
use emvae_core::tensor::Compute;

use super::init::initial_responsibilities;
use super::model::GaussianMixture;
use super::parameters::{
    GmmParameters, GmmParametersJson, covariances_from_precisions,
    precisions_cholesky_from_covariances, precisions_cholesky_from_precisions,
};
use super::params::{GmmValidParams, InitKind};
use super::posterior::Posterior;
use super::workspace::Workspace;
use crate::EmError;
pub use crate::driver::IterationRecord;
use crate::driver::{self, EmModel, EmSettings, data_fingerprint};

/// Format tag of [`GmmCheckpoint`].
pub const CHECKPOINT_FORMAT: &str = "emvae.gmm.checkpoint.v1";

/// A Gaussian-mixture fit's checkpoint.
pub type GmmCheckpoint = driver::EmCheckpoint<GmmParametersJson>;
/// The best finished restart of a Gaussian-mixture fit.
pub type BestFit = driver::BestFit<GmmParametersJson>;

/// Sees every iteration of a Gaussian-mixture fit; may persist the checkpoint. Returning an error
/// stops the fit.
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

/// A Gaussian-mixture observer seen by the driver.
struct Forward<'a>(&'a mut dyn EmObserver);

impl driver::EmObserver<GmmParametersJson> for Forward<'_> {
    fn on_iteration(
        &mut self,
        record: &IterationRecord,
        checkpoint: &GmmCheckpoint,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.on_iteration(record, checkpoint)
    }
}

/// A Gaussian mixture being fitted: hyper-parameters, data and the device workspace.
struct GmmFit<'a> {
    valid: &'a GmmValidParams,
    data: &'a Dataset,
    ws: Workspace,
}

impl EmModel for GmmFit<'_> {
    type Params = GmmParameters;
    type Saved = GmmParametersJson;
    type Posterior = Posterior;
    const CHECKPOINT_FORMAT: &'static str = CHECKPOINT_FORMAT;

    fn initialize(&self, restart: usize) -> Result<GmmParameters, EmError> {
        self.valid.initialize(&self.ws, self.data, restart)
    }

    fn e_step(&self, params: &GmmParameters) -> Result<(f64, Self::Posterior), EmError> {
        Ok(self.ws.e_step(params))
    }

    fn m_step(&self, resp: Self::Posterior) -> Result<GmmParameters, EmError> {
        self.valid.m_step(&self.ws, &resp)
    }

    fn save(&self, params: &GmmParameters) -> GmmParametersJson {
        params.into()
    }

    /// Checks what the fingerprints do not cover: that the parameters are a mixture of this fit's
    /// components, covariance type and `d` features; then their values.
    fn load(&self, saved: &GmmParametersJson, after_m_step: bool) -> Result<GmmParameters, String> {
        let p = self.valid.params();
        let expected = (p.n_components, p.covariance_type, self.ws.d);
        let found = (saved.n_components, saved.covariance_type, saved.n_features);
        if found != expected {
            return Err(format!(
                "are a {}-component {} mixture of {} features; this fit is a {}-component {} mixture of {} \
                 features",
                found.0, found.1, found.2, expected.0, expected.1, expected.2
            ));
        }
        saved
            .clone()
            .validate(after_m_step)
            .map_err(|e| e.to_string())
    }
}

impl GmmValidParams {
    /// Checks that the data suits these parameters: enough rows, matching widths, labels in range.
    pub fn check_data(&self, data: &Dataset) -> Result<(), EmError> {
        if !self.candidates().is_empty() {
            return self
                .candidates()
                .iter()
                .try_for_each(|c| c.check_data(data));
        }
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
        if self.selection_criterion().is_some() {
            return Err(InvalidParam::new(
                "select",
                "a sweep is run by select(); fit the candidate it selects",
            )
            .into());
        }
        self.check_data(data)?;
        let p = self.params();
        let ws = Workspace::new(
            &data.x,
            data.labels.as_deref(),
            p.n_components,
            p.covariance_type,
            compute,
        );
        let settings = EmSettings {
            max_iter: p.max_iter,
            tol: p.tol,
            n_init: p.n_init,
            acceleration: driver::Acceleration::None,
        };
        let fingerprints = (
            data_fingerprint(data),
            driver::params_fingerprint(p, p.seed, compute.precision),
        );
        let model = GmmFit {
            valid: self,
            data,
            ws,
        };
        let fit = driver::fit(
            &model,
            &settings,
            fingerprints,
            &mut Forward(observer),
            resume,
        )?;
        Ok(GaussianMixture {
            parameters: fit.params,
            converged: fit.converged,
            n_iter: fit.lower_bounds.len(),
            lower_bound: fit
                .lower_bounds
                .last()
                .copied()
                .unwrap_or(f64::NEG_INFINITY),
            lower_bounds: fit.lower_bounds,
            best_restart: fit.best_restart,
        })
    }

    /// The M-step from an E-step's posterior.
    fn m_step(&self, ws: &Workspace, posterior: &Posterior) -> Result<GmmParameters, EmError> {
        let reg = self.params().reg_covar;
        ws.parameters_from_estimate(ws.estimate_from_posterior(posterior, reg), reg)
    }

    /// Initial parameters for restart `restart` (scikit-learn's `_initialize_parameters` then
    /// `_initialize`): estimated from initial responsibilities, then overridden by explicit values.
    pub(crate) fn initialize(
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
    use emvae_core::tensor::Precision;

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
        Compute::new(Device::flex(), Precision::F64).in_host_memory()
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

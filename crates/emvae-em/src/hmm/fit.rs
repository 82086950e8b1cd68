//! Baum-Welch on the EM driver ([`crate::driver`]): the E-step is forward-backward over every sequence,
//! the M-step normalises the expected counts.
//!
//! ```text
//! pi_j = sum_s gamma_s,1(j) / n_sequences
//! A_ij = sum_s sum_t xi_s,t(i, j) / sum_s sum_t<T_s gamma_s,t(i)
//! ```
//! and the emissions' M-step ([`super::gaussian`], [`super::categorical`]). A state whose row received
//! no expected transition (or emission) keeps it. The log-likelihood the driver tracks is the average
//! per observation, `sum_s log p(x_s) / sum_s T_s`.

use std::ops::Range;

use emvae_core::config::InvalidParam;

use super::data::{Observations, Sequences};
use super::estep::{self, Stats};
use super::model::Hmm;
use super::parameters::{Emissions, HmmParameters, HmmParametersJson};
use super::params::{Emission, HmmValidParams};
use crate::EmError;
use crate::driver::{self, EmModel, EmSettings};

/// Format tag of [`HmmCheckpoint`].
pub const CHECKPOINT_FORMAT: &str = "emvae.hmm.checkpoint.v1";

/// A hidden-Markov-model fit's checkpoint.
pub type HmmCheckpoint = driver::EmCheckpoint<HmmParametersJson>;

/// What the E-step hands the M-step: the statistics and the parameters they were taken under (a state
/// that received nothing keeps its own).
pub(crate) struct Estimate {
    stats: Stats,
    previous: HmmParameters,
}

/// A hidden Markov model being fitted: hyper-parameters, data and what every E-step reuses.
struct HmmFit<'a> {
    valid: &'a HmmValidParams,
    data: &'a Sequences,
    /// Mean of the Gaussian observations, the centre of the second moments (empty for symbols).
    shift: Vec<f64>,
    blocks: Vec<Range<usize>>,
    /// Vocabulary size of a categorical fit.
    n_symbols: usize,
}

impl EmModel for HmmFit<'_> {
    type Params = HmmParameters;
    type Saved = HmmParametersJson;
    type Posterior = Estimate;
    const CHECKPOINT_FORMAT: &'static str = CHECKPOINT_FORMAT;

    fn initialize(&self, restart: usize) -> Result<HmmParameters, EmError> {
        self.valid.initialize(self.data, restart)
    }

    fn e_step(&self, params: &HmmParameters) -> Result<(f64, Estimate), EmError> {
        let stats = estep::e_step(params, self.data, &self.shift, &self.blocks)?;
        let average = stats.log_prob / self.data.n_observations() as f64;
        Ok((
            average,
            Estimate {
                stats,
                previous: params.clone(),
            },
        ))
    }

    fn m_step(&self, estimate: Estimate) -> Result<HmmParameters, EmError> {
        let Estimate { stats, previous } = estimate;
        let k = previous.n_states();
        let n_start: f64 = stats.start.iter().sum();
        let startprob = stats.start.iter().map(|v| v / n_start).collect();
        let mut transmat = previous.transmat.clone();
        for (row, counts) in transmat
            .chunks_exact_mut(k)
            .zip(stats.trans.chunks_exact(k))
        {
            let total: f64 = counts.iter().sum();
            if total > 0.0 {
                row.iter_mut().zip(counts).for_each(|(a, c)| *a = c / total);
            }
        }
        let emissions = match &previous.emissions {
            Emissions::Gaussian(g) => Emissions::Gaussian(g.m_step(
                &stats.post,
                &stats.obs,
                &stats.second,
                &self.shift,
                self.valid.params().min_covar,
            )?),
            Emissions::Categorical(c) => Emissions::Categorical(c.m_step(&stats.counts)),
        };
        Ok(HmmParameters {
            startprob,
            transmat,
            emissions,
        })
    }

    fn save(&self, params: &HmmParameters) -> HmmParametersJson {
        params.into()
    }

    /// Checks what the fingerprints do not cover: that the parameters are those of this fit's number of
    /// states, emission, covariance type and width; then their values.
    fn load(
        &self,
        saved: &HmmParametersJson,
        _after_m_step: bool,
    ) -> Result<HmmParameters, String> {
        let p = self.valid.params();
        let describe = |k: usize, e: Emission, what: String| format!("{k}-state {e} ({what})");
        let expected = match &self.data.observations {
            Observations::Gaussian(x) => describe(
                p.n_states,
                Emission::Gaussian,
                format!("{} covariances, {} features", p.covariance_type, x.n_cols),
            ),
            Observations::Categorical { .. } => describe(
                p.n_states,
                Emission::Categorical,
                format!("{} symbols", self.n_symbols),
            ),
        };
        let what = match saved.emission {
            Emission::Gaussian => format!(
                "{} covariances, {} features",
                saved.covariance_type.map_or("no".into(), |c| c.to_string()),
                saved.n_features.unwrap_or(0)
            ),
            Emission::Categorical => format!("{} symbols", saved.n_symbols.unwrap_or(0)),
        };
        let found = describe(saved.n_states, saved.emission, what);
        if found != expected {
            return Err(format!(
                "are a {found} hidden Markov model; this fit is a {expected} one"
            ));
        }
        HmmParameters::try_from(saved.clone()).map_err(|e| e.to_string())
    }
}

impl HmmValidParams {
    /// The vocabulary size of a categorical fit: `emissionprob_init`'s width, else the data's.
    fn n_symbols(&self, data: &Sequences) -> usize {
        match (&self.emissionprob_init, &data.observations) {
            (Some((v, _)), _) => *v,
            (None, Observations::Categorical { n_symbols, .. }) => *n_symbols,
            (None, Observations::Gaussian(_)) => 0,
        }
    }

    /// Checks that the data suit these parameters: the emission kind, widths of the `*_init` values,
    /// symbols in the vocabulary, enough observations for k-means.
    pub fn check_data(&self, data: &Sequences) -> Result<(), EmError> {
        let (k, emission) = (self.n_states(), self.emission());
        match (&data.observations, emission) {
            (Observations::Gaussian(x), Emission::Gaussian) => {
                let d = x.n_cols;
                if let Some((dm, _)) = &self.means_init
                    && *dm != d
                {
                    let m = format!("rows have {dm} numbers but the data have {d} features");
                    return Err(InvalidParam::new("means_init", m).into());
                }
                if let Some((Some(dc), _)) = &self.covars_init
                    && *dc != d
                {
                    let m = format!("is for {dc} features but the data have {d}");
                    return Err(InvalidParam::new("covars_init", m).into());
                }
                if self.means_init.is_none() && x.n_rows < k {
                    return Err(data
                        .error(format!(
                            "{} observations but n_states is {k}: the k-means initialisation needs at least \
                             one observation per state (or give hmm.means_init)",
                            x.n_rows
                        ))
                        .into());
                }
            }
            (Observations::Categorical { .. }, Emission::Categorical) => {
                let v = self.n_symbols(data);
                if let Err(e) = data.check_symbols(v) {
                    if self.emissionprob_init.is_some() {
                        let m = format!("rows have {v} symbols, too few for the data: {e}");
                        return Err(InvalidParam::new("emissionprob_init", m).into());
                    }
                    return Err(e.into());
                }
            }
            (_, e) => {
                let found = match e {
                    Emission::Gaussian => "symbols",
                    Emission::Categorical => "real-valued observations",
                };
                let m = format!("is \"{e}\" but the data are {found}");
                return Err(InvalidParam::new("emission", m).into());
            }
        }
        Ok(())
    }

    /// Fits by Baum-Welch.
    pub fn fit(&self, data: &Sequences) -> Result<Hmm, EmError> {
        self.fit_with(data, &mut (), None)
    }

    /// Fits by Baum-Welch, showing every iteration to `observer`, continuing from `resume` when given.
    pub fn fit_with(
        &self,
        data: &Sequences,
        observer: &mut dyn driver::EmObserver<HmmParametersJson>,
        resume: Option<HmmCheckpoint>,
    ) -> Result<Hmm, EmError> {
        self.check_data(data)?;
        let p = self.params();
        let shift = match &data.observations {
            Observations::Gaussian(x) => (0..x.n_cols)
                .map(|a| x.rows().map(|r| r[a]).sum::<f64>() / x.n_rows as f64)
                .collect(),
            Observations::Categorical { .. } => Vec::new(),
        };
        let model = HmmFit {
            valid: self,
            data,
            shift,
            blocks: estep::blocks(&data.lengths),
            n_symbols: self.n_symbols(data),
        };
        let settings = EmSettings {
            max_iter: p.max_iter,
            tol: p.tol,
            n_init: p.n_init,
            acceleration: driver::Acceleration::None,
        };
        let fingerprints = (
            data.fingerprint(),
            driver::params_fingerprint(p, p.seed, "f64"),
        );
        let fit = driver::fit(&model, &settings, fingerprints, observer, resume)?;
        let (n_iter, lower_bound) = (fit.n_iter(), fit.lower_bound());
        Ok(Hmm {
            parameters: fit.params,
            converged: fit.converged,
            n_iter,
            lower_bound,
            lower_bounds: fit.lower_bounds,
            best_restart: fit.best_restart,
        })
    }
}

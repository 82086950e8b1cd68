//! Both discrete mixtures on the EM driver ([`crate::driver`]): what they share (initialisation, the
//! E-step, the objective, the checks of rows and labels), with the family-specific parts (M-step,
//! linear form of the E-step, prior, checkpoint form) behind [`Family`].

use std::fmt::Debug;

use emvae_core::data::DataError;
use emvae_core::rng::rng_for;
use rand::Rng as _;
use rand::seq::index::sample;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::settings::{Common, DiscreteInit};
use super::sparse::SparseRows;
use super::stats::{LinearForm, MixtureStats, e_step};
use crate::EmError;
use crate::driver::{self, EmCheckpoint, EmFit, EmModel, EmObserver};

/// What distinguishes one discrete mixture from the other.
pub(crate) trait Family {
    type Params: Clone;
    type Saved: Clone + Debug + PartialEq + Serialize + DeserializeOwned;
    const CHECKPOINT_FORMAT: &'static str;
    /// Stream tag of the initialisations' random draws.
    const INIT_STREAM: &'static [u8];

    fn common(&self) -> &Common;
    /// The parameters maximising the expected complete-data log posterior given the statistics.
    fn m_step(&self, stats: &MixtureStats) -> Self::Params;
    /// `log p(x, z = j)` as `bias_j + x . w[:, j]`.
    fn linear_form(params: &Self::Params) -> LinearForm;
    /// The log-density of the prior the smoothing stands for, up to a constant (0 without smoothing).
    fn log_prior(&self, params: &Self::Params) -> f64;
    fn save(params: &Self::Params) -> Self::Saved;
    /// Checkpointed parameters, checked to be a mixture of this fit's shape with valid values.
    fn load(&self, saved: &Self::Saved, n_features: usize) -> Result<Self::Params, String>;
}

/// A discrete mixture being fitted to rows `x`.
pub(crate) struct Engine<'a, F> {
    pub family: &'a F,
    pub x: &'a SparseRows,
    pub labels: Option<&'a [Option<usize>]>,
}

impl<F: Family> EmModel for Engine<'_, F> {
    type Params = F::Params;
    type Saved = F::Saved;
    type Posterior = MixtureStats;
    const CHECKPOINT_FORMAT: &'static str = F::CHECKPOINT_FORMAT;

    /// The M-step from initial responsibilities (so the weights are normalised from the start).
    fn initialize(&self, restart: usize) -> Result<F::Params, EmError> {
        let c = self.family.common();
        let mut rng = rng_for(c.seed, F::INIT_STREAM, restart as u64);
        let (n, k) = (self.x.n_rows, c.n_components);
        let mut resp = vec![0.0; n * k];
        match c.init {
            DiscreteInit::Random => {
                for row in resp.chunks_exact_mut(k) {
                    row.iter_mut().for_each(|v| *v = rng.random::<f64>());
                    let s: f64 = row.iter().sum();
                    row.iter_mut().for_each(|v| *v /= s);
                }
            }
            DiscreteInit::RandomFromData => {
                for (j, i) in sample(&mut rng, n, k).into_iter().enumerate() {
                    resp[i * k + j] = 1.0;
                }
            }
        }
        if let Some(labels) = self.labels {
            for (row, label) in resp.chunks_exact_mut(k).zip(labels) {
                if let Some(l) = label {
                    row.fill(0.0);
                    row[*l] = 1.0;
                }
            }
        }
        let stats = MixtureStats::from_responsibilities(self.x, k, &resp, &[]);
        Ok(self.family.m_step(&stats))
    }

    /// The statistics, and the objective EM never decreases: the average log posterior
    /// `(sum_i log p(x_i) + log p(params)) / n`, the average log-likelihood without smoothing.
    fn e_step(&self, params: &F::Params) -> Result<(f64, MixtureStats), EmError> {
        let stats = e_step(self.x, &F::linear_form(params), self.labels);
        let objective = (stats.log_likelihood + self.family.log_prior(params)) / stats.n_rows;
        Ok((objective, stats))
    }

    fn m_step(&self, stats: MixtureStats) -> Result<F::Params, EmError> {
        Ok(self.family.m_step(&stats))
    }

    fn save(&self, params: &F::Params) -> F::Saved {
        F::save(params)
    }

    fn load(&self, saved: &F::Saved, _after_m_step: bool) -> Result<F::Params, String> {
        self.family.load(saved, self.x.n_cols)
    }
}

/// Checks that `n` rows with `labels` suit `k` components: at least `k` rows, and the labels (see
/// [`check_labels`]).
pub(crate) fn check_rows(
    n: usize,
    k: usize,
    labels: Option<&[Option<usize>]>,
    error: impl Fn(String) -> DataError,
    row_error: impl Fn(usize, String) -> DataError,
) -> Result<(), DataError> {
    if n < k {
        return Err(error(format!(
            "{n} rows but n_components is {k}: a mixture needs at least as many rows as components"
        )));
    }
    check_labels(n, k, labels, error, row_error)
}

/// Checks that `labels` has one entry per row, each below `k`. `error` and `row_error` locate the
/// message in the data's file.
pub(crate) fn check_labels(
    n: usize,
    k: usize,
    labels: Option<&[Option<usize>]>,
    error: impl Fn(String) -> DataError,
    row_error: impl Fn(usize, String) -> DataError,
) -> Result<(), DataError> {
    let Some(labels) = labels else {
        return Ok(());
    };
    if labels.len() != n {
        return Err(error(format!("{} labels for {n} rows", labels.len())));
    }
    match labels
        .iter()
        .enumerate()
        .find_map(|(i, l)| l.filter(|&v| v >= k).map(|v| (i, v)))
    {
        Some((i, l)) => Err(row_error(
            i,
            format!(
                "label {l} is out of range: n_components is {k}, labels are 0..{}",
                k.saturating_sub(1)
            ),
        )),
        None => Ok(()),
    }
}

/// Fits `family` to `x` by EM (see [`driver::fit`]); `data_fingerprint` identifies `x` and the labels,
/// `params` is what the hyper-parameters' fingerprint is taken of.
pub(crate) fn fit<F: Family>(
    family: &F,
    x: &SparseRows,
    labels: Option<&[Option<usize>]>,
    params: &impl Serialize,
    observer: &mut dyn EmObserver<F::Saved>,
    resume: Option<EmCheckpoint<F::Saved>>,
) -> Result<EmFit<F::Params>, EmError> {
    let c = family.common();
    // Computed on the host in f64 whatever the backend.
    let fingerprints = (
        x.fingerprint(labels),
        driver::params_fingerprint(params, c.seed, "f64"),
    );
    let engine = Engine { family, x, labels };
    driver::fit(&engine, &c.settings(), fingerprints, observer, resume)
}

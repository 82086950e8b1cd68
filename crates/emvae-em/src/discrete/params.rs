//! Hyper-parameters of a discrete mixture, unchecked (as read from a config) and checked: one struct
//! for both mixtures, told apart by a kind marker ([`BernoulliMixtureParams`],
//! [`MultinomialMixtureParams`]).

use std::fmt::Debug;
use std::marker::PhantomData;

use emvae_core::config::InvalidParam;
use serde::{Deserialize, Serialize};

use super::settings::{Common, DiscreteInit, default_max_iter, default_one, default_tol};

/// Which mixture hyper-parameters are for, with its defaults.
pub trait MixtureKind: Debug + Clone + Copy + PartialEq + Default + 'static {
    /// Default pseudo-count `alpha`.
    const DEFAULT_ALPHA: f64;
}

/// Mixtures of multivariate Bernoullis: `alpha` defaults to 0 (maximum likelihood, as scikit-learn's
/// mixtures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BernoulliKind;

impl MixtureKind for BernoulliKind {
    const DEFAULT_ALPHA: f64 = 0.0;
}

/// Mixtures of multinomials: `alpha` defaults to 1 (Laplace smoothing, as Nigam et al. 2000), so that
/// held-out text with words a component never saw scores sensibly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MultinomialKind;

impl MixtureKind for MultinomialKind {
    const DEFAULT_ALPHA: f64 = 1.0;
}

fn default_alpha<M: MixtureKind>() -> f64 {
    M::DEFAULT_ALPHA
}

/// Unchecked hyper-parameters of a discrete mixture: the `[bernoulli_mixture]` or
/// `[multinomial_mixture]` table of a config. Turn them into [`DiscreteValidParams`] with
/// [`DiscreteMixtureParams::check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscreteMixtureParams<M: MixtureKind> {
    /// Number of mixture components `k`.
    pub n_components: usize,
    /// EM iterations per initialisation.
    #[serde(default = "default_max_iter")]
    pub max_iter: usize,
    /// EM stops when the recorded objective (the average log-likelihood, or log posterior with
    /// smoothing) changes by less than `tol` (absolute), as in scikit-learn.
    #[serde(default = "default_tol")]
    pub tol: f64,
    /// Number of initialisations; the one with the highest final objective is kept.
    #[serde(default = "default_one")]
    pub n_init: usize,
    #[serde(default)]
    pub init: DiscreteInit,
    /// Pseudo-count added to every count of every component distribution (Bernoulli: to the ones and
    /// to the zeros of every feature, a `Beta(1 + alpha, 1 + alpha)` prior; multinomial: to every word,
    /// a `Dirichlet(1 + alpha)` prior). 0 is maximum likelihood.
    #[serde(default = "default_alpha::<M>")]
    pub alpha: f64,
    /// Pseudo-count added to every component's share of the rows (a `Dirichlet(1 + alpha_weights)`
    /// prior on the weights). 0 is maximum likelihood.
    #[serde(default)]
    pub alpha_weights: f64,
    /// Online (mini-batch) EM on the rows streamed from disk instead of batch EM (`[...online]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<crate::online::OnlineParams>,
    /// Seed of every random choice (initialisations). Set from the run's `seed`.
    #[serde(skip)]
    pub seed: u64,
    #[serde(skip)]
    kind: PhantomData<M>,
}

/// Hyper-parameters of a Bernoulli mixture.
pub type BernoulliMixtureParams = DiscreteMixtureParams<BernoulliKind>;
/// Hyper-parameters of a multinomial mixture.
pub type MultinomialMixtureParams = DiscreteMixtureParams<MultinomialKind>;

impl<M: MixtureKind> DiscreteMixtureParams<M> {
    /// Defaults for `n_components` components.
    pub fn new(n_components: usize) -> Self {
        Self {
            n_components,
            max_iter: default_max_iter(),
            tol: default_tol(),
            n_init: 1,
            init: DiscreteInit::default(),
            alpha: M::DEFAULT_ALPHA,
            alpha_weights: 0.0,
            online: None,
            seed: 0,
            kind: PhantomData,
        }
    }

    pub fn max_iter(mut self, n: usize) -> Self {
        self.max_iter = n;
        self
    }
    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }
    pub fn n_init(mut self, n: usize) -> Self {
        self.n_init = n;
        self
    }
    pub fn init(mut self, init: DiscreteInit) -> Self {
        self.init = init;
        self
    }
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }
    pub fn alpha_weights(mut self, alpha: f64) -> Self {
        self.alpha_weights = alpha;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Validates everything that does not depend on the data; keys in errors are field names.
    pub fn check(&self) -> Result<DiscreteValidParams<M>, InvalidParam> {
        let common = Common {
            n_components: self.n_components,
            max_iter: self.max_iter,
            tol: self.tol,
            n_init: self.n_init,
            init: self.init,
            alpha: self.alpha,
            alpha_weights: self.alpha_weights,
            seed: self.seed,
        }
        .check()?;
        if let Some(online) = &self.online {
            online.check().map_err(|e| e.within("online"))?;
        }
        Ok(DiscreteValidParams {
            params: self.clone(),
            common,
        })
    }
}

/// Checked hyper-parameters: what `fit` runs with ([`BernoulliValidParams::fit`] on binary rows,
/// [`MultinomialValidParams::fit`] on documents).
#[derive(Debug, Clone, PartialEq)]
pub struct DiscreteValidParams<M: MixtureKind> {
    params: DiscreteMixtureParams<M>,
    pub(crate) common: Common,
}

/// Checked hyper-parameters of a Bernoulli mixture.
pub type BernoulliValidParams = DiscreteValidParams<BernoulliKind>;
/// Checked hyper-parameters of a multinomial mixture.
pub type MultinomialValidParams = DiscreteValidParams<MultinomialKind>;

impl<M: MixtureKind> DiscreteValidParams<M> {
    pub fn params(&self) -> &DiscreteMixtureParams<M> {
        &self.params
    }
    pub fn n_components(&self) -> usize {
        self.params.n_components
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_keys() {
        let p: BernoulliMixtureParams = toml::from_str("n_components = 3").unwrap();
        assert_eq!(p, BernoulliMixtureParams::new(3));
        assert_eq!((p.max_iter, p.tol, p.n_init), (100, 1e-3, 1));
        assert_eq!((p.alpha, p.alpha_weights), (0.0, 0.0));
        assert_eq!(p.init, DiscreteInit::RandomFromData);
        let p: MultinomialMixtureParams = toml::from_str("n_components = 3").unwrap();
        assert_eq!(p, MultinomialMixtureParams::new(3));
        assert_eq!(p.alpha, 1.0);
        let p: MultinomialMixtureParams =
            toml::from_str("n_components = 2\ninit = \"random\"\nalpha = 0\nmax_iter = 7").unwrap();
        assert_eq!(
            (p.init, p.alpha, p.max_iter),
            (DiscreteInit::Random, 0.0, 7)
        );
        assert!(toml::from_str::<BernoulliMixtureParams>("n_components = 2\nbeta = 1").is_err());
        assert!(toml::from_str::<BernoulliMixtureParams>("max_iter = 2").is_err());
        let e = BernoulliMixtureParams::new(0).check().unwrap_err();
        assert_eq!(e.key, "n_components");
        let e = MultinomialMixtureParams::new(2)
            .alpha(-1.0)
            .check()
            .unwrap_err();
        assert_eq!(e.key, "alpha");
        let valid = MultinomialMixtureParams::new(4).seed(9).check().unwrap();
        assert_eq!((valid.n_components(), valid.params().seed), (4, 9));
    }
}

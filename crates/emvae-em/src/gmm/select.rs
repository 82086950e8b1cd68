//! Choosing the number of components (and the covariance type) of a Gaussian mixture by an information
//! criterion, as scikit-learn's "Gaussian Mixture Model Selection" example does by hand:
//!
//! ```text
//! BIC = -2 log L + p ln n        AIC = -2 log L + 2 p
//! ```
//! where `log L` is the fitted mixture's log-likelihood of the `n` training rows and `p` its number of free
//! parameters. Each candidate is fitted with every other `[gmm]` setting (restarts, initialisation, seed);
//! the lowest criterion wins, the first in sweep order on a tie.

use emvae_core::config::InvalidParam;
use emvae_core::data::Dataset;
use emvae_core::tensor::Compute;
use serde::{Deserialize, Serialize};

use super::params::{CovarianceType, GmmParams, GmmValidParams};
use crate::EmError;

/// The criterion a sweep minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Criterion {
    /// Bayesian information criterion (Schwarz 1978): penalises parameters by `ln n`.
    #[default]
    Bic,
    /// Akaike information criterion: penalises parameters by 2.
    Aic,
}

impl Criterion {
    pub fn name(self) -> &'static str {
        match self {
            Self::Bic => "BIC",
            Self::Aic => "AIC",
        }
    }
}

/// The `[gmm.select]` table: which mixtures to fit and how to choose among them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectParams {
    /// Candidate numbers of components, each at least 1, no repeats.
    pub n_components: Vec<usize>,
    /// Candidate covariance types; the `[gmm]` table's `covariance_type` alone when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covariance_types: Option<Vec<CovarianceType>>,
    #[serde(default)]
    pub criterion: Criterion,
}

/// One fitted candidate of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub n_components: usize,
    pub covariance_type: CovarianceType,
    /// Mean log-likelihood per training row.
    pub log_likelihood: f64,
    pub bic: f64,
    pub aic: f64,
    pub n_parameters: usize,
    pub n_iter: usize,
    pub converged: bool,
}

impl Candidate {
    pub fn criterion(&self, c: Criterion) -> f64 {
        match c {
            Criterion::Bic => self.bic,
            Criterion::Aic => self.aic,
        }
    }
}

/// The outcome of a sweep: every candidate in sweep order (covariance types outer, numbers of components
/// inner) and the index of the one with the lowest criterion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub criterion: Criterion,
    pub candidates: Vec<Candidate>,
    pub best: usize,
}

impl Selection {
    pub fn best(&self) -> &Candidate {
        &self.candidates[self.best]
    }
}

impl SelectParams {
    /// The swept covariance types: `covariance_types`, or `default` (the `[gmm]` one) alone.
    pub fn covariance_types_or(&self, default: CovarianceType) -> Vec<CovarianceType> {
        self.covariance_types
            .clone()
            .unwrap_or_else(|| vec![default])
    }

    fn check(&self) -> Result<(), InvalidParam> {
        let bad = |key: &str, msg: String| Err(InvalidParam::new(key, msg));
        if self.n_components.is_empty() {
            return bad(
                "n_components",
                "lists no candidate: give the numbers of components to compare, e.g. [1, 2, 3, 4, 5, 6]"
                    .into(),
            );
        }
        if let Some(i) = self.n_components.iter().position(|&k| k == 0) {
            return bad(
                "n_components",
                format!("entry {i} is 0: each must be at least 1"),
            );
        }
        if let Some(k) = repeated(&self.n_components) {
            return bad("n_components", format!("lists {k} twice"));
        }
        if let Some(types) = &self.covariance_types {
            if types.is_empty() {
                return bad(
                    "covariance_types",
                    "is empty: list some or leave it out (the [gmm] covariance_type alone)".into(),
                );
            }
            if let Some(t) = repeated(types) {
                return bad("covariance_types", format!("lists \"{t}\" twice"));
            }
        }
        Ok(())
    }
}

fn repeated<T: PartialEq + Copy>(values: &[T]) -> Option<T> {
    values
        .iter()
        .enumerate()
        .find(|(i, v)| values[..*i].contains(v))
        .map(|(_, v)| *v)
}

impl GmmParams {
    /// [`GmmParams::check`] of a sweep: the sweep itself, then every candidate's own parameters.
    pub(crate) fn check_selection(
        &self,
        select: &SelectParams,
    ) -> Result<GmmValidParams, InvalidParam> {
        if self.n_components != 0 {
            return Err(InvalidParam::new(
                "n_components",
                "give the number of components here or sweep it in [gmm.select], not both",
            ));
        }
        if self.online.is_some() {
            return Err(InvalidParam::new(
                "select",
                "a sweep fits by batch EM: remove [gmm.online] or [gmm.select]",
            ));
        }
        let explicit = [
            ("weights_init", self.weights_init.is_some()),
            ("means_init", self.means_init.is_some()),
            ("precisions_init", self.precisions_init.is_some()),
            ("covariances_init", self.covariances_init.is_some()),
        ];
        if let Some((key, _)) = explicit.iter().find(|(_, given)| *given) {
            return Err(InvalidParam::new(
                *key,
                "fixes the number of components, which [gmm.select] sweeps: remove one or the other",
            ));
        }
        select.check().map_err(|e| e.within("select"))?;
        let mut candidates = Vec::new();
        for covariance_type in select.covariance_types_or(self.covariance_type) {
            for &k in &select.n_components {
                let params = GmmParams {
                    n_components: k,
                    covariance_type,
                    select: None,
                    ..self.clone()
                };
                candidates.push(params.check()?);
            }
        }
        Ok(GmmValidParams::sweep(self.clone(), candidates))
    }
}

impl GmmValidParams {
    /// Fits every candidate of a `[gmm.select]` sweep to `data` and picks the lowest criterion;
    /// `on_candidate` sees each as it is fitted. The fits are not kept: fit the winner, from
    /// [`GmmValidParams::selected`], with the observer and checkpoints it needs.
    pub fn select(
        &self,
        data: &Dataset,
        compute: &Compute,
        on_candidate: &mut dyn FnMut(&Candidate),
    ) -> Result<Selection, EmError> {
        let criterion = self.selection_criterion().ok_or_else(not_a_sweep)?;
        self.check_data(data)?;
        let mut candidates = Vec::with_capacity(self.candidates().len());
        for valid in self.candidates() {
            let model = valid.fit(data, compute)?;
            let log_likelihood = model.score(&data.x, compute)?;
            let (bic, aic) = model.criteria(log_likelihood, data.n_rows());
            let candidate = Candidate {
                n_components: valid.n_components(),
                covariance_type: valid.covariance_type(),
                log_likelihood,
                bic,
                aic,
                n_parameters: model.parameters.n_parameters(),
                n_iter: model.n_iter,
                converged: model.converged,
            };
            on_candidate(&candidate);
            candidates.push(candidate);
        }
        let best = (0..candidates.len())
            .reduce(|best, i| {
                if candidates[i].criterion(criterion) < candidates[best].criterion(criterion) {
                    i
                } else {
                    best
                }
            })
            .ok_or_else(not_a_sweep)?;
        Ok(Selection {
            criterion,
            candidates,
            best,
        })
    }

    /// The checked parameters of `selection`'s winner, one of this sweep's candidates.
    pub fn selected(&self, selection: &Selection) -> Result<&GmmValidParams, EmError> {
        let best = selection.candidates.get(selection.best).ok_or_else(|| {
            InvalidParam::new("select", "the selection names no candidate of this sweep")
        })?;
        self.candidates()
            .iter()
            .find(|c| {
                c.n_components() == best.n_components && c.covariance_type() == best.covariance_type
            })
            .ok_or_else(|| {
                InvalidParam::new(
                    "select",
                    format!(
                        "the selection's winner ({} components, {}) is not a candidate of this sweep",
                        best.n_components, best.covariance_type
                    ),
                )
                .into()
            })
    }
}

fn not_a_sweep() -> EmError {
    InvalidParam::new("select", "these parameters hold no [gmm.select] sweep").into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use emvae_core::data::synthetic::SyntheticMixture;
    use emvae_core::tensor::Precision;

    fn compute() -> Compute {
        Compute::new(Device::flex(), Precision::F64).in_host_memory()
    }

    fn sweep(select: SelectParams) -> Result<GmmValidParams, InvalidParam> {
        GmmParams {
            select: Some(select),
            ..GmmParams::new(0)
        }
        .check()
    }

    fn select(ks: &[usize], types: Option<Vec<CovarianceType>>) -> SelectParams {
        SelectParams {
            n_components: ks.to_vec(),
            covariance_types: types,
            criterion: Criterion::Bic,
        }
    }

    /// Four well-separated components: BIC picks 4 of 1-7, each candidate's figures are those of the
    /// same mixture fitted on its own, and the log-likelihood grows with the number of components.
    #[test]
    fn bic_recovers_the_number_of_components() {
        let data = SyntheticMixture {
            n_samples: 1200,
            n_features: 2,
            n_components: 4,
            separation: 6.0,
            label_fraction: 0.0,
            seed: 3,
        }
        .generate()
        .data;
        let types = vec![CovarianceType::Full, CovarianceType::Spherical];
        let valid = sweep(select(&[1, 2, 3, 4, 5, 6, 7], Some(types))).unwrap();
        let mut seen = 0;
        let s = valid.select(&data, &compute(), &mut |_| seen += 1).unwrap();
        assert_eq!((seen, s.candidates.len()), (14, 14));
        assert_eq!(s.best().n_components, 4, "{:?}", s.candidates);
        let full: Vec<&Candidate> = s.candidates[..7].iter().collect();
        for w in full[..4].windows(2) {
            assert!(w[1].log_likelihood > w[0].log_likelihood + 0.1, "{w:?}");
        }
        let alone = GmmParams::new(4)
            .check()
            .unwrap()
            .fit(&data, &compute())
            .unwrap();
        let score = alone.score(&data.x, &compute()).unwrap();
        let (bic, aic) = alone.criteria(score, data.n_rows());
        assert_eq!((full[3].bic, full[3].aic), (bic, aic));
        let winner = valid.selected(&s).unwrap();
        assert_eq!(
            (winner.n_components(), winner.covariance_type()),
            (4, s.best().covariance_type)
        );
        // AIC never prefers fewer components than BIC here (its penalty is smaller for n > e^2).
        let aic = sweep(SelectParams {
            criterion: Criterion::Aic,
            ..select(&[1, 2, 3, 4, 5, 6, 7], None)
        })
        .unwrap();
        let s = aic.select(&data, &compute(), &mut |_| {}).unwrap();
        assert!(s.best().n_components >= 4, "{:?}", s.best());
    }

    #[test]
    fn bad_sweeps_name_their_key() {
        let cases: Vec<(GmmParams, &str)> = vec![
            (
                GmmParams {
                    select: Some(select(&[], None)),
                    ..GmmParams::new(0)
                },
                "select.n_components",
            ),
            (
                GmmParams {
                    select: Some(select(&[2, 0], None)),
                    ..GmmParams::new(0)
                },
                "select.n_components",
            ),
            (
                GmmParams {
                    select: Some(select(&[2, 3, 2], None)),
                    ..GmmParams::new(0)
                },
                "select.n_components",
            ),
            (
                GmmParams {
                    select: Some(select(&[2], Some(vec![]))),
                    ..GmmParams::new(0)
                },
                "select.covariance_types",
            ),
            (
                GmmParams {
                    select: Some(select(&[2], None)),
                    ..GmmParams::new(3)
                },
                "n_components",
            ),
            (GmmParams::new(0), "n_components"),
            (
                GmmParams {
                    select: Some(select(&[2], None)),
                    ..GmmParams::new(0).weights_init(vec![0.5, 0.5])
                },
                "weights_init",
            ),
            (
                GmmParams {
                    select: Some(select(&[2], None)),
                    ..GmmParams::new(0).max_iter(0)
                },
                "max_iter",
            ),
        ];
        for (params, key) in cases {
            let e = params.check().unwrap_err();
            assert_eq!(e.key, key, "{e:?}");
        }
    }

    #[test]
    fn a_sweep_needs_rows_for_its_largest_candidate_and_is_not_fitted_directly() {
        let data = SyntheticMixture {
            n_samples: 5,
            n_features: 2,
            n_components: 2,
            separation: 4.0,
            label_fraction: 0.0,
            seed: 1,
        }
        .generate()
        .data;
        let valid = sweep(select(&[2, 6], None)).unwrap();
        assert!(matches!(
            valid.select(&data, &compute(), &mut |_| {}),
            Err(EmError::Data(_))
        ));
        assert!(matches!(
            valid.fit(&data, &compute()),
            Err(EmError::InvalidParam(_))
        ));
    }
}

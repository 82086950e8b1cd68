//! The multinomial mixture on the EM driver: its [`Family`] and `fit`.

use super::corpus::BagOfWords;
use super::model::MultinomialMixture;
use super::parameters::{MultinomialParameters, MultinomialParametersJson};
use crate::EmError;
use crate::discrete::engine::{self, Family, check_rows};
use crate::discrete::params::MultinomialValidParams;
use crate::discrete::settings::Common;
use crate::discrete::stats::{LinearForm, MixtureStats};
use crate::driver::{self, EmObserver};

/// Format tag of [`MultinomialCheckpoint`].
pub const CHECKPOINT_FORMAT: &str = "emvae.multinomial_mixture.checkpoint.v1";

/// A multinomial-mixture fit's checkpoint.
pub type MultinomialCheckpoint = driver::EmCheckpoint<MultinomialParametersJson>;

impl Family for MultinomialValidParams {
    type Params = MultinomialParameters;
    type Saved = MultinomialParametersJson;
    const CHECKPOINT_FORMAT: &'static str = CHECKPOINT_FORMAT;
    const INIT_STREAM: &'static [u8] = b"multinomial-mixture-init";

    fn common(&self) -> &Common {
        &self.common
    }

    fn m_step(&self, stats: &MixtureStats) -> MultinomialParameters {
        MultinomialParameters::from_stats(stats, self.common.alpha, self.common.alpha_weights)
    }

    fn linear_form(params: &MultinomialParameters) -> LinearForm {
        params.linear_form()
    }

    fn log_prior(&self, params: &MultinomialParameters) -> f64 {
        params.log_prior(self.common.alpha, self.common.alpha_weights)
    }

    fn save(params: &MultinomialParameters) -> MultinomialParametersJson {
        params.into()
    }

    fn load(
        &self,
        saved: &MultinomialParametersJson,
        v: usize,
    ) -> Result<MultinomialParameters, String> {
        let k = self.n_components();
        if (saved.n_components, saved.vocab_size) != (k, v) {
            return Err(format!(
                "are a {}-component mixture over {} words; this fit is a {k}-component mixture over {v} words",
                saved.n_components, saved.vocab_size
            ));
        }
        MultinomialParameters::try_from(saved.clone()).map_err(|e| e.to_string())
    }
}

impl MultinomialValidParams {
    /// Checks that the documents suit these parameters: at least `n_components` of them, labels in range.
    fn check_data(&self, docs: &BagOfWords) -> Result<(), EmError> {
        check_rows(
            docs.n_documents(),
            self.n_components(),
            docs.labels.as_deref(),
            |m| docs.error(m),
            |i, m| docs.row_error(i, m),
        )?;
        Ok(())
    }

    /// Fits by EM.
    pub fn fit(&self, docs: &BagOfWords) -> Result<MultinomialMixture, EmError> {
        self.fit_with(docs, &mut (), None)
    }

    /// Fits by EM, showing every iteration to `observer`, continuing from `resume` when given.
    pub fn fit_with(
        &self,
        docs: &BagOfWords,
        observer: &mut dyn EmObserver<MultinomialParametersJson>,
        resume: Option<MultinomialCheckpoint>,
    ) -> Result<MultinomialMixture, EmError> {
        self.check_data(docs)?;
        let labels = docs.labels.as_deref();
        let fit = engine::fit(self, &docs.x, labels, self.params(), observer, resume)?;
        Ok(MultinomialMixture::from_fit(fit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discrete::MultinomialMixtureParams;
    use crate::discrete::engine::Engine;
    use crate::discrete::settings::DiscreteInit;
    use crate::discrete::smoothing::PROB_FLOOR;
    use crate::discrete::testing::Keep;
    use crate::driver::EmModel;
    use emvae_core::rng::rng_for;
    use rand::Rng as _;

    /// Random documents over a small vocabulary, some empty, with skewed word frequencies.
    fn random_docs(seed: u64) -> BagOfWords {
        let mut rng = rng_for(seed, b"test-docs", 0);
        let (n, v) = (rng.random_range(8..40), rng.random_range(2..12));
        let docs: Vec<Vec<usize>> = (0..n)
            .map(|_| {
                let len = rng.random_range(0..15);
                let skew = rng.random::<f64>();
                (0..len)
                    .map(|_| ((rng.random::<f64>().powf(1.0 + 3.0 * skew)) * v as f64) as usize)
                    .collect()
            })
            .collect();
        BagOfWords::from_token_sequences(&docs, v, "docs").unwrap()
    }

    /// `(log-likelihood, N, S [k, V])` by direct loops over documents, labelled ones clamped.
    fn direct_e_step(p: &MultinomialParameters, docs: &BagOfWords) -> (f64, Vec<f64>, Vec<f64>) {
        let (k, v) = (p.n_components, p.vocab_size);
        let (mut ll, mut nk, mut s) = (0.0, vec![0.0; k], vec![0.0; k * v]);
        for i in 0..docs.n_documents() {
            let doc = docs.document(i);
            let label = docs.labels.as_ref().and_then(|l| l[i]);
            let joint: Vec<f64> = (0..k)
                .map(|j| match label {
                    Some(l) if l != j => 0.0,
                    _ => {
                        p.weights[j]
                            * doc
                                .iter()
                                .map(|&(w, c)| p.prob(j)[w].powi(c as i32))
                                .product::<f64>()
                    }
                })
                .collect();
            let total: f64 = joint.iter().sum();
            ll += total.ln();
            for j in 0..k {
                nk[j] += joint[j] / total;
                for &(w, c) in &doc {
                    s[j * v + w] += joint[j] / total * c as f64;
                }
            }
        }
        (ll, nk, s)
    }

    #[test]
    fn one_iteration_matches_the_closed_form() {
        let seqs = vec![
            vec![0, 0, 2],
            vec![1, 2, 2, 2],
            vec![],
            vec![0, 1],
            vec![2, 3, 3],
        ];
        let docs = BagOfWords::from_token_sequences(&seqs, 4, "tiny")
            .unwrap()
            .with_labels(vec![None, None, None, Some(0), None]);
        let (alpha, beta) = (0.5, 0.25);
        let valid = MultinomialMixtureParams::new(2)
            .alpha(alpha)
            .alpha_weights(beta)
            .check()
            .unwrap();
        let p = MultinomialParameters {
            n_components: 2,
            vocab_size: 4,
            weights: vec![0.4, 0.6],
            probs: vec![0.5, 0.2, 0.2, 0.1, 0.1, 0.3, 0.4, 0.2],
        };
        let engine = Engine {
            family: &valid,
            x: &docs.x,
            labels: docs.labels.as_deref(),
        };
        let (objective, stats) = engine.e_step(&p).unwrap();
        assert_eq!(p.expected_stats(&docs).unwrap(), stats);
        let next = engine.m_step(stats).unwrap();

        let (ll, nk, s) = direct_e_step(&p, &docs);
        let prior = alpha * p.probs.iter().map(|t| t.ln()).sum::<f64>()
            + beta * p.weights.iter().map(|w| w.ln()).sum::<f64>();
        assert!((objective - (ll + prior) / 5.0).abs() < 1e-12);
        for j in 0..2 {
            let w = (nk[j] + beta) / (5.0 + 2.0 * beta);
            assert!((next.weights[j] - w).abs() < 1e-12);
            let total: f64 = (0..4).map(|w| s[j * 4 + w] + alpha).sum();
            for w in 0..4 {
                let t = (s[j * 4 + w] + alpha) / total;
                assert!((next.prob(j)[w] - t).abs() < 1e-12, "theta {j} {w}");
            }
        }
    }

    #[test]
    fn em_never_decreases_the_recorded_objective_and_it_is_the_log_posterior() {
        for seed in 0..24 {
            let docs = random_docs(seed);
            let smoothing = seed % 2 == 1;
            let (alpha, beta) = if smoothing { (0.3, 0.6) } else { (0.0, 0.0) };
            let init = if seed % 4 < 2 {
                DiscreteInit::Random
            } else {
                DiscreteInit::RandomFromData
            };
            let valid = MultinomialMixtureParams::new(1 + seed as usize % 4)
                .alpha(alpha)
                .alpha_weights(beta)
                .init(init)
                .tol(0.0)
                .max_iter(30)
                .seed(seed)
                .check()
                .unwrap();
            let mut keep = Keep(Vec::new());
            let fit = valid.fit_with(&docs, &mut keep, None).unwrap();
            let lb = &fit.lower_bounds;
            for t in 1..lb.len() {
                assert!(
                    lb[t] >= lb[t - 1] - 1e-12 * lb[t].abs(),
                    "seed {seed}: {lb:?}"
                );
            }
            let n = docs.n_documents() as f64;
            for t in [0, 5, 28] {
                let p = MultinomialParameters::try_from(keep.0[t].parameters.clone()).unwrap();
                let (ll, _, _) = direct_e_step(&p, &docs);
                let prior = if smoothing {
                    alpha * p.probs.iter().map(|t| t.ln()).sum::<f64>()
                        + beta * p.weights.iter().map(|w| w.ln()).sum::<f64>()
                } else {
                    0.0
                };
                let expected = (ll + prior) / n;
                assert!((lb[t + 1] - expected).abs() < 1e-9 * expected.abs().max(1.0));
            }
        }
    }

    #[test]
    fn a_fully_labelled_corpus_gives_the_supervised_estimates_in_one_step() {
        let docs = random_docs(7);
        let n = docs.n_documents();
        let labels: Vec<usize> = (0..n).map(|i| (i * 5 + i / 4) % 2).collect();
        let docs = docs.with_labels(labels.iter().map(|&l| Some(l)).collect());
        let valid = MultinomialMixtureParams::new(2).alpha(0.0).max_iter(1);
        let a = valid.clone().seed(1).check().unwrap().fit(&docs).unwrap();
        let b = valid
            .init(DiscreteInit::Random)
            .check()
            .unwrap()
            .fit(&docs)
            .unwrap();
        assert_eq!(a.parameters, b.parameters);
        let v = docs.vocab_size();
        for j in 0..2 {
            let mut counts = vec![0.0; v];
            for i in (0..n).filter(|&i| labels[i] == j) {
                for (w, c) in docs.document(i) {
                    counts[w] += c as f64;
                }
            }
            let total: f64 = counts.iter().sum();
            let share = labels.iter().filter(|&&l| l == j).count() as f64 / n as f64;
            assert!((a.parameters.weights[j] - share).abs() < 1e-12);
            for w in 0..v {
                let expected = counts[w] / total;
                let got = a.parameters.prob(j)[w];
                // Words the class never used sit at the floor; the rest give up that mass.
                let tol = if counts[w] == 0.0 { 0.0 } else { 1e-9 };
                assert!((got - expected.max(PROB_FLOOR)).abs() <= tol, "{j} {w}");
            }
        }
    }

    #[test]
    fn a_resumed_checkpoint_gives_the_uninterrupted_fit_bit_for_bit() {
        let docs = random_docs(3);
        let valid = MultinomialMixtureParams::new(3)
            .n_init(2)
            .max_iter(5)
            .tol(0.0)
            .check()
            .unwrap();
        let mut keep = Keep(Vec::new());
        let whole = valid.fit_with(&docs, &mut keep, None).unwrap();
        assert_eq!(keep.0.len(), 10);
        for c in keep.0 {
            let c: MultinomialCheckpoint =
                serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
            assert_eq!(valid.fit_with(&docs, &mut (), Some(c)).unwrap(), whole);
        }
        // A Bernoulli checkpoint is not a multinomial one.
        let mut keep = Keep(Vec::new());
        valid.fit_with(&docs, &mut keep, None).unwrap();
        let mut c = keep.0.remove(0);
        c.format = crate::discrete::bernoulli::CHECKPOINT_FORMAT.into();
        let e = valid.fit_with(&docs, &mut (), Some(c)).unwrap_err();
        assert!(e.to_string().contains("is not a `emvae.multinomial"), "{e}");
    }

    #[test]
    fn bad_documents_are_reported() {
        let docs = BagOfWords::from_token_sequences(&[vec![0, 1], vec![1]], 2, "d.txt").unwrap();
        let e = MultinomialMixtureParams::new(3)
            .check()
            .unwrap()
            .fit(&docs)
            .unwrap_err();
        assert!(
            e.to_string().contains("2 rows but n_components is 3"),
            "{e}"
        );
        let labelled = docs.with_labels(vec![Some(0), Some(5)]);
        let e = MultinomialMixtureParams::new(2)
            .check()
            .unwrap()
            .fit(&labelled)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("document 1: label 5 is out of range"),
            "{e}"
        );
    }
}

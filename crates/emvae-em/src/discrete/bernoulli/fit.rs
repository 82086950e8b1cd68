//! The Bernoulli mixture on the EM driver: its [`Family`] and `fit`.

use emvae_core::data::Dataset;

use super::model::BernoulliMixture;
use super::parameters::{BernoulliParameters, BernoulliParametersJson};
use crate::EmError;
use crate::discrete::engine::{self, Family, check_rows};
use crate::discrete::params::BernoulliValidParams;
use crate::discrete::settings::Common;
use crate::discrete::sparse::SparseRows;
use crate::discrete::stats::{LinearForm, MixtureStats};
use crate::driver::{self, EmObserver};

/// Format tag of [`BernoulliCheckpoint`].
pub const CHECKPOINT_FORMAT: &str = "emvae.bernoulli_mixture.checkpoint.v1";

/// A Bernoulli-mixture fit's checkpoint.
pub type BernoulliCheckpoint = driver::EmCheckpoint<BernoulliParametersJson>;

impl Family for BernoulliValidParams {
    type Params = BernoulliParameters;
    type Saved = BernoulliParametersJson;
    const CHECKPOINT_FORMAT: &'static str = CHECKPOINT_FORMAT;
    const INIT_STREAM: &'static [u8] = b"bernoulli-mixture-init";

    fn common(&self) -> &Common {
        &self.common
    }

    fn m_step(&self, stats: &MixtureStats) -> BernoulliParameters {
        BernoulliParameters::from_stats(stats, self.common.alpha, self.common.alpha_weights)
    }

    fn linear_form(params: &BernoulliParameters) -> LinearForm {
        params.linear_form()
    }

    fn log_prior(&self, params: &BernoulliParameters) -> f64 {
        params.log_prior(self.common.alpha, self.common.alpha_weights)
    }

    fn save(params: &BernoulliParameters) -> BernoulliParametersJson {
        params.into()
    }

    fn load(
        &self,
        saved: &BernoulliParametersJson,
        d: usize,
    ) -> Result<BernoulliParameters, String> {
        let k = self.n_components();
        if (saved.n_components, saved.n_features) != (k, d) {
            return Err(format!(
                "are a {}-component mixture of {} features; this fit is a {k}-component mixture of {d} features",
                saved.n_components, saved.n_features
            ));
        }
        BernoulliParameters::try_from(saved.clone()).map_err(|e| e.to_string())
    }
}

impl BernoulliValidParams {
    /// Checks that the data suit these parameters: at least `n_components` rows, labels in range, and
    /// returns the rows in sparse form (every value must be 0 or 1).
    fn binary_rows(&self, data: &Dataset) -> Result<SparseRows, EmError> {
        check_rows(
            data.n_rows(),
            self.n_components(),
            data.labels.as_deref(),
            |m| data.error(m),
            |i, m| data.row_error(i, m),
        )?;
        Ok(SparseRows::from_binary(data)?)
    }

    /// Fits by EM.
    pub fn fit(&self, data: &Dataset) -> Result<BernoulliMixture, EmError> {
        self.fit_with(data, &mut (), None)
    }

    /// Fits by EM, showing every iteration to `observer`, continuing from `resume` when given.
    pub fn fit_with(
        &self,
        data: &Dataset,
        observer: &mut dyn EmObserver<BernoulliParametersJson>,
        resume: Option<BernoulliCheckpoint>,
    ) -> Result<BernoulliMixture, EmError> {
        let x = self.binary_rows(data)?;
        let labels = data.labels.as_deref();
        let fit = engine::fit(self, &x, labels, self.params(), observer, resume)?;
        Ok(BernoulliMixture::from_fit(fit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discrete::bernoulli::BernoulliMixtureParams;
    use crate::discrete::engine::Engine;
    use crate::discrete::settings::DiscreteInit;
    use crate::discrete::smoothing::PROB_FLOOR;
    use crate::discrete::testing::Keep;
    use crate::driver::EmModel;
    use emvae_core::data::Matrix;
    use emvae_core::rng::rng_for;
    use rand::Rng as _;

    fn dataset(rows: usize, cols: usize, values: Vec<f64>) -> Dataset {
        Dataset::new(Matrix::new(rows, cols, values), "binary.csv")
    }

    /// Random binary rows, denser in some columns than others.
    fn random_data(seed: u64) -> Dataset {
        let mut rng = rng_for(seed, b"test-data", 0);
        let (n, d) = (rng.random_range(10..60), rng.random_range(2..10));
        let p: Vec<f64> = (0..d).map(|_| rng.random::<f64>()).collect();
        let values = (0..n * d)
            .map(|e| f64::from(rng.random::<f64>() < p[e % d]))
            .collect();
        dataset(n, d, values)
    }

    /// `log p(x_i, z = j)` by the textbook formula.
    fn direct_log_joint(p: &BernoulliParameters, x: &[f64], j: usize) -> f64 {
        let t = p.prob(j);
        p.weights[j].ln()
            + x.iter()
                .zip(t)
                .map(|(x, t)| x * t.ln() + (1.0 - x) * (1.0 - t).ln())
                .sum::<f64>()
    }

    /// `(log-likelihood, N, S [k, d])` by direct loops, labelled rows clamped.
    fn direct_e_step(p: &BernoulliParameters, data: &Dataset) -> (f64, Vec<f64>, Vec<f64>) {
        let (k, d) = (p.n_components, p.n_features);
        let (mut ll, mut nk, mut s) = (0.0, vec![0.0; k], vec![0.0; k * d]);
        for (i, x) in data.x.rows().enumerate() {
            let label = data.labels.as_ref().and_then(|l| l[i]);
            let joint: Vec<f64> = (0..k)
                .map(|j| match label {
                    Some(l) if l != j => 0.0,
                    _ => direct_log_joint(p, x, j).exp(),
                })
                .collect();
            let total: f64 = joint.iter().sum();
            ll += total.ln();
            for j in 0..k {
                let r = joint[j] / total;
                nk[j] += r;
                for a in 0..d {
                    s[j * d + a] += r * x[a];
                }
            }
        }
        (ll, nk, s)
    }

    #[test]
    fn one_iteration_matches_the_closed_form() {
        let mut data = dataset(
            5,
            3,
            vec![1., 0., 1., 1., 1., 0., 0., 0., 1., 0., 1., 1., 1., 0., 0.],
        );
        data.labels = Some(vec![None, Some(1), None, None, None]);
        let (alpha, beta) = (0.5, 0.3);
        let valid = BernoulliMixtureParams::new(2)
            .alpha(alpha)
            .alpha_weights(beta)
            .check()
            .unwrap();
        let p = BernoulliParameters {
            n_components: 2,
            n_features: 3,
            weights: vec![0.35, 0.65],
            probs: vec![0.8, 0.3, 0.6, 0.25, 0.7, 0.45],
        };
        let x = valid.binary_rows(&data).unwrap();
        let engine = Engine {
            family: &valid,
            x: &x,
            labels: data.labels.as_deref(),
        };
        let (objective, stats) = engine.e_step(&p).unwrap();
        let next = engine.m_step(stats).unwrap();

        let (ll, nk, s) = direct_e_step(&p, &data);
        let prior: f64 = alpha * p.probs.iter().map(|t| t.ln() + (1.0 - t).ln()).sum::<f64>()
            + beta * p.weights.iter().map(|w| w.ln()).sum::<f64>();
        assert!((objective - (ll + prior) / 5.0).abs() < 1e-12);
        for j in 0..2 {
            let w = (nk[j] + beta) / (5.0 + 2.0 * beta);
            assert!((next.weights[j] - w).abs() < 1e-12, "weight {j}");
            for a in 0..3 {
                let t = (s[j * 3 + a] + alpha) / (nk[j] + 2.0 * alpha);
                assert!((next.prob(j)[a] - t).abs() < 1e-12, "theta {j} {a}");
            }
        }
    }

    #[test]
    fn em_never_decreases_the_recorded_objective_and_it_is_the_log_posterior() {
        for seed in 0..24 {
            let data = random_data(seed);
            let smoothing = seed % 2 == 1;
            let (alpha, beta) = if smoothing { (0.7, 0.4) } else { (0.0, 0.0) };
            let init = if seed % 4 < 2 {
                DiscreteInit::Random
            } else {
                DiscreteInit::RandomFromData
            };
            let k = 1 + seed as usize % 4;
            let valid = BernoulliMixtureParams::new(k)
                .alpha(alpha)
                .alpha_weights(beta)
                .init(init)
                .tol(0.0)
                .max_iter(30)
                .seed(seed)
                .check()
                .unwrap();
            let mut keep = Keep(Vec::new());
            let fit = valid.fit_with(&data, &mut keep, None).unwrap();
            let lb = &fit.lower_bounds;
            assert_eq!(lb.len(), 30);
            for t in 1..lb.len() {
                assert!(
                    lb[t] >= lb[t - 1] - 1e-12 * lb[t].abs(),
                    "seed {seed}: {lb:?}"
                );
            }
            // Entry t + 1 is the objective of the parameters after iteration t.
            let n = data.n_rows() as f64;
            for t in [0, 5, 28] {
                let p = BernoulliParameters::try_from(keep.0[t].parameters.clone()).unwrap();
                let (ll, _, _) = direct_e_step(&p, &data);
                let prior = if smoothing {
                    let c = |t: f64| t.clamp(PROB_FLOOR, 1.0 - PROB_FLOOR);
                    alpha
                        * p.probs
                            .iter()
                            .map(|&t| c(t).ln() + (1.0 - c(t)).ln())
                            .sum::<f64>()
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
    fn a_fully_labelled_data_set_gives_the_supervised_estimates_in_one_step() {
        let mut data = random_data(5);
        let n = data.n_rows();
        let d = data.n_cols();
        let labels: Vec<usize> = (0..n).map(|i| (i * 7 + i / 3) % 3).collect();
        data.labels = Some(labels.iter().map(|&l| Some(l)).collect());
        let fits: Vec<BernoulliMixture> =
            [(1, DiscreteInit::Random), (9, DiscreteInit::RandomFromData)]
                .into_iter()
                .map(|(seed, init)| {
                    let valid = BernoulliMixtureParams::new(3)
                        .max_iter(1)
                        .seed(seed)
                        .init(init);
                    valid.check().unwrap().fit(&data).unwrap()
                })
                .collect();
        assert_eq!(fits[0].parameters, fits[1].parameters);
        let p = &fits[0].parameters;
        for j in 0..3 {
            let rows: Vec<usize> = (0..n).filter(|&i| labels[i] == j).collect();
            let share = rows.len() as f64 / n as f64;
            assert!((p.weights[j] - share).abs() < 1e-12);
            for a in 0..d {
                let ones = rows.iter().filter(|&&i| data.x.row(i)[a] == 1.0).count();
                let freq = (ones as f64 / rows.len() as f64).clamp(PROB_FLOOR, 1.0 - PROB_FLOOR);
                assert!((p.prob(j)[a] - freq).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn a_resumed_checkpoint_gives_the_uninterrupted_fit_bit_for_bit() {
        let data = random_data(3);
        let valid = BernoulliMixtureParams::new(3)
            .alpha(0.1)
            .n_init(2)
            .max_iter(6)
            .tol(0.0)
            .init(DiscreteInit::Random)
            .check()
            .unwrap();
        let mut keep = Keep(Vec::new());
        let whole = valid.fit_with(&data, &mut keep, None).unwrap();
        assert_eq!(keep.0.len(), 12);
        for c in keep.0 {
            // Through JSON, as a checkpoint file.
            let c: BernoulliCheckpoint =
                serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
            let resumed = valid.fit_with(&data, &mut (), Some(c)).unwrap();
            assert_eq!(resumed, whole);
        }
        // A checkpoint of another data set or mixture is refused.
        let mut keep = Keep(Vec::new());
        valid.fit_with(&random_data(4), &mut keep, None).unwrap();
        let e = valid.fit_with(&data, &mut (), keep.0.pop()).unwrap_err();
        assert!(e.to_string().contains("other data"), "{e}");
    }

    #[test]
    fn bad_data_is_reported_with_its_row() {
        let valid = BernoulliMixtureParams::new(2).check().unwrap();
        let e = valid.fit(&dataset(2, 2, vec![0., 1., 2., 0.])).unwrap_err();
        match e {
            EmError::Data(e) => {
                assert_eq!(e.column, Some(1));
                assert!(
                    e.message.contains("row 1") && e.message.contains("value 2"),
                    "{e}"
                );
            }
            other => panic!("{other:?}"),
        }
        let e = valid.fit(&dataset(1, 2, vec![0., 1.])).unwrap_err();
        assert!(
            e.to_string().contains("1 rows but n_components is 2"),
            "{e}"
        );
        let mut data = dataset(3, 1, vec![0., 1., 1.]);
        data.labels = Some(vec![None, Some(2), None]);
        let e = valid.fit(&data).unwrap_err();
        assert!(
            e.to_string().contains("row 1: label 2 is out of range"),
            "{e}"
        );
        data.labels = Some(vec![None]);
        let e = valid.fit(&data).unwrap_err();
        assert!(e.to_string().contains("1 labels for 3 rows"), "{e}");
    }
}

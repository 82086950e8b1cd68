//! Probabilistic PCA and factor analysis on the EM driver ([`crate::driver`]): the statistics are
//! computed once, then every iteration costs O(d^2 q) whatever the number of rows.

use emvae_core::data::Dataset;

use super::em::{self, Expected};
use super::init::initial_parameters;
use super::model::LinearGaussian;
use super::parameters::{LinearParameters, LinearParametersJson};
use super::params::{LinearGaussianValidParams, check_finite};
use super::stats::SufficientStats;
use crate::EmError;
use crate::driver::{self, EmModel, EmSettings, data_fingerprint};

/// Format tag of [`LinearCheckpoint`].
pub const CHECKPOINT_FORMAT: &str = "emvae.linear.checkpoint.v1";

/// A linear-Gaussian fit's checkpoint.
pub type LinearCheckpoint = driver::EmCheckpoint<LinearParametersJson>;

/// A linear-Gaussian model being fitted: hyper-parameters and the data's statistics.
struct LinearFit<'a> {
    valid: &'a LinearGaussianValidParams,
    stats: SufficientStats,
    /// The smallest noise variance: `noise_floor` times the average feature variance.
    floor: f64,
}

impl EmModel for LinearFit<'_> {
    type Params = LinearParameters;
    type Saved = LinearParametersJson;
    type Posterior = Expected;
    const CHECKPOINT_FORMAT: &'static str = CHECKPOINT_FORMAT;

    fn initialize(&self, restart: usize) -> Result<LinearParameters, EmError> {
        let p = self.valid.params();
        initial_parameters(
            &self.stats,
            p.n_components,
            p.noise,
            p.init,
            self.floor,
            p.seed,
            restart,
        )
    }

    fn e_step(&self, params: &LinearParameters) -> Result<(f64, Expected), EmError> {
        em::e_step(&self.stats, params)
    }

    fn m_step(&self, expected: Expected) -> Result<LinearParameters, EmError> {
        em::m_step(&self.stats, &expected, self.valid.noise(), self.floor)
    }

    fn save(&self, params: &LinearParameters) -> LinearParametersJson {
        params.into()
    }

    /// Checks what the fingerprints do not cover: that the parameters are of this fit's noise model and
    /// shape; then their values.
    fn load(&self, saved: &LinearParametersJson, _: bool) -> Result<LinearParameters, String> {
        let expected = (self.valid.noise(), self.stats.d, self.valid.n_components());
        let found = (saved.noise, saved.n_features, saved.n_components);
        if found != expected {
            return Err(format!(
                "are a {} model of {} features and {} components; this fit is a {} model of {} features \
                 and {} components",
                found.0, found.1, found.2, expected.0, expected.1, expected.2
            ));
        }
        LinearParameters::try_from(saved).map_err(|e| e.to_string())
    }

    fn to_vector(&self, params: &LinearParameters) -> Option<Vec<f64>> {
        Some(params.to_vector())
    }

    fn from_vector(&self, v: &[f64]) -> Option<LinearParameters> {
        // Any parameters will do as the shape: the noise model and sizes are the fit's.
        let like = LinearParameters {
            noise: self.valid.noise(),
            n_features: self.stats.d,
            n_components: self.valid.n_components(),
            loadings: Vec::new(),
            mean: Vec::new(),
            noise_variances: Vec::new(),
        };
        LinearParameters::from_vector(&like, v, self.floor)
    }
}

impl LinearGaussianValidParams {
    /// Fits by EM. No checkpoint leaves this call, so it skips the data fingerprint that identifies
    /// one (hashing the data costs more than its statistics).
    pub fn fit(&self, data: &Dataset) -> Result<LinearGaussian, EmError> {
        self.check_shape(data)?;
        let stats = statistics(data)?;
        self.run(data, stats, String::new(), &mut (), None)
    }

    /// Fits by EM, showing every iteration to `observer`, continuing from `resume` when given.
    pub fn fit_with(
        &self,
        data: &Dataset,
        observer: &mut dyn driver::EmObserver<LinearParametersJson>,
        resume: Option<LinearCheckpoint>,
    ) -> Result<LinearGaussian, EmError> {
        self.check_shape(data)?;
        // Two passes over the data, side by side.
        let (fingerprint, stats) = rayon::join(|| data_fingerprint(data), || statistics(data));
        self.run(data, stats?, fingerprint, observer, resume)
    }

    fn run(
        &self,
        data: &Dataset,
        stats: SufficientStats,
        data_fingerprint: String,
        observer: &mut dyn driver::EmObserver<LinearParametersJson>,
        resume: Option<LinearCheckpoint>,
    ) -> Result<LinearGaussian, EmError> {
        let average_variance = stats.total_variance() / stats.d as f64;
        if average_variance <= 0.0 {
            return Err(data
                .error("every feature is constant: there is no variance to model")
                .into());
        }
        let p = self.params();
        let settings = EmSettings {
            max_iter: p.max_iter,
            tol: p.tol,
            n_init: p.n_init,
            acceleration: p.acceleration,
        };
        let fingerprints = (
            data_fingerprint,
            driver::params_fingerprint(p, p.seed, "f64"),
        );
        let model = LinearFit {
            valid: self,
            floor: p.noise_floor * average_variance,
            stats,
        };
        let fit = driver::fit(&model, &settings, fingerprints, observer, resume)?;
        let (n_iter, lower_bound) = (fit.n_iter(), fit.lower_bound());
        Ok(LinearGaussian {
            parameters: fit.params,
            converged: fit.converged,
            n_iter,
            lower_bound,
            lower_bounds: fit.lower_bounds,
            best_restart: fit.best_restart,
            e_steps: fit.e_steps,
        })
    }
}

/// The data's statistics; a non-finite one is traced to the first non-finite value, or else to
/// values so large that their squares overflow.
fn statistics(data: &Dataset) -> Result<SufficientStats, EmError> {
    let stats = SufficientStats::from_matrix(&data.x);
    if stats
        .mean
        .iter()
        .chain(&stats.covariance)
        .all(|v| v.is_finite())
    {
        return Ok(stats);
    }
    check_finite(data)?;
    Err(data
        .error("the data's variance overflows: rescale the features")
        .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{Acceleration, IterationRecord};
    use crate::linear::model::tests::factor_data;
    use crate::linear::{LinearGaussianParams, LinearInit, Noise};
    use emvae_core::data::Matrix;

    fn fixture(name: &str) -> serde_json::Value {
        let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn matrix(v: &serde_json::Value) -> Matrix {
        Matrix::from_rows(&serde_json::from_value::<Vec<Vec<f64>>>(v.clone()).unwrap())
    }

    /// Random-start EM of pPCA on the reference data, with and without SQUAREM.
    fn reference_fit(acceleration: Acceleration) -> (LinearGaussian, f64, f64) {
        let v = fixture("ppca_reference.json");
        let data = Dataset::new(matrix(&v["X"]), "ppca_reference.json");
        let q = v["q"].as_u64().unwrap() as usize;
        let fit = LinearGaussianParams::new(q)
            .init(LinearInit::Random)
            .acceleration(acceleration)
            .tol(1e-12)
            .max_iter(100_000)
            .seed(3)
            .check()
            .unwrap()
            .fit(&data)
            .unwrap();
        let sigma2 = v["sigma2_ml"].as_f64().unwrap();
        (fit, sigma2, v["avg_loglik_ml"].as_f64().unwrap())
    }

    #[test]
    fn em_reaches_the_closed_form_maximum_and_squarem_gets_there_faster() {
        let (em, sigma2, loglik) = reference_fit(Acceleration::None);
        let (sq, _, _) = reference_fit(Acceleration::Squarem);
        for (name, fit) in [("EM", &em), ("SQUAREM", &sq)] {
            assert!(fit.converged, "{name}");
            assert!(
                (fit.lower_bound - loglik).abs() < 1e-6,
                "{name}: {} vs {loglik}",
                fit.lower_bound
            );
            let s = fit.parameters.noise_variances[0];
            assert!((s - sigma2).abs() < 1e-6, "{name}: sigma^2 {s} vs {sigma2}");
        }
        println!(
            "pPCA reference, random start, tol 1e-12: EM {} iterations / {} E-steps; SQUAREM {} iterations / {} E-steps",
            em.n_iter, em.e_steps, sq.n_iter, sq.e_steps
        );
        assert!(sq.n_iter * 5 < em.n_iter, "{} vs {}", sq.n_iter, em.n_iter);
        assert!(
            sq.e_steps * 3 < em.e_steps,
            "{} vs {}",
            sq.e_steps,
            em.e_steps
        );
    }

    #[test]
    fn factor_analysis_matches_scikit_learn() {
        let v = fixture("fa_sklearn.json");
        let data = Dataset::new(matrix(&v["X"]), "fa_sklearn.json");
        let sk = &v["sklearn_fa"];
        for acceleration in [Acceleration::None, Acceleration::Squarem] {
            let fit = LinearGaussianParams::new(3)
                .noise(Noise::Diagonal)
                .acceleration(acceleration)
                .tol(1e-12)
                .max_iter(100_000)
                .check()
                .unwrap()
                .fit(&data)
                .unwrap();
            let score = sk["score"].as_f64().unwrap();
            assert!(
                (fit.lower_bound - score).abs() < 1e-4,
                "{} vs {score}",
                fit.lower_bound
            );
            // The fitted model's exact log-likelihood on the data agrees with the EM trajectory.
            let again = fit.score(&data.x).unwrap();
            assert!(
                (again - fit.lower_bound).abs() < 1e-9,
                "{again} vs {}",
                fit.lower_bound
            );
            let psi: Vec<f64> = serde_json::from_value(sk["noise_variance"].clone()).unwrap();
            for (a, b) in fit.parameters.noise_variances.iter().zip(&psi) {
                assert!(
                    (a - b).abs() < 1e-3 * b.max(0.1),
                    "psi {a} vs scikit-learn {b}"
                );
            }
            println!(
                "FA vs scikit-learn ({acceleration:?}): {} iterations, {} E-steps",
                fit.n_iter, fit.e_steps
            );
        }
    }

    /// Every checkpoint of a fit.
    struct Keep(Vec<LinearCheckpoint>);
    impl driver::EmObserver<LinearParametersJson> for Keep {
        fn on_iteration(
            &mut self,
            _: &IterationRecord,
            c: &LinearCheckpoint,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            self.0.push(c.clone());
            Ok(())
        }
    }

    #[test]
    fn a_resumed_fit_is_the_uninterrupted_one() {
        let (data, _) = factor_data(300, 6, 2, false, 11);
        for acceleration in [Acceleration::None, Acceleration::Squarem] {
            let valid = LinearGaussianParams::new(2)
                .noise(Noise::Diagonal)
                .init(LinearInit::Random)
                .n_init(2)
                .max_iter(15)
                .tol(0.0)
                .acceleration(acceleration)
                .seed(7)
                .check()
                .unwrap();
            let mut keep = Keep(Vec::new());
            let whole = valid.fit_with(&data, &mut keep, None).unwrap();
            assert_eq!(keep.0.len(), 30);
            assert_eq!(
                valid.fit(&data).unwrap(),
                whole,
                "fit skips only the fingerprint"
            );
            // Mid first restart, its end, mid second restart.
            for k in [4, 14, 22] {
                // Through JSON, as a checkpoint file.
                let text = serde_json::to_string(&keep.0[k]).unwrap();
                let c: LinearCheckpoint = serde_json::from_str(&text).unwrap();
                let resumed = valid.fit_with(&data, &mut (), Some(c)).unwrap();
                assert_eq!(
                    resumed, whole,
                    "{acceleration:?}, resumed after checkpoint {k}"
                );
            }
        }
    }

    #[test]
    fn checkpoints_of_another_fit_are_refused() {
        let (data, _) = factor_data(100, 5, 2, false, 12);
        let run = |noise: Noise, q: usize| {
            let valid = LinearGaussianParams::new(q)
                .noise(noise)
                .max_iter(3)
                .tol(0.0)
                .check()
                .unwrap();
            let mut keep = Keep(Vec::new());
            valid.fit_with(&data, &mut keep, None).unwrap();
            (valid, keep.0)
        };
        let (valid, own) = run(Noise::Diagonal, 2);
        let (_, isotropic) = run(Noise::Isotropic, 2);
        let (_, three) = run(Noise::Diagonal, 3);
        for (other, needle) in [(&isotropic, "isotropic model"), (&three, "3 components")] {
            let mut c = own[1].clone();
            c.parameters = other[1].parameters.clone();
            match valid.fit_with(&data, &mut (), Some(c)) {
                Err(EmError::Checkpoint(m)) => assert!(m.contains(needle), "{m} lacks {needle}"),
                other => panic!("{needle}: {other:?}"),
            }
        }
        let mut c = own[1].clone();
        c.parameters.noise_variance[0] = -1.0;
        match valid.fit_with(&data, &mut (), Some(c)) {
            Err(EmError::Checkpoint(m)) => assert!(m.contains("noise_variance"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Other data: the fingerprint differs.
        let (other_data, _) = factor_data(100, 5, 2, false, 13);
        match valid.fit_with(&other_data, &mut (), Some(own[1].clone())) {
            Err(EmError::Checkpoint(m)) => assert!(m.contains("other data"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_data_fails_with_a_clear_error() {
        let fit = |q: usize, x: Matrix| {
            LinearGaussianParams::new(q)
                .noise(Noise::Diagonal)
                .check()
                .unwrap()
                .fit(&Dataset::new(x, "data.csv"))
        };
        let ok = Matrix::new(
            4,
            3,
            vec![0.0, 1.0, 2.0, 1.0, 0.5, 0.0, 2.0, 2.0, 1.0, 3.0, 0.0, 1.0],
        );
        match fit(3, ok.clone()) {
            Err(EmError::InvalidParam(e)) => assert_eq!(e.key, "n_components"),
            other => panic!("{other:?}"),
        }
        match fit(1, ok.slice_rows(0, 1)) {
            Err(EmError::Data(e)) => assert!(e.to_string().contains("at least 2 rows"), "{e}"),
            other => panic!("{other:?}"),
        }
        for bad in [f64::NAN, f64::INFINITY] {
            let mut x = ok.clone();
            x.values[7] = bad;
            match fit(1, x) {
                Err(EmError::Data(e)) => assert!(e.to_string().contains("row 2"), "{e}"),
                other => panic!("{other:?}"),
            }
        }
        match fit(1, Matrix::new(3, 2, vec![1.0; 6])) {
            Err(EmError::Data(e)) => assert!(e.to_string().contains("constant"), "{e}"),
            other => panic!("{other:?}"),
        }
        match fit(
            1,
            Matrix::new(3, 2, vec![1e300, 0.0, -1e300, 1.0, 0.0, 2.0]),
        ) {
            Err(EmError::Data(e)) => assert!(e.to_string().contains("overflows"), "{e}"),
            other => panic!("{other:?}"),
        }
        // Rank-deficient data (3 rows in 3 features, a covariance of rank 2) still fits: the noise
        // floor keeps the likelihood bounded.
        let m = fit(1, ok.slice_rows(0, 3)).unwrap();
        assert!(m.lower_bound.is_finite());
    }
}

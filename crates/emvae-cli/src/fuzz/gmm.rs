//! The Gaussian mixture targets: model.json files and checkpoints a fit resumes from.

use burn::tensor::Device;
use emvae_core::data::synthetic::SyntheticMixture;
use emvae_core::data::{Dataset, Matrix};
use emvae_core::tensor::{Compute, Precision};
use emvae_em::gmm::{
    CovarianceType, EmObserver, GaussianMixture, GaussianMixtureJson, GmmCheckpoint, GmmParams,
    GmmValidParams, IterationRecord,
};

use super::json::json_input;
use super::mutate::{Mutator, Rng, Seed};
use super::{Case, Target, Verdict};
use crate::error::{CliError, CliResult};

/// Small data for the mixture targets: 30 rows, 2 features, some rows labelled.
fn gmm_data() -> Dataset {
    SyntheticMixture {
        n_samples: 30,
        n_features: 2,
        n_components: 2,
        separation: 4.0,
        label_fraction: 0.3,
        seed: 1,
    }
    .generate()
    .data
}

fn host_compute() -> Compute {
    Compute::new(Device::flex(), Precision::F64).in_host_memory()
}

fn fit_error(e: impl std::fmt::Display) -> CliError {
    CliError::runtime(format!("fuzz: cannot build the mixture seeds: {e}"))
}

/// model.json: `GaussianMixtureJson` then `GaussianMixture::try_from`; an accepted model scores rows,
/// predicts and samples.
pub(super) struct GmmModelTarget {
    mutator: Mutator,
    compute: Compute,
}

impl GmmModelTarget {
    pub(super) fn new() -> CliResult<Self> {
        let data = gmm_data();
        let compute = host_compute();
        let mut seeds = Vec::new();
        for c in CovarianceType::ALL {
            for k in [2, 3] {
                let model = GmmParams::new(k)
                    .covariance_type(c)
                    .max_iter(10)
                    .check()
                    .map_err(fit_error)?
                    .fit(&data, &compute)
                    .map_err(fit_error)?;
                let json = serde_json::to_vec_pretty(&GaussianMixtureJson::from(&model))
                    .map_err(fit_error)?;
                seeds.push(Seed {
                    bytes: json,
                    hot: Vec::new(),
                });
            }
        }
        Ok(Self {
            mutator: Mutator::new(seeds, false),
            compute,
        })
    }
}

impl Target for GmmModelTarget {
    fn name(&self) -> &'static str {
        "gmm-model"
    }

    fn generate(&self, rng: &mut Rng) -> Case {
        let i = rng.below(self.mutator.seeds.len());
        Case {
            bytes: json_input(rng, &self.mutator, i),
            variant: 0,
        }
    }

    fn run(&mut self, case: &Case) -> CliResult<Verdict> {
        let json: GaussianMixtureJson = match serde_json::from_slice(&case.bytes) {
            Ok(j) => j,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let model = match GaussianMixture::try_from(json) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e.to_string())),
        };
        // Used as eval, predict and sample use it (their errors are not the loader's).
        let d = model.n_features();
        let x = Matrix::new(
            3,
            d,
            (0..3 * d).map(|i| (i % 7) as f64 * 0.5 - 1.5).collect(),
        );
        let _ = std::hint::black_box(model.score(&x, &self.compute));
        let _ = std::hint::black_box(model.predict(&x, &self.compute));
        let _ = std::hint::black_box(model.sample(4, 0));
        std::hint::black_box(model.warnings(&x));
        Ok(Ok(()))
    }

    fn describe(&self, _: usize) -> String {
        "GaussianMixture::try_from of a model.json, then score, predict and sample".into()
    }
}

/// Keeps every checkpoint of a fit, as the file `train` writes.
struct Capture(Vec<Vec<u8>>);

impl EmObserver for Capture {
    fn on_iteration(
        &mut self,
        _: &IterationRecord,
        checkpoint: &GmmCheckpoint,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.push(serde_json::to_vec_pretty(checkpoint)?);
        Ok(())
    }
}

/// checkpoint.json: `GmmCheckpoint` then the fit resumed from it (`fit_with`), as `train --resume`.
pub(super) struct GmmCheckpointTarget {
    mutator: Mutator,
    /// The hyper-parameters each seed was written with (by seed index).
    params: Vec<GmmValidParams>,
    seed_params: Vec<usize>,
    data: Dataset,
    compute: Compute,
}

impl GmmCheckpointTarget {
    pub(super) fn new() -> CliResult<Self> {
        let data = gmm_data();
        let compute = host_compute();
        let (mut seeds, mut params, mut seed_params) = (Vec::new(), Vec::new(), Vec::new());
        for (c, k) in CovarianceType::ALL
            .into_iter()
            .flat_map(|c| [(c, 2), (c, 3)])
        {
            let valid = GmmParams::new(k)
                .covariance_type(c)
                .tol(0.0)
                .max_iter(3)
                .n_init(2)
                .check()
                .map_err(fit_error)?;
            let mut capture = Capture(Vec::new());
            valid
                .fit_with(&data, &compute, &mut capture, None)
                .map_err(fit_error)?;
            for bytes in capture.0 {
                seeds.push(Seed {
                    bytes,
                    hot: Vec::new(),
                });
                seed_params.push(params.len());
            }
            params.push(valid);
        }
        Ok(Self {
            mutator: Mutator::new(seeds, false),
            params,
            seed_params,
            data,
            compute,
        })
    }
}

impl Target for GmmCheckpointTarget {
    fn name(&self) -> &'static str {
        "gmm-checkpoint"
    }

    fn generate(&self, rng: &mut Rng) -> Case {
        let i = rng.below(self.mutator.seeds.len());
        Case {
            bytes: json_input(rng, &self.mutator, i),
            variant: self.seed_params[i],
        }
    }

    fn run(&mut self, case: &Case) -> CliResult<Verdict> {
        let checkpoint: GmmCheckpoint = match serde_json::from_slice(&case.bytes) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let params = &self.params[case.variant];
        Ok(params
            .fit_with(&self.data, &self.compute, &mut (), Some(checkpoint))
            .map(|model| {
                std::hint::black_box(model.warnings(&self.data.x));
            })
            .map_err(|e| e.to_string()))
    }

    fn describe(&self, variant: usize) -> String {
        let p = &self.params[variant];
        format!(
            "fit_with resuming a {}-component {} mixture from a checkpoint.json",
            p.n_components(),
            p.covariance_type()
        )
    }
}

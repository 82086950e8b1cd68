//! Backend parity: the same runs on flex (CPU) and on wgpu (a GPU, or Mesa's software Vulkan driver
//! lavapipe where there is none) agree within stated tolerances. Built only with `--features wgpu`:
//!
//! ```text
//! cargo test --release --features wgpu --test backend_parity
//! ```
//!
//! Noise and initial weights are drawn on the host, so both backends see the same draws; what differs
//! is the order of floating-point sums inside the kernels (f32 everywhere here). Tolerances:
//! - Gaussian-mixture EM (f32): every iteration's average log-likelihood within 1e-4 relative, the
//!   fitted weights within 1e-3.
//! - MLP VAE, 30 Adam steps: every step's loss within 1e-4 relative, every parameter within 1e-4.
//! - Sentence VAE, 12 Adam steps (flex with its host kernels, the GPU with composed tensor ops): every
//!   step's loss within 1e-4 relative, every parameter within 1e-4.
//!
//! Without a Vulkan (or Metal, DX12) adapter the tests say they were skipped, unless
//! `EMVAE_REQUIRE_GPU=1` (set by `.ci/run`, which installs lavapipe) makes that a failure.
#![cfg(feature = "wgpu")]

use burn::tensor::{Device, DeviceKind, Tensor};
use emvae::core::data::synthetic::SyntheticMixture;
use emvae::core::data::{Dataset, Matrix};
use emvae::core::rng::rng_for;
use emvae::core::tensor::{Compute, Precision};
use emvae::em::gmm::{CovarianceType, EmObserver, GmmCheckpoint, GmmParams, IterationRecord};
use emvae::text::batch::TextData;
use emvae::text::corpus::{CorpusOptions, parse_corpus};
use emvae::text::grammar::{GrammarSpec, LabelFactor, generate, to_lines};
use emvae::text::lstm_kernel::{HostKernels, lstm_sequence};
use emvae::text::vocab::Vocab;
use emvae::text::{TextDataset, TextTrainer, TextVaeConfig};
use emvae::vae::AmortizedModel;
use emvae::vae::config::VaeConfig;
use emvae::vae::data::{Binarization, VaeData};
use emvae::vae::train::{AmortizedTrainer, TrainObserver, TrainState, Trainer, parameter_values};
use rand::Rng;

/// The wgpu device, or `None` (with a message) where no adapter exists.
fn wgpu() -> Option<Device> {
    let probe = std::panic::catch_unwind(|| {
        let device = Device::wgpu(DeviceKind::default());
        let sum: f32 = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &device)
            .sum()
            .into_scalar();
        assert_eq!(sum, 6.0, "the adapter computes");
        device
    });
    match probe {
        Ok(device) => Some(device),
        Err(_) if std::env::var_os("EMVAE_REQUIRE_GPU").is_some() => {
            panic!(
                "EMVAE_REQUIRE_GPU is set but wgpu found no working adapter (install mesa-vulkan-drivers)"
            )
        }
        Err(_) => {
            eprintln!("skipped: wgpu found no adapter (install mesa-vulkan-drivers for lavapipe)");
            None
        }
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * (1.0 + a.abs().max(b.abs()))
}

fn assert_params_close(flex: &[Vec<f64>], gpu: &[Vec<f64>], tol: f64, what: &str) {
    assert_eq!(flex.len(), gpu.len());
    let mut worst = 0.0f64;
    for (a, b) in flex.iter().zip(gpu) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    eprintln!("{what}: largest parameter difference {worst:.2e}");
    assert!(
        worst <= tol,
        "{what}: parameters differ by {worst} (> {tol})"
    );
}

/// Two training runs `(step losses, parameters)` agree: `steps` losses within 1e-4 relative, every
/// parameter within 1e-4.
fn assert_runs_agree(
    (flex_loss, flex_params): (Vec<f64>, Vec<Vec<f64>>),
    (gpu_loss, gpu_params): (Vec<f64>, Vec<Vec<f64>>),
    steps: usize,
    what: &str,
) {
    assert_eq!(flex_loss.len(), steps, "{what}: steps run");
    assert_eq!(gpu_loss.len(), steps, "{what}: steps run on wgpu");
    for (i, (a, b)) in flex_loss.iter().zip(&gpu_loss).enumerate() {
        assert!(close(*a, *b, 1e-4), "{what} step {i}: loss {a} vs {b}");
    }
    assert_params_close(&flex_params, &gpu_params, 1e-4, what);
}

#[derive(Default)]
struct Trajectory(Vec<f64>);

impl EmObserver for Trajectory {
    fn on_iteration(
        &mut self,
        record: &IterationRecord,
        _: &GmmCheckpoint,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.push(record.log_likelihood);
        Ok(())
    }
}

#[test]
fn gmm_em_trajectory_matches_flex() {
    let Some(gpu) = wgpu() else { return };
    let data: Dataset = SyntheticMixture {
        n_samples: 2_000,
        n_features: 3,
        n_components: 4,
        separation: 2.0,
        label_fraction: 0.0,
        seed: 5,
    }
    .generate()
    .data;
    for cov in CovarianceType::ALL {
        let params = GmmParams::new(4)
            .covariance_type(cov)
            .tol(0.0)
            .max_iter(25)
            .seed(3)
            .check()
            .expect("valid parameters");
        let fit = |device: Device| {
            let mut t = Trajectory::default();
            let model = params
                .fit_with(&data, &Compute::new(device, Precision::F32), &mut t, None)
                .expect("fits");
            (t.0, model.parameters.weights.clone())
        };
        let (flex_ll, flex_w) = fit(Device::flex());
        let (gpu_ll, gpu_w) = fit(gpu.clone());
        assert_eq!(flex_ll.len(), gpu_ll.len(), "{cov:?}: iterations");
        for (i, (a, b)) in flex_ll.iter().zip(&gpu_ll).enumerate() {
            assert!(
                close(*a, *b, 1e-4),
                "{cov:?} iteration {}: {a} vs {b}",
                i + 1
            );
        }
        for (a, b) in flex_w.iter().zip(&gpu_w) {
            assert!((a - b).abs() < 1e-3, "{cov:?} weights: {a} vs {b}");
        }
    }
}

/// Each step's loss (summed over its rows), from the running sums the loop keeps (reset each epoch).
struct StepLosses {
    last: f64,
    losses: Vec<f64>,
}

impl<M: AmortizedModel> TrainObserver<M> for StepLosses {
    fn on_step(&mut self, state: &TrainState) {
        // The epoch's running sum of row-weighted losses: a step's is the change.
        self.losses.push(state.sums.loss - self.last);
        self.last = state.sums.loss;
    }
    fn on_epoch(
        &mut self,
        _: &emvae::vae::train::EpochRecord,
        _: &AmortizedTrainer<M>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.last = 0.0;
        Ok(())
    }
}

fn vae_data() -> VaeData {
    let (n, d) = (256, 20);
    let mut rng = rng_for(9, b"parity-vae", 0);
    let values = (0..n * d)
        .map(|i| {
            let bias = if (i / d) % 2 == 0 { 0.8 } else { 0.2 };
            f64::from(u8::from(rng.random::<f64>() < bias))
        })
        .collect();
    VaeData::new(&Matrix::new(n, d, values), Binarization::None)
}

#[test]
fn vae_training_steps_match_flex() {
    let Some(gpu) = wgpu() else { return };
    let config: VaeConfig = toml::from_str(
        "[encoder]\nsizes = [20, 32, 4]\n[decoder]\nsizes = [4, 32, 20]\n[likelihood]\nkind = \"bernoulli\"\n\
         [train]\nbatch_size = 32\nepochs = 100\nmax_steps = 30\n[eval]\nevery = 1000000\n",
    )
    .expect("config");
    let run = |device: Device| {
        let mut t =
            Trainer::new(config.clone(), 4, device.autodiff(), vae_data(), None).expect("trainer");
        let mut losses = StepLosses {
            last: 0.0,
            losses: Vec::new(),
        };
        t.run(&mut losses, Some(30)).expect("runs");
        (losses.losses, parameter_values(&t.model))
    };
    assert_runs_agree(run(Device::flex()), run(gpu), 30, "MLP VAE");
}

#[test]
fn text_vae_training_steps_match_flex() {
    let Some(gpu) = wgpu() else { return };
    let sentences = generate(&GrammarSpec {
        n_sentences: 128,
        seed: 2,
    });
    let text = to_lines(&sentences, LabelFactor::None);
    let corpus = parse_corpus(
        text.as_bytes(),
        std::path::Path::new("generated"),
        &CorpusOptions::default(),
    )
    .expect("corpus");
    let vocab = Vocab::build(&corpus.sentences, None, 1);
    let (data, _) = TextData::new(&corpus, &vocab, &[]).expect("data");
    let mut config: TextVaeConfig = toml::from_str(
        "latent = 8\nembedding = 16\ndropout = 0.2\nword_dropout = 0.3\n\
         [encoder]\nhidden = 24\nbidirectional = true\n[decoder]\nhidden = 24\n\
         [train]\nbatch_size = 16\nepochs = 100\nmax_steps = 12\n[eval]\nevery = 1000000\n",
    )
    .expect("config");
    config.vocab_size = vocab.len();
    // flex with the host kernels the CLI gives it (the LSTM recurrence as one operation, the output
    // layer on the host), the GPU with the composed tensor operations.
    let run = |device: Device, host_kernels: Option<HostKernels>| {
        let set = TextDataset::training(data.clone(), vocab.len(), 6);
        let config = TextVaeConfig {
            host_kernels,
            ..config.clone()
        };
        let mut t = TextTrainer::new(config, 6, device.autodiff(), set, None).expect("trainer");
        let mut losses = StepLosses {
            last: 0.0,
            losses: Vec::new(),
        };
        t.run(&mut losses, Some(12)).expect("runs");
        (losses.losses, parameter_values(&t.model))
    };
    let kernels = HostKernels {
        lstm: lstm_sequence::<burn::backend::Flex>,
    };
    assert_runs_agree(
        run(Device::flex(), Some(kernels)),
        run(gpu, None),
        12,
        "sentence VAE",
    );
}

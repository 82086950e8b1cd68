//! Training behaviour of the amortized path: posterior collapse measured and prevented, every E-step
//! strategy and objective learning, and resumed training equal to uninterrupted training bit for bit.

use burn::tensor::Device;
use emvae::core::data::Matrix;
use emvae::core::rng::rng_for;
use emvae::vae::config::VaeConfig;
use emvae::vae::data::{Binarization, VaeData};
use emvae::vae::train::{Outcome, Trainer, parameter_values};
use rand::Rng;

/// Binary data with strong structure: 8 prototypes, each pixel flipped with probability 0.05.
fn prototypes(n: usize, d: usize, seed: u64) -> Matrix {
    let mut rng = rng_for(seed, b"test-prototypes", 0);
    let protos: Vec<Vec<bool>> = (0..8)
        .map(|_| (0..d).map(|_| rng.random::<bool>()).collect())
        .collect();
    let mut values = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = rng.random_range(0..8);
        values.extend(protos[c].iter().map(|&b| {
            if b ^ (rng.random::<f64>() < 0.05) {
                1.0
            } else {
                0.0
            }
        }));
    }
    Matrix::new(n, d, values)
}

fn config(extra: &str, d: usize, latent: usize) -> VaeConfig {
    toml::from_str(&format!(
        "[encoder]\nsizes = [{d}, 64, {latent}]\n[decoder]\nsizes = [{latent}, 64, {d}]\n[likelihood]\nkind = \"bernoulli\"\n\
         [eval]\nevery = 1000000\niw_samples = 20\n{extra}"
    ))
    .unwrap()
}

fn train(config: VaeConfig, x: &Matrix, seed: u64) -> Trainer {
    let data = VaeData::new(x, Binarization::None);
    let mut t = Trainer::new(config, seed, Device::flex().autodiff(), data, None).unwrap();
    assert_eq!(t.run(&mut (), None).unwrap(), Outcome::Finished);
    t
}

/// Binary Markov chains: `x_0` a fair coin, each next bit flips with probability `flip`.
fn markov_chains(n: usize, d: usize, flip: f64, seed: u64) -> Matrix {
    let mut rng = rng_for(seed, b"test-markov", 0);
    let mut values = Vec::with_capacity(n * d);
    for _ in 0..n {
        let mut bit = rng.random::<bool>();
        for _ in 0..d {
            values.push(if bit { 1.0 } else { 0.0 });
            if rng.random::<f64>() < flip {
                bit = !bit;
            }
        }
    }
    Matrix::new(n, d, values)
}

/// A VAE whose autoregressive decoder starts at the data's exact distribution: `p(x_0) = 1/2`, then
/// `p(x_d = x_(d-1)) = 1 - flip`, with the path from z switched off. z has nothing to add.
fn strong_decoder_vae(objective: &str, d: usize, flip: f64, x: &Matrix) -> Trainer {
    use burn::module::Param;
    use burn::tensor::{Tensor, TensorData};
    let c: VaeConfig = toml::from_str(&format!(
        "[encoder]\nsizes = [{d}, 64, 4]\n[decoder]\nsizes = [4, 64, {d}]\n[likelihood]\nkind = \"bernoulli\"\n\
         autoregressive = true\n[train]\nepochs = 10\nbatch_size = 100\nlr_schedule = \"step\"\nlr_milestones = [5, 8]\n[eval]\nevery = 1000000\n{objective}"
    ))
    .unwrap();
    let data = VaeData::new(x, Binarization::None);
    let device = Device::flex().autodiff();
    let mut t = Trainer::new(c, 0, device.clone(), data, None).unwrap();
    let logit = |p: f64| (p / (1.0 - p)).ln() as f32;
    let mut a = vec![0.0f32; d * d];
    for j in 1..d {
        a[(j - 1) * d + j] = logit(1.0 - flip) - logit(flip);
    }
    let bias: Vec<f32> = (0..d)
        .map(|j| if j == 0 { 0.0 } else { logit(flip) })
        .collect();
    let dec = &mut t.model.decoder;
    let [h, _] = dec.out.weight.dims();
    dec.autoregressive = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(a, [d, d]),
        &device,
    )));
    dec.out.weight = Param::from_tensor(Tensor::zeros([h, d], &device));
    dec.out.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(bias, [d]),
        &device,
    )));
    t
}

/// Posterior collapse, measured: with a decoder that models the data without z (an autoregressive
/// decoder at the data's distribution), the plain ELBO drives KL to ~0 and leaves no active unit;
/// free bits (each dimension's first 0.5 nats of KL free) keep the latent in use.
#[test]
fn posterior_collapse_is_measured_and_free_bits_keep_the_latent_open() {
    let (d, flip) = (24, 0.1);
    let x = markov_chains(10_000, d, flip, 3);
    let entropy = std::f64::consts::LN_2
        + (d - 1) as f64 * -(flip * flip.ln() + (1.0 - flip) * (1.0 - flip).ln());
    let mut plain = strong_decoder_vae("", d, flip, &x);
    plain.run(&mut (), None).unwrap();
    let collapsed = plain.evaluate(None).unwrap();
    println!(
        "plain ELBO: ELBO {:.4} (data entropy {entropy:.4}), KL {:.4}, active units {}, MI {:.4}, posterior-mean variances {:?}",
        collapsed.elbo,
        collapsed.kl,
        collapsed.active_units,
        collapsed.mutual_information,
        collapsed.posterior_mean_variance
    );
    assert!(
        collapsed.kl < 0.05,
        "expected collapse, KL {}",
        collapsed.kl
    );
    assert_eq!(
        collapsed.active_units, 0,
        "{:?}",
        collapsed.posterior_mean_variance
    );

    let mut free = strong_decoder_vae("[objective]\nfree_bits = 0.5\n", d, flip, &x);
    free.run(&mut (), None).unwrap();
    let open = free.evaluate(None).unwrap();
    println!(
        "free bits 0.5: ELBO {:.4}, KL {:.4}, active units {}, MI {:.4}",
        open.elbo, open.kl, open.active_units, open.mutual_information
    );
    assert!(open.kl > 1.0, "KL {} below the floor", open.kl);
    assert!(open.active_units >= 1, "no active unit with free bits");
    assert!(open.mutual_information > collapsed.mutual_information + 0.5);
}

/// Every strategy and objective improves the held-out bound from its initial value on data with real
/// structure, and ends with informative latents.
#[test]
fn every_strategy_and_objective_learns() {
    let x = prototypes(1200, 32, 5);
    let initial = {
        let mut c = config(
            "[train]\nepochs = 1\nmax_steps = 1\nbatch_size = 100\n",
            32,
            4,
        );
        c.train.lr = 1e-12;
        train(c, &x, 1).evaluate(None).unwrap().elbo
    };
    let cases = [
        ("amortized ELBO", "[train]\nepochs = 15\nbatch_size = 100\n"),
        (
            "IWAE K=5",
            "[train]\nepochs = 15\nbatch_size = 100\n[objective]\nkind = \"iwae\"\nsamples = 5\n",
        ),
        (
            "KL annealing",
            "[train]\nepochs = 15\nbatch_size = 100\n[objective]\nannealing = \"linear\"\nanneal_steps = 60\n",
        ),
        (
            "cyclical annealing",
            "[train]\nepochs = 15\nbatch_size = 100\n[objective]\nannealing = \"cyclical\"\nanneal_steps = 40\nanneal_cycles = 2\n",
        ),
        (
            "mixture prior",
            "[train]\nepochs = 15\nbatch_size = 100\n[prior]\nkind = \"mixture\"\nn_components = 8\n",
        ),
        (
            "aggressive",
            "[train]\nepochs = 8\nbatch_size = 100\n[estep]\nstrategy = \"aggressive\"\ninner_max_steps = 20\ninner_window = 5\n",
        ),
        (
            "semi-amortized",
            "[train]\nepochs = 10\nbatch_size = 100\n[estep]\nstrategy = \"semi_amortized\"\nrefine_steps = 5\nrefine_lr = 0.5\n",
        ),
        (
            "semi-amortized, 2 shards",
            "[train]\nepochs = 10\nbatch_size = 100\nshards = 2\n[estep]\nstrategy = \"semi_amortized\"\nrefine_steps = 5\nrefine_lr = 0.5\n",
        ),
        (
            "non-amortized",
            "[train]\nepochs = 30\nbatch_size = 100\n[estep]\nstrategy = \"non_amortized\"\nposterior_lr = 0.05\n[eval]\ngap_steps = 150\ngap_lr = 0.05\n",
        ),
        (
            "non-amortized, 2 shards",
            "[train]\nepochs = 30\nbatch_size = 100\nshards = 2\n[estep]\nstrategy = \"non_amortized\"\nposterior_lr = 0.05\n[eval]\ngap_steps = 150\ngap_lr = 0.05\n",
        ),
        (
            "Monte Carlo EM (encoder)",
            "[train]\nepochs = 15\nbatch_size = 100\n[estep]\nstrategy = \"monte_carlo_em\"\nmc_samples = 8\n",
        ),
        (
            "Monte Carlo EM (prior)",
            "[train]\nepochs = 15\nbatch_size = 100\n[estep]\nstrategy = \"monte_carlo_em\"\nmc_samples = 32\nproposal = \"prior\"\n",
        ),
        (
            "Monte Carlo EM (encoder), 2 shards",
            "[train]\nepochs = 15\nbatch_size = 100\nshards = 2\n[estep]\nstrategy = \"monte_carlo_em\"\nmc_samples = 8\n",
        ),
        (
            "Monte Carlo EM (prior), 2 shards",
            "[train]\nepochs = 15\nbatch_size = 100\nshards = 2\n[estep]\nstrategy = \"monte_carlo_em\"\nmc_samples = 32\nproposal = \"prior\"\n",
        ),
    ];
    for (name, extra) in cases {
        // The [eval] tables above override the default's; merge by appending the base eval last.
        let c: VaeConfig = toml::from_str(&format!(
            "[encoder]\nsizes = [32, 64, 4]\n[decoder]\nsizes = [4, 64, 32]\n[likelihood]\nkind = \"bernoulli\"\n{extra}"
        ))
        .unwrap();
        let t = train(c, &x, 2);
        let d = t.evaluate(Some(20)).unwrap();
        let iw = d.iw.unwrap().nll;
        println!(
            "{name:>34}: ELBO {:.3} (from {initial:.3}), IW-20 NLL {iw:.3}, KL {:.3}, active units {}",
            d.elbo, d.kl, d.active_units
        );
        assert!(
            d.elbo > initial + 5.0,
            "{name}: ELBO {} did not improve on {initial}",
            d.elbo
        );
        assert!(
            -iw >= d.elbo - 0.5,
            "{name}: IW bound {} far below the ELBO {}",
            -iw,
            d.elbo
        );
        if !name.starts_with("Monte Carlo EM (prior)") {
            assert!(d.active_units >= 1, "{name}: no active unit");
        }
    }
}

/// Gaussian likelihoods (each variance form) and the categorical likelihood train on suited data.
#[test]
fn gaussian_and_categorical_likelihoods_learn() {
    let mut rng = rng_for(9, b"test-gauss", 0);
    // Two latent factors, six observed dimensions with different noise levels.
    let x = Matrix::new(
        1000,
        6,
        (0..1000)
            .flat_map(|_| {
                let (a, b): (f64, f64) = (
                    rng.random::<f64>() * 4.0 - 2.0,
                    rng.random::<f64>() * 4.0 - 2.0,
                );
                let noise: Vec<f64> = (0..6)
                    .map(|j| (rng.random::<f64>() - 0.5) * 0.1 * (j + 1) as f64)
                    .collect();
                vec![
                    a + noise[0],
                    b + noise[1],
                    a * b + noise[2],
                    a - b + noise[3],
                    a.sin() + noise[4],
                    b * b + noise[5],
                ]
            })
            .collect(),
    );
    // Baseline: an independent Gaussian per column, fitted by maximum likelihood.
    let baseline: f64 = (0..6)
        .map(|j| {
            let col: Vec<f64> = x.rows().map(|r| r[j]).collect();
            let m = col.iter().sum::<f64>() / 1000.0;
            let v = col.iter().map(|c| (c - m).powi(2)).sum::<f64>() / 1000.0;
            -0.5 * ((2.0 * std::f64::consts::PI * v).ln() + 1.0)
        })
        .sum();
    for variance in ["global", "per_dimension", "decoder"] {
        let c: VaeConfig = toml::from_str(&format!(
            "[encoder]\nsizes = [6, 64, 2]\n[decoder]\nsizes = [2, 64, 6]\n[likelihood]\nkind = \"gaussian\"\n\
             variance = \"{variance}\"\n[train]\nepochs = 40\nbatch_size = 50\n[eval]\nevery = 1000000\n"
        ))
        .unwrap();
        let t = train(c, &x, 3);
        let d = t.evaluate(None).unwrap();
        println!(
            "gaussian {variance}: ELBO {:.3} (independent Gaussians: {baseline:.3}), active units {}",
            d.elbo, d.active_units
        );
        assert!(
            d.elbo > baseline + 1.5,
            "{variance}: ELBO {} vs baseline {baseline}",
            d.elbo
        );
        assert_eq!(d.active_units, 2, "{variance}");
    }
    // Categorical: 5 columns of tokens in 0..6, determined by one hidden class out of 3.
    let x = Matrix::new(
        900,
        5,
        (0..900)
            .flat_map(|i| {
                let c = i % 3;
                (0..5).map(move |j| ((c * 2 + j) % 6) as f64)
            })
            .collect(),
    );
    let c: VaeConfig = toml::from_str(
        "[encoder]\nsizes = [5, 32, 2]\n[decoder]\nsizes = [2, 32, 5]\n[likelihood]\nkind = \"categorical\"\n\
         n_categories = 6\n[train]\nepochs = 30\nbatch_size = 30\n[eval]\nevery = 1000000\n",
    )
    .unwrap();
    let d = train(c, &x, 4).evaluate(Some(20)).unwrap();
    println!(
        "categorical: IW NLL {:.3} (uniform: {:.3})",
        d.iw.unwrap().nll,
        5.0 * 6f64.ln()
    );
    // The three patterns cost log 3 = 1.1 nats; a uniform model 5 log 6 = 9 nats.
    assert!(d.iw.unwrap().nll < 2.0);
}

/// Train N steps, stop, resume from the checkpoint bytes and train M more: the same model, bit for
/// bit, as N + M steps at once, for each E-step strategy: with per-point state, inner loops or two
/// gradient sets (each also in two data-parallel shards).
#[test]
fn resumed_training_equals_uninterrupted_training_bit_for_bit() {
    let x = prototypes(500, 16, 8);
    for (strategy, shards) in [
        ("amortized", 1),
        ("non_amortized", 1),
        ("non_amortized", 2),
        ("aggressive", 1),
        ("aggressive", 2),
        ("semi_amortized", 1),
        ("semi_amortized", 2),
        ("monte_carlo_em", 1),
        ("monte_carlo_em", 2),
    ] {
        let text = format!(
            "[encoder]\nsizes = [16, 32, 3]\n[decoder]\nsizes = [3, 32, 16]\n[likelihood]\nkind = \"bernoulli\"\n\
             [train]\nepochs = 3\nbatch_size = 64\ngrad_clip = 5.0\nshards = {shards}\n[estep]\nstrategy = \"{strategy}\"\n\
             inner_max_steps = 6\ninner_window = 3\nrefine_steps = 2\n[objective]\nannealing = \"linear\"\n\
             anneal_steps = 10\n[eval]\nevery = 1\niw_samples = 5\ngap_steps = 5\n"
        );
        let config: VaeConfig = toml::from_str(&text).unwrap();
        let data = || VaeData::new(&x, Binarization::Stochastic { seed: 11 });
        let device = Device::flex().autodiff();
        let mut whole = Trainer::new(config.clone(), 5, device.clone(), data(), None).unwrap();
        whole.run(&mut (), None).unwrap();

        let mut first = Trainer::new(config.clone(), 5, device.clone(), data(), None).unwrap();
        // Stop mid-epoch (8 steps per epoch).
        assert_eq!(first.run(&mut (), Some(11)).unwrap(), Outcome::Stopped);
        let bytes = first.checkpoint_bytes().unwrap();
        drop(first);
        let mut resumed =
            Trainer::resume(config.clone(), 5, device.clone(), data(), None, &bytes).unwrap();
        assert_eq!(resumed.state.step, 11);
        assert_eq!(resumed.run(&mut (), None).unwrap(), Outcome::Finished);
        let untimed = |t: &Trainer| {
            let mut s = t.state.clone();
            s.seconds = 0.0;
            s.sums.seconds = 0.0;
            s
        };
        assert_eq!(untimed(&whole), untimed(&resumed), "{strategy}: loop state");
        assert!(
            parameter_values(&whole.model) == parameter_values(&resumed.model),
            "{strategy}: parameters differ"
        );
        assert_eq!(
            whole.local, resumed.local,
            "{strategy}: per-point posteriors"
        );

        // A checkpoint of another architecture is refused.
        let mut other = config.clone();
        other.encoder.sizes = vec![16, 24, 3];
        let err = Trainer::resume(other, 5, device, data(), None, &bytes)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("different model"), "{err}");
    }
}

/// A run whose learning rate makes it diverge stops with an error naming the step and the term of the
/// objective that went non-finite first, for each E-step strategy whose encoder a learning rate of 1e4
/// blows up (in two shards too), rather than passing the optimiser a NaN gradient. (The non-amortized
/// strategy has no encoder: its free posteriors take steps of their own size, and its Bernoulli
/// decoder saturates at this rate without overflowing.)
#[test]
fn every_strategy_reports_the_term_that_diverged() {
    let x = prototypes(400, 16, 3);
    for strategy in [
        "amortized",
        "aggressive",
        "semi_amortized",
        "monte_carlo_em",
    ] {
        for shards in [1, 2] {
            let mut c = config(
                &format!(
                    "[train]\nepochs = 20\nbatch_size = 50\nshards = {shards}\n[estep]\n\
                     strategy = \"{strategy}\"\ninner_max_steps = 4\ninner_window = 2\nrefine_steps = 2\n"
                ),
                16,
                3,
            );
            c.train.lr = 1e4;
            let data = VaeData::new(&x, Binarization::None);
            let mut t = Trainer::new(c, 1, Device::flex().autodiff(), data, None).unwrap();
            let err = t
                .run(&mut (), None)
                .expect_err("a learning rate of 1e4 diverges")
                .to_string();
            assert!(
                err.contains("training diverged at step") && err.contains("lower train.lr"),
                "{strategy}: {err}"
            );
            assert!(
                err.contains("the reconstruction term E_q[log p(x|z)] is")
                    || err.contains("the KL term is")
                    || err.contains("the loss is"),
                "{strategy}, {shards} shards: the term is not named: {err}"
            );
        }
    }
}

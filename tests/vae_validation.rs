//! The amortized path validated against exact EM.
//!
//! Probabilistic PCA is the latent-variable model whose exact E-step and maximum likelihood are both
//! closed form (Tipping & Bishop 1999). A linear VAE with a Gaussian decoder and learned sigma^2 has
//! the pPCA maximum likelihood as its global optimum (Lucas et al. 2019). So on the reference data
//! (`tests/fixtures/ppca_reference.json`, from `../shared/reference/ppca_reference.py`):
//! - the trained ELBO reaches the closed-form maximum average log-likelihood, -11.4738591660;
//! - for the trained decoder, the importance-weighted estimate of log p(x) agrees with the exact
//!   linear-Gaussian marginal N(b, W W^T + sigma^2 I) and approaches it as K grows;
//! - the encoder's mean and variance agree with the exact posterior of the trained decoder,
//!   N(M^-1 W^T (x - b), sigma^2 M^-1) with M = W^T W + sigma^2 I.

use burn::module::Module;
use burn::tensor::Device;
use emvae::core::data::Matrix;
use emvae::core::linalg;
use emvae::core::tensor::tensor_to_vec;
use emvae::vae::config::VaeConfig;
use emvae::vae::data::{Binarization, VaeData};
use emvae::vae::diagnostics::{DiagnoseOptions, EVAL_VALUES, diagnose, iw_log_likelihoods};
use emvae::vae::inference::PosteriorSource;
use emvae::vae::train::Trainer;

struct Reference {
    x: Matrix,
    avg_loglik_ml: f64,
    sigma2_ml: f64,
}

fn reference() -> Reference {
    let r: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/ppca_reference.json")).unwrap();
    let rows: Vec<Vec<f64>> = serde_json::from_value(r["X"].clone()).unwrap();
    Reference {
        x: Matrix::from_rows(&rows),
        avg_loglik_ml: r["avg_loglik_ml"].as_f64().unwrap(),
        sigma2_ml: r["sigma2_ml"].as_f64().unwrap(),
    }
}

/// A linear VAE trained to convergence on the reference data (full-batch Adam, step decay).
fn trained_linear_vae(x: &Matrix) -> Trainer {
    let config: VaeConfig = toml::from_str(
        r#"
        [encoder]
        sizes = [8, 3]
        variance = "free"
        [decoder]
        sizes = [3, 8]
        [likelihood]
        kind = "gaussian"
        variance = "global"
        [train]
        epochs = 12000
        batch_size = 2000
        lr = 0.01
        lr_schedule = "step"
        lr_milestones = [7000, 10000]
        lr_decay = 0.1
        [eval]
        every = 1000000
        iw_samples = 10
        "#,
    )
    .unwrap();
    let data = VaeData::new(x, Binarization::None);
    let mut trainer = Trainer::new(config, 0, Device::flex().autodiff(), data, None).unwrap();
    trainer.run(&mut (), None).unwrap();
    trainer
}

/// The trained decoder as pPCA parameters: `W` `[d, q]` row-major, `b` `[d]`, `sigma^2`.
fn decoder_parameters(t: &Trainer) -> (Vec<f64>, Vec<f64>, f64) {
    let out = &t.model.decoder.out;
    // burn stores the weight as [d_in, d_out] = [q, d]; W = weight^T.
    let weight = tensor_to_vec(out.weight.val());
    let (q, d) = (3, 8);
    let mut w = vec![0.0; d * q];
    for i in 0..q {
        for j in 0..d {
            w[j * q + i] = weight[i * d + j];
        }
    }
    let b = tensor_to_vec(out.bias.as_ref().unwrap().val());
    let sigma2 = tensor_to_vec(t.model.decoder.log_var.as_ref().unwrap().val())[0].exp();
    (w, b, sigma2)
}

/// Exact `log N(x | b, W W^T + sigma^2 I)` per row.
fn exact_marginal(x: &Matrix, w: &[f64], b: &[f64], sigma2: f64) -> Vec<f64> {
    let (d, q) = (8, 3);
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            c[i * d + j] = (0..q).map(|k| w[i * q + k] * w[j * q + k]).sum::<f64>()
                + if i == j { sigma2 } else { 0.0 };
        }
    }
    let l = linalg::cholesky_lower(&c, d).unwrap();
    let log_det: f64 = 2.0 * (0..d).map(|i| l[i * d + i].ln()).sum::<f64>();
    x.rows()
        .map(|row| {
            // Solve L y = x - b; the quadratic form is |y|^2.
            let mut y = vec![0.0; d];
            for i in 0..d {
                let s: f64 = (0..i).map(|k| l[i * d + k] * y[k]).sum();
                y[i] = (row[i] - b[i] - s) / l[i * d + i];
            }
            -0.5 * (d as f64 * (2.0 * std::f64::consts::PI).ln()
                + log_det
                + y.iter().map(|v| v * v).sum::<f64>())
        })
        .collect()
}

#[test]
fn linear_vae_reaches_the_ppca_maximum_likelihood_and_matches_the_exact_e_step() {
    let r = reference();
    let mut t = trained_linear_vae(&r.x);
    let plain = Device::flex();
    let model = t.model.valid();
    let data = t.train.fixed(0);

    // 1. The ELBO (200 samples per point, so its Monte Carlo error is ~1e-3) reaches the optimum.
    let d = diagnose(
        &model,
        &data,
        &PosteriorSource::Encoder,
        &plain,
        DiagnoseOptions {
            elbo_samples: 200,
            iw_samples: None,
            seed: 1,
            mi_points: 100,
            values_per_evaluation: EVAL_VALUES,
        },
    );
    println!(
        "ELBO {:.6} vs closed-form pPCA maximum {:.10}",
        d.elbo, r.avg_loglik_ml
    );
    assert!(
        (d.elbo - r.avg_loglik_ml).abs() < 0.01,
        "ELBO {} vs {}",
        d.elbo,
        r.avg_loglik_ml
    );
    let (w, b, sigma2) = decoder_parameters(&t);
    assert!(
        (sigma2 - r.sigma2_ml).abs() / r.sigma2_ml < 0.01,
        "sigma^2 {sigma2} vs {}",
        r.sigma2_ml
    );

    // 2. The importance-weighted estimate of log p(x) approaches the exact marginal of this decoder.
    let exact = exact_marginal(&r.x, &w, &b, sigma2);
    let exact_mean = exact.iter().sum::<f64>() / exact.len() as f64;
    assert!((exact_mean - r.avg_loglik_ml).abs() < 0.01);
    let gap_table = |source: &PosteriorSource| -> Vec<(f64, f64)> {
        [1, 10, 100, 1000]
            .into_iter()
            .map(|k| {
                let est = iw_log_likelihoods(&model, &data, source, k, 7, EVAL_VALUES, &plain);
                let diffs: Vec<f64> = est.iter().zip(&exact).map(|(e, x)| x - e).collect();
                let n = diffs.len() as f64;
                let mean = diffs.iter().sum::<f64>() / n;
                let se =
                    (diffs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt();
                println!("K = {k:>4}: exact - IW = {mean:.6} (standard error {se:.6})");
                // A lower bound on average: never above the exact value beyond Monte Carlo error.
                assert!(
                    mean > -3.0 * se - 1e-4,
                    "K = {k}: IW estimate above log p(x) by {}",
                    -mean
                );
                (mean, se)
            })
            .collect()
    };
    // The evaluation budget splits the K samples of a row into blocks combined in log space: with one row
    // per chunk either way (so the same importance samples), one block of 100 and 34 blocks of at most 3
    // give the same estimates. (The pPCA rows cost d = 8 values per sample.)
    let head = VaeData::new(
        &Matrix::from_rows(&r.x.rows().take(50).map(<[f64]>::to_vec).collect::<Vec<_>>()),
        Binarization::None,
    )
    .fixed(0);
    let one_block = iw_log_likelihoods(
        &model,
        &head,
        &PosteriorSource::Encoder,
        100,
        3,
        800,
        &plain,
    );
    let blocks = iw_log_likelihoods(&model, &head, &PosteriorSource::Encoder, 100, 3, 24, &plain);
    assert_eq!(one_block.len(), 50);
    for (a, b) in one_block.iter().zip(&blocks) {
        assert!((a - b).abs() < 1e-4, "one block {a} vs blocks of 3 {b}");
    }
    // The trainer's own diagnostics take the budget its caller set: one row per chunk (100 samples of 8
    // values) draws other importance samples than one chunk of every row, and both reach the exact
    // marginal (within 0.001 nats; Monte Carlo error at K = 100 is about 5e-5 here).
    let mut trainer_iw = |values: usize| {
        t.eval_values = values;
        t.evaluate(Some(100)).unwrap().iw.unwrap()
    };
    let (per_row, all_rows) = (trainer_iw(800), trainer_iw(EVAL_VALUES));
    assert_ne!(
        per_row.nll, all_rows.nll,
        "the budget did not change the chunks"
    );
    for est in [per_row, all_rows] {
        println!(
            "trainer IW-100 NLL {:.6} (exact {:.6})",
            est.nll, -exact_mean
        );
        assert!(
            (est.nll + exact_mean).abs() < 1e-3,
            "trainer IW-100 NLL {} vs exact {}",
            est.nll,
            -exact_mean
        );
    }
    // With the trained encoder as proposal (nearly the exact posterior), every K agrees with the exact
    // marginal within Monte Carlo error, and the error shrinks as K grows.
    let gaps = gap_table(&PosteriorSource::Encoder);
    let (gap_1000, se_1000) = gaps[3];
    assert!(
        gap_1000.abs() < 3.0 * se_1000 + 2e-3,
        "K = 1000 still {gap_1000} from exact (se {se_1000})"
    );
    for w in gaps.windows(2) {
        assert!(
            w[1].1 < w[0].1,
            "the Monte Carlo error did not shrink with K: {gaps:?}"
        );
    }
    // With a proposal four times too broad, the bound is loose at K = 1 and tightens toward the exact
    // marginal as K grows.
    let (mean, log_var) =
        emvae::vae::diagnostics::encode_all(&model, &data, &PosteriorSource::Encoder, &plain);
    let broad = PosteriorSource::Given {
        mean,
        log_var: log_var.into_iter().map(|v| v + 4f64.ln()).collect(),
        latent: 3,
    };
    let gaps = gap_table(&broad);
    for w in gaps.windows(2) {
        assert!(
            w[1].0 + 3.0 * w[1].1 < w[0].0,
            "the bound did not tighten with K: {gaps:?}"
        );
    }
    assert!(
        gaps[3].0 < 0.1 * gaps[0].0,
        "K = 1000 not near the exact marginal: {gaps:?}"
    );

    // 3. The amortized E-step agrees with the exact E-step of the trained decoder.
    let (q, dd) = (3, 8);
    let mut m = vec![0.0; q * q];
    for i in 0..q {
        for j in 0..q {
            m[i * q + j] = (0..dd).map(|k| w[k * q + i] * w[k * q + j]).sum::<f64>()
                + if i == j { sigma2 } else { 0.0 };
        }
    }
    let m_inv = linalg::spd_inverse(&m, q).unwrap();
    let exact_var: Vec<f64> = (0..q).map(|i| sigma2 * m_inv[i * q + i]).collect();
    let enc_var: Vec<f64> = tensor_to_vec(t.model.encoder.free_log_var.as_ref().unwrap().val())
        .into_iter()
        .map(f64::exp)
        .collect();
    for i in 0..q {
        assert!(
            (enc_var[i] - exact_var[i]).abs() / exact_var[i] < 0.05,
            "posterior variance {i}: encoder {} vs exact {}",
            enc_var[i],
            exact_var[i]
        );
    }
    // The optimum's exact posterior covariance is diagonal (W's columns orthogonal), as the encoder's.
    let off: f64 = (0..q)
        .flat_map(|i| (0..q).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| (sigma2 * m_inv[i * q + j]).abs() / (exact_var[i] * exact_var[j]).sqrt())
        .fold(0.0, f64::max);
    assert!(off < 0.05, "exact posterior correlation {off}");
    let (enc_mean, _) =
        emvae::vae::diagnostics::encode_all(&model, &data, &PosteriorSource::Encoder, &plain);
    let mut worst: f64 = 0.0;
    for (n, row) in r.x.rows().enumerate() {
        let centred: Vec<f64> = row.iter().zip(&b).map(|(x, b)| x - b).collect();
        let wt: Vec<f64> = (0..q)
            .map(|i| (0..dd).map(|k| w[k * q + i] * centred[k]).sum())
            .collect();
        for i in 0..q {
            let exact_mean: f64 = (0..q).map(|j| m_inv[i * q + j] * wt[j]).sum();
            worst = worst.max((enc_mean[n * q + i] - exact_mean).abs() / exact_var[i].sqrt());
        }
    }
    println!(
        "largest encoder-vs-exact posterior mean difference: {worst:.4} posterior standard deviations"
    );
    assert!(
        worst < 0.1,
        "encoder mean off by {worst} posterior standard deviations"
    );
}

//! Diagnostics of a trained VAE on a data set: ELBO and its terms, KL per dimension, active units,
//! mutual information I(x; z), the importance-weighted NLL, and the amortization gap.

use burn::tensor::{Device, Tensor};
use emvae_core::tensor::{log_sum_exp, tensor_to_vec};
use serde::{Deserialize, Serialize};

use crate::amortized::{AmortizedModel, TrainData};
use crate::data::normal_noise;
use crate::guide::{LN_2PI, Posterior};
use crate::inference::PosteriorSource;
use crate::objective::{ObjectiveSpec, batch_terms};
use crate::refine::{Refinement, Rule, optimise_posteriors};

/// Threshold of Burda et al. 2015 for an active unit: `Cov_x(E_q[z_l | x]) >= 0.01`.
pub const ACTIVE_UNIT_THRESHOLD: f64 = 0.01;

/// An importance-weighted estimate of the negative log-likelihood.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IwEstimate {
    pub samples: usize,
    /// `-1/n sum_i log 1/K sum_k p(x_i, z_k) / q(z_k | x_i)`, nats per example.
    pub nll: f64,
    /// Standard error of `nll` over the data points.
    pub std_err: f64,
}

/// What [`diagnose`] reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    pub n: usize,
    /// Mean ELBO per example (nats), with `elbo_samples` samples per point.
    pub elbo: f64,
    /// Mean `E_q log p(x | z)`.
    pub reconstruction: f64,
    /// Mean `KL(q(z | x) || p(z))`.
    pub kl: f64,
    /// Mean analytic KL per latent dimension (standard normal prior only).
    pub kl_per_dim: Option<Vec<f64>>,
    /// Latent dimensions whose posterior mean varies across data (variance >= 0.01).
    pub active_units: usize,
    /// Variance over data of each dimension's posterior mean.
    pub posterior_mean_variance: Vec<f64>,
    /// I(x; z) under the aggregate posterior of these data (nats).
    pub mutual_information: f64,
    pub iw: Option<IwEstimate>,
}

/// Options of [`diagnose`].
#[derive(Debug, Clone, Copy)]
pub struct DiagnoseOptions {
    pub elbo_samples: usize,
    /// K of the importance-weighted NLL; `None` skips it.
    pub iw_samples: Option<usize>,
    pub seed: u64,
    /// Most points used for the mutual information (O(n^2)); a fixed subset beyond.
    pub mi_points: usize,
    /// Values one decoder evaluation may hold ([`EVAL_VALUES`] by default). The caller that chose the
    /// device sets it: a GPU with room evaluates far more rows per launch. The chunks, and so the
    /// importance samples drawn for them, depend on it.
    pub values_per_evaluation: usize,
}

impl Default for DiagnoseOptions {
    fn default() -> Self {
        Self {
            elbo_samples: 1,
            iw_samples: None,
            seed: 0,
            mi_points: 4096,
            values_per_evaluation: EVAL_VALUES,
        }
    }
}

/// Posteriors of all rows, computed in chunks: `(mean, log_var)` host, row-major `[n, latent]`.
pub fn encode_all<M: AmortizedModel>(
    model: &M,
    data: &M::Data,
    source: &PosteriorSource,
    device: &Device,
) -> (Vec<f64>, Vec<f64>) {
    let mut mean = Vec::new();
    let mut log_var = Vec::new();
    for rows in chunks(data.len(), 1024) {
        let q = source.posterior(model, &rows, &data.batch(&rows, 0, device), device);
        mean.extend(tensor_to_vec(q.mean));
        log_var.extend(tensor_to_vec(q.log_var));
    }
    (mean, log_var)
}

pub(crate) fn chunks(n: usize, size: usize) -> Vec<Vec<usize>> {
    (0..n)
        .collect::<Vec<_>>()
        .chunks(size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// Everything but the amortization gap, for `model` on a plain (non-autodiff) device, with posteriors
/// from `source`.
pub fn diagnose<M: AmortizedModel>(
    model: &M,
    data: &M::Data,
    source: &PosteriorSource,
    device: &Device,
    opts: DiagnoseOptions,
) -> Diagnostics {
    let n = data.len();
    let s = opts.elbo_samples.max(1);
    let (mut elbo, mut rec, mut kl) = (0.0, 0.0, 0.0);
    let mut kl_dims: Option<Vec<f64>> = None;
    let (mut mean, mut log_var) = (Vec::new(), Vec::new());
    let budget = opts.values_per_evaluation;
    for (c, rows) in chunks(n, decoder_rows(data, s, budget))
        .into_iter()
        .enumerate()
    {
        let x = data.batch(&rows, 0, device);
        let q = source.posterior(model, &rows, &x, device);
        mean.extend(tensor_to_vec(q.mean.clone()));
        log_var.extend(tensor_to_vec(q.log_var.clone()));
        let latent = q.mean.dims()[1];
        let eps = normal_noise(
            s * rows.len(),
            latent,
            opts.seed,
            b"diagnose-elbo",
            c as u64,
            device,
        );
        let t = batch_terms(model, &q, &x, eps, &ObjectiveSpec::elbo(s));
        elbo += tensor_to_vec(t.bound.sum())[0];
        rec += tensor_to_vec(t.rec.sum())[0];
        kl += tensor_to_vec(t.kl.sum())[0];
        if let Some(per_dim) = t.kl_per_dim {
            let sums = tensor_to_vec(per_dim.sum_dim(0));
            let acc = kl_dims.get_or_insert_with(|| vec![0.0; sums.len()]);
            acc.iter_mut().zip(sums).for_each(|(a, v)| *a += v);
        }
    }
    let latent = mean.len() / n.max(1);
    let mut variance = vec![0.0; latent];
    for l in 0..latent {
        let avg = (0..n).map(|i| mean[i * latent + l]).sum::<f64>() / n as f64;
        variance[l] = (0..n)
            .map(|i| (mean[i * latent + l] - avg).powi(2))
            .sum::<f64>()
            / n as f64;
    }
    let mi = mutual_information(
        &mean,
        &log_var,
        n,
        latent,
        opts.mi_points,
        opts.seed,
        device,
    );
    let iw = opts
        .iw_samples
        .map(|k| iw_nll(model, data, source, k, opts.seed, budget, device));
    Diagnostics {
        n,
        elbo: elbo / n as f64,
        reconstruction: rec / n as f64,
        kl: kl / n as f64,
        kl_per_dim: kl_dims.map(|v| v.into_iter().map(|x| x / n as f64).collect()),
        active_units: variance
            .iter()
            .filter(|&&v| v >= ACTIVE_UNIT_THRESHOLD)
            .count(),
        posterior_mean_variance: variance,
        mutual_information: mi,
        iw,
    }
}

/// `I(x; z) = E_x E_q(z|x) [log q(z | x) - log q(z)]` with the aggregate posterior
/// `q(z) = 1/n sum_j q(z | x_j)` over (up to `max_points` of) the data, one sample per point
/// (Hoffman & Johnson 2016; as He et al. 2019 measure it).
fn mutual_information(
    mean: &[f64],
    log_var: &[f64],
    n: usize,
    latent: usize,
    max_points: usize,
    seed: u64,
    device: &Device,
) -> f64 {
    let m = n.min(max_points.max(1));
    // A fixed, evenly spread subset when the data are many.
    let pick: Vec<usize> = (0..m).map(|i| i * n / m).collect();
    let sub = |v: &[f64]| -> Vec<f64> {
        pick.iter()
            .flat_map(|&i| v[i * latent..(i + 1) * latent].to_vec())
            .collect()
    };
    let (mu, lv) = (sub(mean), sub(log_var));
    let f = |v: Vec<f64>| -> Tensor<2> {
        Tensor::from_data(
            burn::tensor::TensorData::new(
                v.iter().map(|&x| x as f32).collect::<Vec<_>>(),
                [m, latent],
            ),
            device,
        )
    };
    let mu_t = f(mu.clone());
    let lv_t = f(lv.clone());
    let eps = normal_noise(m, latent, seed, b"diagnose-mi", 0, device);
    let z = mu_t.clone() + lv_t.clone().mul_scalar(0.5).exp() * eps;
    // Negative entropy of each q(z | x): -1/2 sum_l (log 2pi + 1 + log_var_l).
    let neg_entropy: f64 =
        -0.5 * (lv.iter().sum::<f64>() + (m * latent) as f64 * (1.0 + LN_2PI)) / m as f64;
    // log q(z_i | x_j) for all pairs, expanded into matrix products:
    // -1/2 [L log 2pi + sum lv_j + sum z_i^2 / s_j - 2 sum z_i mu_j / s_j + sum mu_j^2 / s_j].
    let inv = lv_t.clone().neg().exp();
    let const_j = (lv_t.sum_dim(1) + (mu_t.clone() * mu_t.clone() * inv.clone()).sum_dim(1))
        .add_scalar(latent as f64 * LN_2PI)
        .transpose();
    let mut log_qz = 0.0;
    for rows in chunks(m, 512) {
        let zi = z.clone().select(0, index(&rows, device));
        let quad = (zi.clone() * zi.clone()).matmul(inv.clone().transpose())
            - zi.matmul((mu_t.clone() * inv.clone()).transpose())
                .mul_scalar(2.0);
        let log_q_pairs = (quad + const_j.clone()).mul_scalar(-0.5);
        log_qz += tensor_to_vec(log_sum_exp(log_q_pairs, 1).sum())[0]
            - rows.len() as f64 * (m as f64).ln();
    }
    neg_entropy - log_qz / m as f64
}

fn index(rows: &[usize], device: &Device) -> Tensor<1, burn::tensor::Int> {
    let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    Tensor::from_data(burn::tensor::TensorData::new(ids, [rows.len()]), device)
}

/// The importance-weighted NLL with `k` samples per point from the posteriors of `source`, in
/// decoder evaluations of at most about `budget` values.
pub fn iw_nll<M: AmortizedModel>(
    model: &M,
    data: &M::Data,
    source: &PosteriorSource,
    k: usize,
    seed: u64,
    budget: usize,
    device: &Device,
) -> IwEstimate {
    let per_point = iw_log_likelihoods(model, data, source, k, seed, budget, device);
    let n = per_point.len() as f64;
    let mean = per_point.iter().sum::<f64>() / n;
    let var = per_point.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    IwEstimate {
        samples: k,
        nll: -mean,
        std_err: (var / n).sqrt(),
    }
}

/// Values a decoder evaluation holds at once by default (about 128 MB of f32: a sentence model's logits
/// over a 10,000-word vocabulary are that many values per few hundred tokens).
pub const EVAL_VALUES: usize = 1 << 25;

/// Rows per decoder evaluation with `samples` draws each: at most 512, fewer where the rows' decoder
/// outputs would exceed `budget` values.
fn decoder_rows<D: TrainData>(data: &D, samples: usize, budget: usize) -> usize {
    (budget / (data.row_cost().max(1) * samples.max(1))).clamp(1, 512)
}

/// `log 1/K sum_k p(x_i, z_k) / q(z_k | x_i)` for every row.
///
/// Rows are taken in chunks, and the `K` samples of a chunk in blocks, so that a decoder evaluation
/// holds about `budget` values; blocks are combined in log space.
pub fn iw_log_likelihoods<M: AmortizedModel>(
    model: &M,
    data: &M::Data,
    source: &PosteriorSource,
    k: usize,
    seed: u64,
    budget: usize,
    device: &Device,
) -> Vec<f64> {
    let latent = model.prior().latent_dim;
    let cost = data.row_cost().max(latent).max(1);
    let rows_per_chunk = (budget / (k * cost).max(1)).max(1);
    let block = (budget / cost).clamp(1, k);
    let mut out = Vec::with_capacity(data.len());
    for (c, rows) in chunks(data.len(), rows_per_chunk).into_iter().enumerate() {
        let b = rows.len();
        let x = data.batch(&rows, 0, device);
        let q: Posterior = source.posterior(model, &rows, &x, device);
        let eps = normal_noise(k * b, latent, seed, b"diagnose-iw", c as u64, device);
        let mut parts = Vec::new();
        let mut start = 0;
        while start < k {
            let s = block.min(k - start);
            let e = eps.clone().slice([start * b..(start + s) * b, 0..latent]);
            let z = q.sample(e.clone(), s);
            let log_lik = model.log_likelihood(&x, z.clone(), s);
            parts.push(
                (log_lik + model.prior().log_prob(z) - q.log_prob_of_noise(e, s)).reshape([s, b]),
            );
            start += s;
        }
        let log_w = Tensor::cat(parts, 0);
        let bound = log_sum_exp(log_w, 0).sub_scalar((k as f64).ln());
        out.extend(tensor_to_vec(bound));
    }
    out
}

/// The amortization gap: mean ELBO with posteriors optimised per point (Adam, `steps` steps from the
/// encoder's) minus the encoder's mean ELBO, both with `samples` samples. `model` on an autodiff
/// device; rows are taken in chunks whose decoder outputs hold about `budget` values. Returns
/// `(encoder_elbo, optimised_elbo)`.
#[allow(clippy::too_many_arguments)]
pub fn amortization_gap<M: AmortizedModel>(
    model: &M,
    data: &M::Data,
    steps: usize,
    lr: f64,
    samples: usize,
    seed: u64,
    budget: usize,
    device: &Device,
) -> (f64, f64) {
    let (mut enc, mut opt) = (0.0, 0.0);
    for (c, rows) in chunks(data.len(), decoder_rows(data, samples, budget))
        .into_iter()
        .enumerate()
    {
        let x = data.batch(&rows, 0, device);
        let q = model.posterior(&x).detach();
        let refinement = Refinement {
            steps,
            rule: Rule::Adam { lr },
            samples,
            seed,
            stream: b"gap",
        };
        let refined = optimise_posteriors(model, &x, q.clone(), refinement);
        let latent = q.mean.dims()[1];
        let spec = ObjectiveSpec::elbo(samples);
        let eval = |post: &Posterior| {
            let eps = normal_noise(
                samples * rows.len(),
                latent,
                seed,
                b"gap-eval",
                c as u64,
                device,
            );
            tensor_to_vec(batch_terms(model, post, &x, eps, &spec).bound.sum())[0]
        };
        enc += eval(&q);
        opt += eval(&refined);
    }
    (enc / data.len() as f64, opt / data.len() as f64)
}

//! Classifying sentences with a model that has a label latent: the guide's q(y | x), and the model's own
//! posterior p(y | x) by importance sampling over z.
//!
//! With `z_s ~ q(z | x)` and `w_s = p(z_s) / q(z_s | x)`,
//! `p(x, y) ~= 1/S sum_s w_s p(y) p(x | y, z_s)`, so `p(y | x) = softmax_y log sum_s exp(log w_s +
//! log p(y) + log p(x | y, z_s))`.

use burn::tensor::{Device, Tensor, TensorData, activation};
use emvae_core::rng::rng_for;
use emvae_core::tensor::{log_sum_exp, tensor_to_vec};
use emvae_vae::AmortizedModel;
use rand_distr::{Distribution, StandardNormal};

use crate::batch::TextData;
use crate::dataset::TextBatch;
use crate::model::TextVae;

/// Most logits (sentences x samples x classes x tokens x vocabulary) one forward pass holds.
const LOGIT_BUDGET: usize = 1 << 25;

/// Batches of `data` whose forward passes over `copies` copies of each sentence (samples times classes)
/// and a vocabulary of `vocab` hold at most [`LOGIT_BUDGET`] logits.
fn batches(
    data: &TextData,
    copies: usize,
    vocab: usize,
    device: &Device,
) -> impl Iterator<Item = TextBatch> {
    let longest = data.sentences.iter().map(Vec::len).max().unwrap_or(0) + 1;
    let chunk = (LOGIT_BUDGET / (copies.max(1) * longest * vocab.max(1))).clamp(1, 256);
    let rows: Vec<usize> = (0..data.len()).collect();
    rows.chunks(chunk)
        .map(|c| TextBatch {
            tokens: data.batch(c, device),
            noise: None,
        })
        .collect::<Vec<_>>()
        .into_iter()
}

/// q(y | x) per sentence of `data`: one probability per class. Empty rows for a model without a label
/// latent.
pub fn guide_probabilities(model: &TextVae, data: &TextData, device: &Device) -> Vec<Vec<f64>> {
    let k = model.n_classes();
    let mut out = Vec::with_capacity(data.len());
    for batch in batches(data, 1, 1, device) {
        let Some(logits) = model.class_logits(&batch.tokens) else {
            out.extend(std::iter::repeat_n(Vec::new(), batch.tokens.lengths.len()));
            continue;
        };
        let p = tensor_to_vec(activation::softmax(logits, 1));
        out.extend(p.chunks(k).map(<[f64]>::to_vec));
    }
    out
}

/// The model's posterior p(y | x) per sentence of `data` by importance sampling with `samples` draws
/// of z from the guide (noise from `seed`).
pub fn model_probabilities(
    model: &TextVae,
    data: &TextData,
    samples: usize,
    seed: u64,
    device: &Device,
) -> Vec<Vec<f64>> {
    let k = model.n_classes();
    let s = samples.max(1);
    let mut out = Vec::with_capacity(data.len());
    let copies = s * k;
    for (index, batch) in batches(data, copies, model.shape.vocab_size, device).enumerate() {
        let q = model.posterior(&batch);
        let [b, l] = q.mean.dims();
        let mut rng = rng_for(seed, b"classify-noise", index as u64);
        let noise: Vec<f32> = (0..s * b * l)
            .map(|_| {
                let v: f64 = StandardNormal.sample(&mut rng);
                v as f32
            })
            .collect();
        let eps = Tensor::<2>::from_data(TensorData::new(noise, [s * b, l]), device);
        let z = q.sample(eps.clone(), s);
        let log_w = model.prior().log_prob(z.clone()) - q.log_prob_of_noise(eps, s);
        let joint = model.class_log_joint(&batch, z, s) + log_w.reshape([1, s * b]);
        // [classes, S, B] -> log-sum over the samples -> [B, classes].
        let log_joint = log_sum_exp(joint.reshape([k, s, b]), 1).reshape([k, b]);
        let p = tensor_to_vec(activation::softmax(log_joint, 0).transpose());
        out.extend(p.chunks(k).map(<[f64]>::to_vec));
    }
    out
}

/// The guide's most probable class per sentence of `data` (zeros without a label latent).
pub fn guide_classes(model: &TextVae, data: &TextData, device: &Device) -> Vec<usize> {
    guide_probabilities(model, data, device)
        .iter()
        .map(|p| if p.is_empty() { 0 } else { argmax(p) })
        .collect()
}

/// Index of the largest entry.
pub fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (j, &x) in p.iter().enumerate() {
        if x > p[best] {
            best = j;
        }
    }
    best
}

/// Fraction of the labelled rows whose argmax is their label, and how many were labelled; `rows`
/// restricts the count (all rows when `None`).
pub fn accuracy(
    probabilities: &[Vec<f64>],
    labels: &[Option<u32>],
    rows: Option<&[usize]>,
) -> (f64, usize) {
    let all: Vec<usize> = (0..labels.len()).collect();
    let rows = rows.unwrap_or(&all);
    let (mut right, mut n) = (0usize, 0usize);
    for &r in rows {
        if let (Some(y), Some(p)) = (labels[r], probabilities.get(r))
            && !p.is_empty()
        {
            n += 1;
            right += usize::from(argmax(p) == y as usize);
        }
    }
    (right as f64 / n.max(1) as f64, n)
}

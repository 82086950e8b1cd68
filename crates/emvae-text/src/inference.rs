//! Using a trained sentence VAE: posteriors of sentences (encode), sentences from latent codes (decode:
//! greedy, sampled with a temperature, or beam search), samples from the prior, reconstructions and
//! Bowman et al. 2016's homotopies between two sentences.

use burn::tensor::{Device, Int, Tensor, TensorData};
use emvae_core::rng::rng_for;
use emvae_core::tensor::tensor_to_vec;
use emvae_vae::AmortizedModel;
use rand::Rng as _;

use crate::batch::TextData;
use crate::dataset::TextBatch;
use crate::model::TextVae;
use crate::rnn::RnnState;
use crate::vocab::{BOS, EOS};

/// How words are chosen from p(x_t | x_<t, z).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    /// The most probable word at each step.
    Greedy,
    /// A draw from the softmax of the logits divided by `temperature`.
    Sample { temperature: f64, seed: u64 },
    /// Beam search of this width; the hypothesis with the best log-probability per word wins.
    Beam { width: usize },
}

/// Posterior means and log-variances, row-major `[n, latent]`, of the sentences of `data`.
pub fn encode(model: &TextVae, data: &TextData, device: &Device) -> (Vec<f64>, Vec<f64>) {
    let (mut mean, mut log_var) = (Vec::new(), Vec::new());
    let rows: Vec<usize> = (0..data.len()).collect();
    for chunk in rows.chunks(256) {
        let batch = TextBatch {
            tokens: data.batch(chunk, device),
            noise: None,
        };
        let q = model.posterior(&batch);
        mean.extend(tensor_to_vec(q.mean));
        log_var.extend(tensor_to_vec(q.log_var));
    }
    (mean, log_var)
}

fn states_select(states: Vec<RnnState>, idx: &Tensor<1, Int>) -> Vec<RnnState> {
    states
        .into_iter()
        .map(|s| RnnState {
            h: s.h.select(0, idx.clone()),
            c: s.c.map(|c| c.select(0, idx.clone())),
        })
        .collect()
}

fn ids_tensor(ids: &[u32], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    Tensor::from_data(TensorData::new(v, [ids.len()]), device)
}

/// `log softmax` of host logits row `row` (width `v`).
fn log_softmax_row(logits: &[f64], row: usize, v: usize) -> Vec<f64> {
    let l = &logits[row * v..(row + 1) * v];
    let max = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + l.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
    l.iter().map(|x| x - lse).collect()
}

/// Word ids (without `<eos>`) decoded from latent codes `z` `[n, latent]`, at most `max_len` words.
pub fn decode(model: &TextVae, z: Tensor<2>, decoding: Decoding, max_len: usize) -> Vec<Vec<u32>> {
    match decoding {
        Decoding::Beam { width } if width > 1 => {
            let n = z.dims()[0];
            (0..n)
                .map(|i| {
                    let zi = z.clone().slice([i..i + 1, 0..z.dims()[1]]);
                    beam(model, zi, width, max_len)
                })
                .collect()
        }
        _ => step_by_step(model, z, decoding, max_len),
    }
}

/// Greedy or sampled decoding of all rows at once.
fn step_by_step(
    model: &TextVae,
    z: Tensor<2>,
    decoding: Decoding,
    max_len: usize,
) -> Vec<Vec<u32>> {
    let n = z.dims()[0];
    let device = z.device();
    let v = model.shape.vocab_size;
    let mut states = model.initial_states(&z);
    let mut prev = vec![BOS; n];
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut done = vec![false; n];
    let mut rngs: Vec<_> = (0..n)
        .map(|i| match decoding {
            Decoding::Sample { seed, .. } => Some(rng_for(seed, b"sample-words", i as u64)),
            _ => None,
        })
        .collect();
    for _ in 0..=max_len {
        let (logits, next) = model.next_logits(ids_tensor(&prev, &device), &z, states);
        states = next;
        let host = tensor_to_vec(logits);
        for i in 0..n {
            if done[i] {
                continue;
            }
            let row = &host[i * v..(i + 1) * v];
            let word = match (decoding, rngs[i].as_mut()) {
                (Decoding::Sample { temperature, .. }, Some(rng)) => {
                    let t = temperature.max(1e-6);
                    let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let w: Vec<f64> = row.iter().map(|x| ((x - max) / t).exp()).collect();
                    let total: f64 = w.iter().sum();
                    let mut u = rng.random::<f64>() * total;
                    let mut pick = v - 1;
                    for (j, wj) in w.iter().enumerate() {
                        u -= wj;
                        if u <= 0.0 {
                            pick = j;
                            break;
                        }
                    }
                    pick as u32
                }
                _ => argmax(row) as u32,
            };
            if word == EOS || out[i].len() >= max_len {
                done[i] = true;
            } else {
                out[i].push(word);
            }
            prev[i] = word;
        }
        if done.iter().all(|&d| d) {
            break;
        }
    }
    out
}

fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (j, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = j;
        }
    }
    best
}

/// Beam search for one latent code `z` `[1, latent]`.
fn beam(model: &TextVae, z: Tensor<2>, width: usize, max_len: usize) -> Vec<u32> {
    let device = z.device();
    let v = model.shape.vocab_size;
    // Live hypotheses: (words, log-probability).
    let mut live: Vec<(Vec<u32>, f64)> = vec![(Vec::new(), 0.0)];
    let mut finished: Vec<(Vec<u32>, f64)> = Vec::new();
    let mut states = model.initial_states(&z);
    let l = z.dims()[1];
    for step in 0..=max_len {
        let k = live.len();
        let zk = z.clone().expand([k, l]);
        let prev: Vec<u32> = live
            .iter()
            .map(|(w, _)| w.last().copied().unwrap_or(BOS))
            .collect();
        let (logits, next) = model.next_logits(ids_tensor(&prev, &device), &zk, states);
        let host = tensor_to_vec(logits);
        let mut candidates: Vec<(usize, u32, f64)> = Vec::with_capacity(k * width);
        for (i, (_, score)) in live.iter().enumerate() {
            let lp = log_softmax_row(&host, i, v);
            let mut order: Vec<usize> = (0..v).collect();
            order.select_nth_unstable_by(width.min(v) - 1, |a, b| lp[*b].total_cmp(&lp[*a]));
            for &j in order.iter().take(width) {
                candidates.push((i, j as u32, score + lp[j]));
            }
        }
        candidates.sort_by(|a, b| b.2.total_cmp(&a.2));
        let mut keep = Vec::new();
        let mut new_live = Vec::new();
        for (i, word, score) in candidates {
            if new_live.len() >= width {
                break;
            }
            if word == EOS || step == max_len {
                finished.push((live[i].0.clone(), score));
            } else {
                let mut words = live[i].0.clone();
                words.push(word);
                new_live.push((words, score));
                keep.push(i as u32);
            }
        }
        if new_live.is_empty() || finished.len() >= width {
            break;
        }
        states = states_select(next, &ids_tensor(&keep, &device));
        live = new_live;
    }
    let per_word = |(w, s): &(Vec<u32>, f64)| s / (w.len() + 1) as f64;
    finished
        .iter()
        .chain(live.iter())
        .max_by(|a, b| per_word(a).total_cmp(&per_word(b)))
        .map(|(w, _)| w.clone())
        .unwrap_or_default()
}

/// Latent codes on the segment from `a` to `b` (`steps` points, both ends included):
/// `z_i = (1 - t_i) a + t_i b`, `t_i = i / (steps - 1)`.
pub fn homotopy(a: &[f64], b: &[f64], steps: usize) -> Vec<Vec<f64>> {
    (0..steps)
        .map(|i| {
            let t = if steps > 1 {
                i as f64 / (steps - 1) as f64
            } else {
                0.0
            };
            a.iter()
                .zip(b)
                .map(|(x, y)| (1.0 - t) * x + t * y)
                .collect()
        })
        .collect()
}

/// A `[n, latent]` tensor of host rows.
pub fn latent_tensor(rows: &[Vec<f64>], device: &Device) -> Tensor<2> {
    let l = rows.first().map_or(0, Vec::len);
    let v: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, [rows.len(), l]), device)
}

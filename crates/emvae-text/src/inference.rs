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

/// Word ids (without `<eos>`) decoded from the decoder's conditionings `z` `[n, c]` (latent codes, with
/// y one-hot beside them for a label latent), at most `max_len` words, with the run's label guidance
/// (`[text.label] guidance`, see [`decode_with_guidance`]).
pub fn decode(model: &TextVae, z: Tensor<2>, decoding: Decoding, max_len: usize) -> Vec<Vec<u32>> {
    decode_with_guidance(model, z, decoding, model.shape.guidance, max_len)
}

/// [`decode`] with label guidance `guidance` (ignored without a label latent): each step's
/// log-probabilities become `log p(x_t | x_<t, y, z) + g (log p(x_t | x_<t, y, z) - mean_{y' != y}
/// log p(x_t | x_<t, y', z))`, renormalised, the other classes' decoders following the same words.
/// This is classifier-free guidance (Ho & Salimans 2022) with the other classes as the contrast: it
/// sharpens what distinguishes y; 0 decodes from the model's own p(x | y, z).
pub fn decode_with_guidance(
    model: &TextVae,
    z: Tensor<2>,
    decoding: Decoding,
    guidance: f64,
    max_len: usize,
) -> Vec<Vec<u32>> {
    let stepper = Stepper::new(model, guidance);
    match decoding {
        Decoding::Beam { width } if width > 1 => {
            let n = z.dims()[0];
            (0..n)
                .map(|i| {
                    let zi = z.clone().slice([i..i + 1, 0..z.dims()[1]]);
                    beam(&stepper, zi, width, max_len)
                })
                .collect()
        }
        _ => step_by_step(&stepper, z, decoding, max_len),
    }
}

/// One decoding step at a time for `n` rows, with label guidance when it applies: the decoder then
/// runs `groups` copies of each row, copy `j` conditioned on the row's class shifted by `j`.
struct Stepper<'a> {
    model: &'a TextVae,
    guidance: f64,
    groups: usize,
}

impl<'a> Stepper<'a> {
    fn new(model: &'a TextVae, guidance: f64) -> Self {
        let k = model.n_classes();
        let groups = if k >= 2 && guidance != 0.0 { k } else { 1 };
        Self {
            model,
            guidance,
            groups,
        }
    }

    /// The conditionings of every copy, group-major `[groups * n, c]`.
    fn stacked(&self, cond: &Tensor<2>) -> Tensor<2> {
        if self.groups == 1 {
            return cond.clone();
        }
        let [n, c] = cond.dims();
        let (l, k) = (self.model.shape.latent, self.groups);
        let z = cond.clone().slice([0..n, 0..l]);
        let y = cond.clone().slice([0..n, l..c]);
        let copies = (0..k)
            .map(|j| {
                // Column c of the copy is column (c - j) mod k of y: class y becomes y + j.
                let rolled = if j == 0 {
                    y.clone()
                } else {
                    Tensor::cat(
                        vec![
                            y.clone().slice([0..n, k - j..k]),
                            y.clone().slice([0..n, 0..k - j]),
                        ],
                        1,
                    )
                };
                Tensor::cat(vec![z.clone(), rolled], 1)
            })
            .collect();
        Tensor::cat(copies, 0)
    }

    fn initial_states(&self, cond: &Tensor<2>) -> Vec<RnnState> {
        self.model.initial_states(&self.stacked(cond))
    }

    /// Guided log-probabilities of the next word `[n * vocab]` after `prev`, and the next states.
    fn next(
        &self,
        prev: &[u32],
        cond: &Tensor<2>,
        states: Vec<RnnState>,
    ) -> (Vec<f64>, Vec<RnnState>) {
        let device = cond.device();
        let v = self.model.shape.vocab_size;
        let n = prev.len();
        let ids: Vec<u32> = (0..self.groups)
            .flat_map(|_| prev.iter().copied())
            .collect();
        let (logits, next) =
            self.model
                .next_logits(ids_tensor(&ids, &device), &self.stacked(cond), states);
        let host = tensor_to_vec(logits);
        let mut out = Vec::with_capacity(n * v);
        for i in 0..n {
            let own = log_softmax_row(&host, i, v);
            if self.groups == 1 {
                out.extend(own);
                continue;
            }
            let mut others = vec![0.0; v];
            for g in 1..self.groups {
                for (o, x) in others.iter_mut().zip(log_softmax_row(&host, g * n + i, v)) {
                    *o += x / (self.groups - 1) as f64;
                }
            }
            let guided: Vec<f64> = own
                .iter()
                .zip(&others)
                .map(|(a, b)| a + self.guidance * (a - b))
                .collect();
            out.extend(log_softmax_row(&guided, 0, v));
        }
        (out, next)
    }

    /// The states of rows `keep` (of `n`) in every copy.
    fn select(
        &self,
        states: Vec<RnnState>,
        keep: &[u32],
        n: usize,
        device: &Device,
    ) -> Vec<RnnState> {
        let idx: Vec<u32> = (0..self.groups)
            .flat_map(|g| keep.iter().map(move |&i| i + (g * n) as u32))
            .collect();
        states_select(states, &ids_tensor(&idx, device))
    }
}

/// Greedy or sampled decoding of all rows at once.
fn step_by_step(
    stepper: &Stepper,
    z: Tensor<2>,
    decoding: Decoding,
    max_len: usize,
) -> Vec<Vec<u32>> {
    let n = z.dims()[0];
    let v = stepper.model.shape.vocab_size;
    let mut states = stepper.initial_states(&z);
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
        let (host, next) = stepper.next(&prev, &z, states);
        states = next;
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
fn beam(stepper: &Stepper, z: Tensor<2>, width: usize, max_len: usize) -> Vec<u32> {
    let device = z.device();
    let v = stepper.model.shape.vocab_size;
    // Live hypotheses: (words, log-probability).
    let mut live: Vec<(Vec<u32>, f64)> = vec![(Vec::new(), 0.0)];
    let mut finished: Vec<(Vec<u32>, f64)> = Vec::new();
    let mut states = stepper.initial_states(&z);
    let l = z.dims()[1];
    for step in 0..=max_len {
        let k = live.len();
        let zk = z.clone().expand([k, l]);
        let prev: Vec<u32> = live
            .iter()
            .map(|(w, _)| w.last().copied().unwrap_or(BOS))
            .collect();
        let (host, next) = stepper.next(&prev, &zk, states);
        let mut candidates: Vec<(usize, u32, f64)> = Vec::with_capacity(k * width);
        for (i, (_, score)) in live.iter().enumerate() {
            let lp = &host[i * v..(i + 1) * v];
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
        states = stepper.select(next, &keep, k, &device);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::labelled_model;

    fn assert_guided(got: &[f64], own: &[f64], other: &[f64], g: f64, v: usize) {
        for i in 0..got.len() / v {
            let raw: Vec<f64> = (0..v)
                .map(|w| own[i * v + w] + g * (own[i * v + w] - other[i * v + w]))
                .collect();
            let want = log_softmax_row(&raw, 0, v);
            for w in 0..v {
                let a = got[i * v + w];
                assert!(
                    (a - want[w]).abs() < 1e-5,
                    "row {i} word {w}: {a} vs {}",
                    want[w]
                );
            }
        }
    }

    /// Each guided step is `log p(. | y) + g (log p(. | y) - log p(. | other y))`, renormalised, with
    /// the other class's decoder following the same words, also after a beam keeps some rows.
    #[test]
    fn guidance_contrasts_each_step_with_the_other_class_following_the_same_words() {
        let (m, device) = labelled_model(1.0, 0.1, false, 0, 7);
        let v = m.shape.vocab_size;
        let z = latent_tensor(&[vec![0.3, -0.2, 0.9], vec![-1.0, 0.5, 0.1]], &device);
        let own_c = m.condition(z.clone(), &[1, 0]);
        let other_c = m.condition(z, &[0, 1]);
        let plain = Stepper::new(&m, 0.0);
        assert_eq!(plain.groups, 1);
        let (own1, own_s) = plain.next(&[BOS, BOS], &own_c, plain.initial_states(&own_c));
        let (other1, other_s) = plain.next(&[BOS, BOS], &other_c, plain.initial_states(&other_c));
        let (own2, _) = plain.next(&[4, 5], &own_c, own_s);
        let (other2, _) = plain.next(&[4, 5], &other_c, other_s);
        let g = 2.0;
        let guided = Stepper::new(&m, g);
        let (got1, s) = guided.next(&[BOS, BOS], &own_c, guided.initial_states(&own_c));
        assert_guided(&got1, &own1, &other1, g, v);
        assert!(got1.iter().zip(&own1).any(|(a, b)| (a - b).abs() > 1e-3));
        let (got2, _) = guided.next(&[4, 5], &own_c, s.clone());
        assert_guided(&got2, &own2, &other2, g, v);
        // A beam keeping row 1 alone: every copy keeps its row 1.
        let kept = guided.select(s, &[1], 2, &device);
        let row1 = own_c.clone().slice([1..2, 0..own_c.dims()[1]]);
        let (got_kept, _) = guided.next(&[5], &row1, kept);
        assert_guided(&got_kept, &own2[v..], &other2[v..], g, v);
        // Decoding with guidance 0 is the unguided decoder's.
        let greedy = |g| decode_with_guidance(&m, own_c.clone(), Decoding::Greedy, g, 6);
        assert_eq!(greedy(0.0), decode(&m, own_c.clone(), Decoding::Greedy, 6));
    }
}

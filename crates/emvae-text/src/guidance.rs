//! Calibrating the label guidance of decoding ([`crate::inference::decode_with_guidance`]) to a trained
//! model.
//!
//! How much guidance samples need to carry their class depends on the model: a decoder whose classes
//! already differ sharply needs none (and guidance would only repeat each class's words), one that
//! barely uses y needs a lot. So the guidance is the smallest value of a grid at which the guide's own
//! classifier q(y | x) assigns at least [`TARGET`] of each class's samples (z from the prior, words
//! drawn at temperature 1, and decoded greedily: the worst class and decoding counts) to that class;
//! the largest where none does. The guide is more easily convinced than an independent judge (it is
//! fitted to the same model), hence the high target and the worst case.

use burn::tensor::Device;
use emvae_vae::AmortizedModel;
use emvae_vae::inference::sample_prior;

use crate::batch::TextData;
use crate::classify::{argmax, guide_probabilities};
use crate::inference::{Decoding, decode_with_guidance};
use crate::model::TextVae;

/// The guidance values tried, smallest first.
pub const GRID: [f64; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
/// The share of each class's samples q(y | x) must assign to it, at temperature 1 and greedily.
pub const TARGET: f64 = 0.95;
/// Samples per class at each grid point.
pub const SAMPLES_PER_CLASS: usize = 50;
/// Longest sample, in words.
pub const MAX_WORDS: usize = 50;

/// The chosen guidance and, at each value tried, q(y | x)'s agreement with the samples' classes (the
/// worst class and decoding).
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub guidance: f64,
    pub tried: Vec<(f64, f64)>,
}

/// The decodings whose samples are checked for their class, by name: words drawn at temperature 1
/// (noise from `seed`), and greedy.
pub fn checked_decodings(seed: u64) -> [(&'static str, Decoding); 2] {
    [
        (
            "temperature_1",
            Decoding::Sample {
                temperature: 1.0,
                seed,
            },
        ),
        ("greedy", Decoding::Greedy),
    ]
}

/// `per_class` sentences per class of `model` (which has a label latent), z drawn from the prior with
/// `seed`, decoded with `decoding` and `guidance` (at most [`MAX_WORDS`] words): the classes, sample
/// `i` of class `i % classes`, and the sentences.
pub fn conditional_samples(
    model: &TextVae,
    per_class: usize,
    decoding: Decoding,
    guidance: f64,
    seed: u64,
    device: &Device,
) -> (Vec<usize>, Vec<Vec<u32>>) {
    let k = model.n_classes();
    let n = per_class * k;
    let classes: Vec<usize> = (0..n).map(|i| i % k).collect();
    let z = sample_prior(model.prior(), n, seed, device);
    let cond = model.condition(z, &classes);
    let sentences = decode_with_guidance(model, cond, decoding, guidance, MAX_WORDS);
    (classes, sentences)
}

/// Calibrates the guidance of `model` (which has a label latent; 0 without one) on samples drawn from
/// `seed`.
pub fn calibrate_guidance(model: &TextVae, seed: u64, device: &Device) -> Calibration {
    let k = model.n_classes();
    if k == 0 {
        return Calibration {
            guidance: 0.0,
            tried: Vec::new(),
        };
    }
    let mut tried = Vec::new();
    for &g in &GRID {
        let mut agreement = 1.0f64;
        for (_, decoding) in checked_decodings(seed) {
            let (classes, sentences) =
                conditional_samples(model, SAMPLES_PER_CLASS, decoding, g, seed, device);
            let data = TextData {
                sentences,
                labels: None,
                label_names: Vec::new(),
            };
            let q = guide_probabilities(model, &data, device);
            for class in 0..k {
                let right = (class..classes.len())
                    .step_by(k)
                    .filter(|&i| argmax(&q[i]) == class)
                    .count();
                agreement = agreement.min(right as f64 / SAMPLES_PER_CLASS as f64);
            }
        }
        tried.push((g, agreement));
        if agreement >= TARGET {
            return Calibration { guidance: g, tried };
        }
    }
    Calibration {
        guidance: GRID[GRID.len() - 1],
        tried,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::labelled_model;
    use burn::module::Param;
    use burn::tensor::{Tensor, TensorData};

    /// A model whose word bias favours word 4 under "pos" and word 5 under "neg" by `shift` nats, and
    /// whose q(y | x) reads those two words.
    fn model(shift: f32) -> (TextVae, Device) {
        let (mut m, device) = labelled_model(1.0, 0.1, true, 0, 11);
        let table = |v: Vec<f32>, shape: [usize; 2]| {
            Param::from_tensor(Tensor::from_data(TensorData::new(v, shape), &device))
        };
        let mut u = vec![0f32; 24];
        (u[5], u[12 + 4]) = (shift, shift);
        m.label_bias = Some(table(u, [2, 12]));
        let mut words = vec![0f32; 24];
        (words[4 * 2 + 1], words[5 * 2]) = (5.0, 5.0);
        let enc = m.encoder.as_mut().unwrap();
        enc.classifier_words = Some(table(words, [12, 2]));
        (m, device)
    }

    fn check(c: &Calibration) {
        let (last, before) = c.tried.split_last().unwrap();
        assert_eq!(last.0, c.guidance, "{c:?}");
        assert!(before.iter().all(|(_, a)| *a < TARGET), "{c:?}");
        assert!(
            last.1 >= TARGET || c.guidance == GRID[GRID.len() - 1],
            "{c:?}"
        );
    }

    /// A decoder whose classes differ sharply needs no guidance; a weak one gets the smallest that
    /// makes q recognise the samples' classes, and it does.
    #[test]
    fn the_smallest_sufficient_guidance_is_chosen() {
        let (m, device) = model(8.0);
        let sharp = calibrate_guidance(&m, 0, &device);
        check(&sharp);
        assert_eq!(sharp.guidance, 0.0, "{sharp:?}");
        let (m, device) = model(1.5);
        let weak = calibrate_guidance(&m, 0, &device);
        check(&weak);
        assert!(weak.guidance > 0.0, "{weak:?}");
        assert!(weak.tried.last().unwrap().1 >= TARGET, "{weak:?}");
    }
}

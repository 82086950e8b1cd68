//! The guide's classifier q(y | x) refitted to the model's posterior at the end of training.
//!
//! During training q(y | x) learns from the labelled sentences and, on unlabelled ones, from the
//! model's posterior p(y | x, z) at one draw of z, a moving and noisy target that starts out uniform;
//! on a real corpus it stays near a regression on the labels alone while the model's own posterior is
//! several points better. So once the bound is trained, the E-step over y is done properly and q's head
//! is fitted to it, the wake update of the guide in reweighted wake-sleep run to convergence:
//!
//! 1. E-step: `t_i = p(y | x_i)` for every unlabelled training sentence, by importance sampling over z
//!    ([`crate::classify::model_probabilities`]); a labelled sentence's target is its label.
//! 2. M-step for q: with the embeddings fixed, q's logits are linear in its features (the bag of words
//!    and the mean embeddings, [`TextVae::class_logits`]), so minimising
//!    `C sum_i KL(t_i || q(y | x_i)) + 1/2 ||weights||^2` is a convex logistic regression on soft
//!    targets ([`Logistic`]), solved to its optimum.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use emvae_core::tensor::tensor_to_vec;

use crate::baseline::{Logistic, LogisticRow};
use crate::batch::TextData;
use crate::classify::{argmax, guide_probabilities, model_probabilities};
use crate::dataset::TextBatch;
use crate::model::TextVae;

/// What a refit did: on how many unlabelled sentences, and how often q's most probable class was the
/// model's before and after.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefitReport {
    pub labelled: usize,
    pub unlabelled: usize,
    pub agreement_before: f64,
    pub agreement_after: f64,
}

/// Sentences per forward pass for the dense features.
const CHUNK: usize = 256;

impl TextVae {
    /// q(y | x)'s head fitted to the model's posterior on `data` (its labels observed, its unlabelled
    /// sentences' targets p(y | x) from `samples` importance samples drawn from `seed`), with the
    /// penalty `1 / c`. `None` without a label latent or without an unlabelled sentence.
    pub fn fit_classifier_to_posterior(
        &self,
        data: &TextData,
        samples: usize,
        c: f64,
        seed: u64,
        device: &Device,
    ) -> Option<(Logistic, RefitReport)> {
        let k = self.n_classes();
        let observed = data
            .labels
            .clone()
            .unwrap_or_else(|| vec![None; data.len()]);
        let free: Vec<usize> = (0..data.len()).filter(|&r| observed[r].is_none()).collect();
        if k == 0 || free.is_empty() {
            return None;
        }
        let unlabelled = TextData {
            sentences: free.iter().map(|&r| data.sentences[r].clone()).collect(),
            labels: None,
            label_names: data.label_names.clone(),
        };
        let posterior = model_probabilities(self, &unlabelled, samples, seed, device);
        let q_before = guide_probabilities(self, &unlabelled, device);
        let mut targets: Vec<Vec<f64>> = observed
            .iter()
            .map(|y| match y {
                Some(y) => (0..k)
                    .map(|j| f64::from(u8::from(j == *y as usize)))
                    .collect(),
                None => Vec::new(),
            })
            .collect();
        for (&r, p) in free.iter().zip(&posterior) {
            targets[r].clone_from(p);
        }
        let dense = self.dense_class_features(data, device)?;
        let width = dense.len() / data.len().max(1);
        let rows: Vec<LogisticRow> = (0..data.len())
            .map(|r| LogisticRow {
                words: data.bag_of_words(r).iter().map(|&w| w as usize).collect(),
                dense: dense[r * width..(r + 1) * width].to_vec(),
                target: std::mem::take(&mut targets[r]),
            })
            .collect();
        let fit = Logistic::fit(&rows, self.shape.vocab_size, width, k, c);
        let agree = |q: &dyn Fn(usize) -> Vec<f64>| {
            let same = free
                .iter()
                .enumerate()
                .filter(|&(i, _)| argmax(&q(i)) == argmax(&posterior[i]))
                .count();
            same as f64 / free.len() as f64
        };
        let report = RefitReport {
            labelled: data.len() - free.len(),
            unlabelled: free.len(),
            agreement_before: agree(&|i| q_before[i].clone()),
            agreement_after: agree(&|i| {
                let row = &rows[free[i]];
                fit.probabilities_of(&row.words, &row.dense)
            }),
        };
        Some((fit, report))
    }

    /// [`Self::class_features`] of every sentence of `data`, row-major `[n, width]`.
    fn dense_class_features(&self, data: &TextData, device: &Device) -> Option<Vec<f64>> {
        let rows: Vec<usize> = (0..data.len()).collect();
        let mut out = Vec::new();
        for chunk in rows.chunks(CHUNK) {
            let batch = TextBatch {
                tokens: data.batch(chunk, device),
                noise: None,
            };
            out.extend(tensor_to_vec(self.class_features(&batch.tokens)?));
        }
        Some(out)
    }

    /// Sets q(y | x)'s head (the linear map of the dense features, its intercept, and the per-word
    /// logits) to a fitted regression's, keeping each parameter's id (so an optimiser's state still
    /// names it). Nothing without a label latent.
    pub fn set_classifier(&mut self, fit: &Logistic) {
        let Some(enc) = self.encoder.as_mut() else {
            return;
        };
        let (Some(linear), Some(words)) = (enc.classifier.as_mut(), enc.classifier_words.take())
        else {
            return;
        };
        let k = fit.bias.len();
        let device = words.val().device();
        let tensor = |v: &[f64], shape: [usize; 2]| {
            let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            let t = Tensor::<2>::from_data(TensorData::new(v, shape), &device);
            // A model still on the autodiff device keeps its parameters trainable.
            if device.is_autodiff() {
                t.require_grad()
            } else {
                t
            }
        };
        let n_words = fit.words.len() / k;
        enc.classifier_words = Some(words.map(|_| tensor(&fit.words, [n_words, k])));
        let n_dense = fit.dense.len() / k;
        linear.weight = linear
            .weight
            .clone()
            .map(|_| tensor(&fit.dense, [n_dense, k]));
        if let Some(bias) = linear.bias.take() {
            let b = tensor(&fit.bias, [1, k]).reshape([k]);
            linear.bias = Some(bias.map(|_| b));
        }
    }

    /// Refits q(y | x) to the model's posterior on the training data (see the module's notes), with
    /// the run's `refit_samples` and `refit_c`. `None` when no refit applies (no label latent,
    /// `refit_samples = 0`, or every label observed).
    pub fn refit_classifier(&mut self, data: &TextData, seed: u64) -> Option<RefitReport> {
        let samples = self.shape.refit_samples;
        if samples == 0 {
            return None;
        }
        let plain = self.valid();
        let device = plain.embedding.val().device();
        let (fit, report) =
            plain.fit_classifier_to_posterior(data, samples, self.shape.refit_c, seed, &device)?;
        self.set_classifier(&fit);
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::labelled_model;
    use burn::module::Param;
    use burn::tensor::activation;

    /// A small model whose word bias makes word 4 evidence for class 1 ("pos") and word 5 for class 0.
    fn model(refit_samples: usize) -> (TextVae, Device) {
        let (mut m, device) = labelled_model(1.0, 0.1, true, refit_samples, 5);
        let mut u = vec![0f32; 24];
        u[5] = 3.0; // neg: word 5
        u[12 + 4] = 3.0; // pos: word 4
        m.label_bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(u, [2, 12]),
            &device,
        )));
        (m, device)
    }

    fn q(m: &TextVae, sentences: Vec<Vec<u32>>, device: &Device) -> Vec<f64> {
        let data = TextData {
            sentences,
            labels: None,
            label_names: vec!["neg".into(), "pos".into()],
        };
        let rows: Vec<usize> = (0..data.len()).collect();
        let logits = m.class_logits(&data.batch(&rows, device)).unwrap();
        tensor_to_vec(activation::softmax(logits, 1))
    }

    /// No label shows words 4 and 5, but the model's posterior does: after the refit q reads them as
    /// the word bias says, and burn's q(y | x) is exactly the fitted regression (the same features).
    #[test]
    fn the_refit_teaches_q_the_models_evidence_on_unlabelled_sentences() {
        let (mut m, device) = model(2);
        let mut sentences: Vec<Vec<u32>> = Vec::new();
        let mut labels = Vec::new();
        for i in 0..30u32 {
            let filler = 6 + i % 5;
            sentences.push(vec![4, filler, 4]);
            sentences.push(vec![filler, 5]);
            labels.extend([None, None]);
        }
        sentences.extend([vec![6, 7], vec![8, 9]]);
        labels.extend([Some(1), Some(0)]);
        let data = TextData {
            sentences,
            labels: Some(labels),
            label_names: vec!["neg".into(), "pos".into()],
        };
        let plain = m.valid();
        let (fit, report) = plain
            .fit_classifier_to_posterior(&data, 2, 1.0, 0, &device)
            .unwrap();
        assert_eq!((report.labelled, report.unlabelled), (2, 60));
        assert!(report.agreement_after > 0.95, "{report:?}");
        let probe = vec![vec![4, 10], vec![5, 10], vec![4, 4, 11, 7]];
        m.set_classifier(&fit);
        let got = q(&m, probe.clone(), &device);
        assert!(got[1] > 0.7, "q(pos | word 4) = {}", got[1]);
        assert!(got[2] > 0.7, "q(neg | word 5) = {}", got[2]);
        for (i, s) in probe.iter().enumerate() {
            let data = TextData {
                sentences: vec![s.clone()],
                labels: None,
                label_names: Vec::new(),
            };
            let words: Vec<usize> = data.bag_of_words(0).iter().map(|&w| w as usize).collect();
            let dense = m.dense_class_features(&data, &device).unwrap();
            let want = fit.probabilities_of(&words, &dense);
            assert!(
                (got[2 * i + 1] - want[1]).abs() < 1e-4,
                "{} vs {}",
                got[2 * i + 1],
                want[1]
            );
        }
        // The same through the training hook; with refit_samples = 0 nothing changes.
        let (mut off, _) = model(0);
        let before = q(&off, probe.clone(), &device);
        assert!(off.refit_classifier(&data, 0).is_none());
        assert_eq!(q(&off, probe.clone(), &device), before);
        let (mut on, _) = model(2);
        assert!(on.refit_classifier(&data, 0).is_some());
        assert!(q(&on, probe, &device)[1] > 0.7);
    }
}

//! The label latent y of a semi-supervised sentence model (Kingma et al. 2014's M2, with one guide
//! q(z | x) for every y): p(x, y, z) = p(y) p(z) p(x | y, z), y uniform over the classes, the decoder
//! conditioned on `[z, onehot(y)]`.
//!
//! Given z the E-step over y sums over every class (no sampling of y). A labelled sentence clamps y:
//! `log p(x, y | z) = log p(y) + log p(x | y, z)`. An unlabelled one is scored exactly,
//! `log p(x | z) = log sum_y p(y) p(x | y, z)`, with the exact posterior
//! `p(y | x, z) = softmax_y (log p(y) + log p(x | y, z))`; in training it enters through Kingma et
//! al.'s bound with the guide's q(y | x) as the responsibilities, `sum_y q(y | x) log p(x, y | z) +
//! H(q(y | x))`, which equals the exact sum when q is the exact posterior and lets the classifier break
//! the classes' symmetry while no decoder tells them apart yet.
//!
//! The guide's classifier q(y | x) (what `classify` reports) reads the mean word embeddings of the
//! encoder and the decoder, which every sentence trains, and the sentence's bag of words. It learns
//! from `-alpha log q(y | x)` on labelled sentences and `beta KL(p(y | x, z) || q(y | x))` on unlabelled
//! ones, the model's exact posterior held fixed (the wake update of the guide in reweighted wake-sleep):
//! once the decoders differ by class, the generative model teaches the classifier about words no label
//! showed it. When training ends that update is run to convergence ([`crate::refit`]).

use burn::tensor::{Tensor, TensorData, activation};
use emvae_core::tensor::log_sum_exp;

use crate::batch::TokenBatch;
use crate::dataset::TextBatch;
use crate::model::TextVae;

/// `[rows, k]` one-hot rows of `classes`.
fn one_hot(classes: &[usize], k: usize, device: &burn::tensor::Device) -> Tensor<2> {
    let mut v = vec![0f32; classes.len() * k];
    for (i, &c) in classes.iter().enumerate() {
        v[i * k + c] = 1.0;
    }
    Tensor::from_data(TensorData::new(v, [classes.len(), k]), device)
}

impl TextVae {
    /// Values of the label latent (0 without one).
    pub fn n_classes(&self) -> usize {
        self.shape.n_classes
    }

    /// The decoder's conditioning for codes `z` `[N, latent]`: z itself without a label latent, else
    /// `[z, onehot(y)]` with `classes[i]` the y of row `i` (`classes` is ignored without a label
    /// latent).
    pub fn condition(&self, z: Tensor<2>, classes: &[usize]) -> Tensor<2> {
        let k = self.shape.n_classes;
        if k == 0 {
            return z;
        }
        assert_eq!(classes.len(), z.dims()[0], "one class per latent code");
        let y = one_hot(classes, k, &z.device());
        Tensor::cat(vec![z, y], 1)
    }

    /// The dense features of q(y | x) `[B, 2 embedding]`: the means, over each sentence's tokens, of
    /// the encoder's and the decoder's word embeddings side by side. Every sentence trains both tables
    /// (the decoder's as a language model's, whose input embeddings group words that predict the same
    /// next words), so that the classifier generalises from a few labelled sentences to words it has
    /// not seen labelled. `None` without a label latent.
    pub fn class_features(&self, tokens: &TokenBatch) -> Option<Tensor<2>> {
        let enc = self.encoder.as_ref()?;
        enc.classifier.as_ref()?;
        let [b, t] = tokens.tokens.dims();
        let device = tokens.mask.device();
        let lengths: Vec<f32> = tokens.lengths.iter().map(|&n| n.max(1) as f32).collect();
        let lengths = Tensor::<2>::from_data(TensorData::new(lengths, [b, 1]), &device);
        let mask = tokens.mask.clone().reshape([b, t, 1]);
        let mean = |table: Tensor<2>| {
            let e = table.dims()[1];
            let emb = burn::tensor::module::embedding(table, tokens.tokens.clone());
            (emb * mask.clone()).sum_dim(1).reshape([b, e]) / lengths.clone()
        };
        Some(Tensor::cat(
            vec![mean(enc.embedding.val()), mean(self.embedding.val())],
            1,
        ))
    }

    /// Logits of q(y | x) `[B, classes]`: a linear map of [`Self::class_features`], plus the per-word
    /// logits `[vocab, classes]` summed over the sentence's bag of words (each distinct token once,
    /// [`TokenBatch::bag`]): a bag-of-words regression, the form that can follow the model's per-word
    /// evidence for y (the word bias) when it learns the model's posterior on unlabelled sentences
    /// (see [`crate::refit`]). `None` without a label latent.
    pub fn class_logits(&self, tokens: &TokenBatch) -> Option<Tensor<2>> {
        let enc = self.encoder.as_ref()?;
        let classifier = enc.classifier.as_ref()?;
        let logits = classifier.forward(self.class_features(tokens)?);
        Some(match &enc.classifier_words {
            Some(words) => {
                let [b, t] = tokens.tokens.dims();
                let k = words.dims()[1];
                let per_word = burn::tensor::module::embedding(words.val(), tokens.tokens.clone());
                let bag = tokens.bag.clone().reshape([b, t, 1]);
                logits + (per_word * bag).sum_dim(1).reshape([b, k])
            }
            None => logits,
        })
    }

    /// `log p(y) + log p(x | y, z)` for every class y: `[classes, S * B]`, for codes `z`
    /// `[S * B, latent]` (sample-major).
    pub fn class_log_joint(&self, x: &TextBatch, z: Tensor<2>, samples: usize) -> Tensor<2> {
        let k = self.shape.n_classes;
        let [sb, _] = z.dims();
        let classes: Vec<usize> = (0..k).flat_map(|c| std::iter::repeat_n(c, sb)).collect();
        let c = self.condition(z.repeat_dim(0, k), &classes);
        self.sentence_log_prob(x, c, k * samples)
            .reshape([k, sb])
            .sub_scalar((k as f64).ln())
    }

    /// The bound's likelihood term per row `[S * B]` and, when `with_guide_loss`, the classifier's loss
    /// per sentence `[B]`.
    ///
    /// A labelled sentence clamps y: `log p(y) + log p(x | y, z)`. An unlabelled one sums over y: in
    /// evaluation (a batch without training noise) exactly, `log sum_y p(y) p(x | y, z)`; in training
    /// with the guide's q(y | x) as the responsibilities (held fixed), `sum_y q(y | x) (log p(y) +
    /// log p(x | y, z)) + H(q(y | x))`, Kingma et al.'s bound for a missing label. That lower bound
    /// trains each class's decoder on the sentences the classifier gives it, which breaks the symmetry
    /// of the exact sum at the start, when no decoder distinguishes the classes yet.
    pub(crate) fn labelled_log_likelihood(
        &self,
        x: &TextBatch,
        z: Tensor<2>,
        samples: usize,
        with_guide_loss: bool,
    ) -> (Tensor<1>, Option<Tensor<1>>) {
        let k = self.shape.n_classes;
        let labels = &x.tokens.labels;
        let b = labels.len();
        let sb = samples * b;
        let device = z.device();
        let joint = self.class_log_joint(x, z, samples);
        let training = x.noise.is_some();
        let log_q = (training || with_guide_loss).then(|| {
            let logits = self
                .class_logits(&x.tokens)
                .expect("a label latent has a classifier");
            activation::log_softmax(logits, 1)
        });
        // Row r of a sample-major block belongs to sentence r % b.
        let mut clamp = vec![0f32; k * sb];
        let mut free = vec![1f32; sb];
        for r in 0..sb {
            if let Some(y) = labels[r % b] {
                clamp[y as usize * sb + r] = 1.0;
                free[r] = 0.0;
            }
        }
        let clamp = Tensor::<2>::from_data(TensorData::new(clamp, [k, sb]), &device);
        let free = Tensor::<1>::from_data(TensorData::new(free, [sb]), &device);
        let picked = (joint.clone() * clamp).sum_dim(0).reshape([sb]);
        let unlabelled = match (&log_q, training) {
            (Some(log_q), true) => {
                // [B, classes] -> [classes, S * B], repeated over the samples.
                let log_r = log_q.clone().detach().transpose().repeat_dim(1, samples);
                let r = log_r.clone().exp();
                (r.clone() * joint.clone()).sum_dim(0).reshape([sb])
                    - (r * log_r).sum_dim(0).reshape([sb])
            }
            _ => log_sum_exp(joint.clone(), 0).reshape([sb]),
        };
        let lik = picked + unlabelled * free;
        let (Some(log_q), true) = (log_q, with_guide_loss) else {
            return (lik, None);
        };
        // p(y | x, z) averaged over the samples of z, held fixed: [B, classes].
        let posterior = activation::softmax(joint.detach(), 0)
            .reshape([k, samples, b])
            .mean_dim(1)
            .reshape([k, b])
            .transpose();
        let (alpha, beta) = (
            self.shape.classifier_weight as f32,
            self.shape.posterior_weight as f32,
        );
        let mut observed = vec![0f32; b * k];
        let mut is_free = vec![1f32; b];
        let mut weight = vec![beta; b];
        for (i, y) in labels.iter().enumerate() {
            if let Some(y) = y {
                observed[i * k + *y as usize] = 1.0;
                is_free[i] = 0.0;
                weight[i] = alpha;
            }
        }
        let observed = Tensor::<2>::from_data(TensorData::new(observed, [b, k]), &device);
        let is_free = Tensor::<2>::from_data(TensorData::new(is_free, [b, 1]), &device);
        let target = observed + posterior * is_free;
        let weight = Tensor::<1>::from_data(TensorData::new(weight, [b]), &device);
        let loss = (target * log_q).sum_dim(1).reshape([b]).neg() * weight;
        (lik, Some(loss))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::TextData;
    use crate::dataset::TextBatch;
    use crate::test_support::labelled_model;
    use burn::tensor::{Device, Distribution};
    use emvae_core::tensor::tensor_to_vec;

    fn model(alpha: f64, beta: f64) -> (TextVae, Device) {
        model_with(alpha, beta, false)
    }

    fn model_with(alpha: f64, beta: f64, word_bias: bool) -> (TextVae, Device) {
        labelled_model(alpha, beta, word_bias, 0, 3)
    }

    fn batch(device: &Device, noise: Option<u64>) -> TextBatch {
        let data = TextData {
            sentences: vec![vec![4, 5, 6], vec![7, 8], vec![9, 4, 10, 11]],
            labels: Some(vec![Some(1), None, None]),
            label_names: vec!["neg".into(), "pos".into()],
        };
        TextBatch {
            tokens: data.batch(&[0, 1, 2], device),
            noise,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4 * (1.0 + b.abs())
    }

    #[test]
    fn labelled_rows_clamp_y_and_unlabelled_rows_sum_over_it_exactly() {
        let (m, device) = model(1.0, 0.1);
        let x = batch(&device, None);
        let z = Tensor::<2>::random([6, 3], Distribution::Normal(0.0, 1.0), &device);
        let joint = tensor_to_vec(m.class_log_joint(&x, z.clone(), 2));
        let (lik, loss) = m.labelled_log_likelihood(&x, z, 2, false);
        assert!(loss.is_none());
        let lik = tensor_to_vec(lik);
        for r in 0..6 {
            let (a, b) = (joint[r], joint[6 + r]);
            let want = if r % 3 == 0 {
                b // sentence 0 is labelled "pos"
            } else {
                a.max(b) + ((a - a.max(b)).exp() + (b - a.max(b)).exp()).ln()
            };
            assert!(close(lik[r], want), "row {r}: {} vs {want}", lik[r]);
        }
        // Uniform p(y): each class's joint is log p(x | y, z) - log 2, a log-probability below that.
        assert!(joint.iter().all(|&j| j < -std::f64::consts::LN_2));
    }

    #[test]
    fn the_training_bound_lies_below_the_exact_sum_and_the_guide_loss_is_weighted_per_row() {
        let (m, device) = model(2.0, 0.5);
        let z = Tensor::<2>::random([3, 3], Distribution::Normal(0.0, 1.0), &device);
        let exact = tensor_to_vec(
            m.labelled_log_likelihood(&batch(&device, None), z.clone(), 1, false)
                .0,
        );
        let x = batch(&device, Some(7));
        let noiseless = batch(&device, None);
        let (bound, loss) = m.labelled_log_likelihood(&noiseless, z.clone(), 1, true);
        assert_eq!(tensor_to_vec(bound), exact);
        // Training noise (no dropout here) switches the unlabelled rows to q's responsibilities.
        let (train, loss_train) = m.labelled_log_likelihood(&x, z.clone(), 1, true);
        let train = tensor_to_vec(train);
        assert!(
            close(train[0], exact[0]),
            "a labelled row is clamped either way"
        );
        for r in 1..3 {
            assert!(
                train[r] <= exact[r] + 1e-5,
                "row {r}: {} > {}",
                train[r],
                exact[r]
            );
        }
        let log_q = tensor_to_vec(activation::log_softmax(
            m.class_logits(&noiseless.tokens).unwrap(),
            1,
        ));
        let joint = tensor_to_vec(m.class_log_joint(&noiseless, z, 1));
        let loss = tensor_to_vec(loss.unwrap());
        assert_eq!(loss, tensor_to_vec(loss_train.unwrap()));
        assert!(close(loss[0], -2.0 * log_q[1]), "alpha (-log q(pos | x))");
        for i in 1..3 {
            let (a, b) = (joint[i], joint[3 + i]);
            let pa = 1.0 / (1.0 + (b - a).exp());
            let want = -0.5 * (pa * log_q[2 * i] + (1.0 - pa) * log_q[2 * i + 1]);
            assert!(close(loss[i], want), "row {i}: {} vs {want}", loss[i]);
        }
    }

    /// `[text.label] word_bias`: y shifts every step's vocabulary logits by its row of U, each row of a
    /// batch by its own class; a shift equal for every word changes no probability; without the switch
    /// the model has no such parameter.
    #[test]
    fn the_word_bias_shifts_the_logits_by_each_rows_class() {
        use burn::module::Param;
        use burn::tensor::{Int, TensorData};
        assert!(model(1.0, 0.1).0.label_bias.is_none());
        let (mut m, device) = model_with(1.0, 0.1, true);
        let u: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37).sin()).collect();
        let set = |m: &mut TextVae, u: &[f32]| {
            m.label_bias = Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(u.to_vec(), [2, 12]),
                &device,
            )));
        };
        // Fixed codes: the property must hold for every draw, and a test must not depend on one.
        let codes = |n: usize| {
            let v: Vec<f32> = (0..n * 3).map(|i| (i as f32 * 0.91 + 0.3).cos()).collect();
            Tensor::<2>::from_data(TensorData::new(v, [n, 3]), &device)
        };
        let cond = m.condition(codes(2), &[1, 0]);
        let prev = Tensor::<1, Int>::from_data(TensorData::from([4i64, 5]), &device);
        let logits = |m: &TextVae| {
            let states = m.initial_states(&cond);
            tensor_to_vec(m.next_logits(prev.clone(), &cond, states).0)
        };
        set(&mut m, &[0.0; 24]);
        let plain = logits(&m);
        set(&mut m, &u);
        let shifted = logits(&m);
        for (r, class) in [(0, 1), (1, 0)] {
            for w in 0..12 {
                let got = shifted[r * 12 + w] - plain[r * 12 + w];
                let want = f64::from(u[class * 12 + w]);
                assert!(
                    (got - want).abs() < 1e-5,
                    "row {r} word {w}: {got} vs {want}"
                );
            }
        }
        let x = batch(&device, None);
        let z = m.condition(codes(3), &[0, 1, 1]);
        let log_p = |m: &TextVae| tensor_to_vec(m.sentence_log_prob(&x, z.clone(), 1));
        set(&mut m, &[0.0; 24]);
        let base = log_p(&m);
        let constant: Vec<f32> = (0..24).map(|i| if i < 12 { 2.0 } else { -1.5 }).collect();
        set(&mut m, &constant);
        for (a, b) in log_p(&m).iter().zip(&base) {
            assert!(close(*a, *b), "{a} vs {b}");
        }
        set(&mut m, &u);
        let moved = log_p(&m);
        assert!(
            moved.iter().zip(&base).any(|(a, b)| (a - b).abs() > 1e-2),
            "{moved:?} vs {base:?}"
        );
    }
}

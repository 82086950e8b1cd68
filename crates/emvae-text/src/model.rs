//! The sentence VAE (Bowman et al. 2016): a recurrent encoder maps a sentence to q(z | x) = N(mu,
//! diag sigma^2) (the guide); a recurrent decoder conditioned on z generates it word by word,
//! p(x | z) = prod_t p(x_t | x_<t, z), a categorical over the vocabulary (the model). With the latent
//! switched off (`latent = 0`) the decoder alone is the recurrent language model, the baseline.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::optim::GradientsParams;
use burn::tensor::{Bool, Device, Gradients, Int, Tensor, TensorData, activation};
use emvae_core::rng::{Rng, rng_for};
use emvae_vae::guide::Posterior;
use emvae_vae::model::Prior;
use emvae_vae::nn::{linear, param};
use emvae_vae::{AmortizedModel, VaeError};
use rand::Rng as _;

use crate::config::TextVaeConfig;
use crate::dataset::{TextBatch, TextDataset};
use crate::rnn::{CellKind, Rnn, RnnState};
use crate::vocab::UNK;

/// `n * d` draws from `U(-0.1, 0.1)` (embeddings, as He et al. 2019).
fn embedding_table(n: usize, d: usize, rng: &mut Rng, device: &Device) -> Param<Tensor<2>> {
    let values = (0..n * d).map(|_| rng.random_range(-0.1f32..0.1)).collect();
    param(values, [n, d], device)
}

/// The guide q(z | x): embeddings, a recurrent encoder, and linear heads on its final state.
#[derive(Module, Debug)]
pub struct SentenceEncoder {
    pub embedding: Param<Tensor<2>>,
    pub rnn: Rnn,
    pub mean: Linear,
    pub log_var: Linear,
    /// q(y | x) of the label latent, on the sentence's mean embeddings (see [`crate::label`]).
    pub classifier: Option<Linear>,
    /// `[vocab, classes]`: q(y | x)'s per-word logits, summed over the sentence's bag of words (see
    /// [`TextVae::class_logits`]).
    pub classifier_words: Option<Param<Tensor<2>>>,
}

impl SentenceEncoder {
    /// `q(z | x)` from the top layer's final states (both directions concatenated).
    pub fn forward(&self, tokens: &Tensor<2, Int>, lengths: &[usize]) -> Posterior {
        let emb = burn::tensor::module::embedding(self.embedding.val(), tokens.clone());
        let (_, finals) = self.rnn.forward(emb, Some(lengths), None);
        let dirs = if self.rnn.bidirectional() { 2 } else { 1 };
        let top: Vec<Tensor<2>> = finals[finals.len() - dirs..]
            .iter()
            .map(|s| s.h.clone())
            .collect();
        let h = Tensor::cat(top, 1);
        Posterior {
            mean: self.mean.forward(h.clone()),
            log_var: self.log_var.forward(h),
        }
    }
}

/// Settings of the network that are not parameters.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Dimension of z (1, unused, for the language model).
    pub latent: usize,
    /// Values of the label latent y (0: none); the decoder is conditioned on `[z, onehot(y)]`.
    pub n_classes: usize,
    /// Weights of the classifier's losses: labelled sentences, unlabelled ones.
    pub classifier_weight: f64,
    pub posterior_weight: f64,
    /// The end-of-training refit of q(y | x) (see [`crate::refit`]): importance samples (0: none) and
    /// inverse penalty.
    pub refit_samples: usize,
    pub refit_c: f64,
    /// Label guidance of decoding (see [`crate::inference::decode_with_guidance`]); 0 without a label
    /// latent, and until calibrated where the config leaves it to calibration.
    pub guidance: f64,
    pub has_latent: bool,
    pub every_input: bool,
    pub dropout: f64,
    pub word_dropout: f64,
    pub vocab_size: usize,
    /// The output layer as host loops (see [`crate::output`]).
    pub host_kernels: bool,
}

/// The sentence VAE (or, without an encoder, the language model).
#[derive(Module, Debug)]
pub struct TextVae {
    pub encoder: Option<SentenceEncoder>,
    pub embedding: Param<Tensor<2>>,
    /// z -> the decoder's initial state, all layers side by side.
    pub init_state: Option<Linear>,
    pub decoder: Rnn,
    pub out: Linear,
    /// `[classes, vocab]`: the label latent's shift of the vocabulary logits, `log p(x_t | ..., y)`
    /// gaining `U[y]` before normalisation (with `[text.label] word_bias`).
    pub label_bias: Option<Param<Tensor<2>>>,
    pub prior: Prior,
    #[module(skip)]
    pub shape: Shape,
}

impl TextVae {
    /// A fresh model for a vocabulary of `vocab_size` entries; weights depend only on `seed`.
    pub fn new(config: &TextVaeConfig, vocab_size: usize, seed: u64, device: &Device) -> Self {
        let mut rng = rng_for(seed, b"text-vae-init", 0);
        let rng = &mut rng;
        let l = config.latent.max(1);
        let has_latent = config.has_latent();
        let k = config.n_classes();
        let e = config.embedding;
        let encoder = has_latent.then(|| {
            let enc = &config.encoder;
            let embedding = embedding_table(vocab_size, e, rng, device);
            let rnn = Rnn::new(
                enc.cell,
                e,
                enc.hidden,
                enc.layers,
                enc.bidirectional,
                rng,
                device,
            )
            .with_kernels(config.host_kernels);
            let width = rnn.output_size();
            SentenceEncoder {
                embedding,
                rnn,
                mean: linear(width, l, rng, device),
                log_var: linear(width, l, rng, device),
                classifier: (k > 0).then(|| linear(2 * e, k, rng, device)),
                classifier_words: (k > 0)
                    .then(|| param(vec![0.0; vocab_size * k], [vocab_size, k], device)),
            }
        });
        let dec = &config.decoder;
        let every_input = has_latent && config.conditioning.every_input;
        let embedding = embedding_table(vocab_size, e, rng, device);
        // The decoder's conditioning: z, and y one-hot beside it when there is a label latent.
        let c = l + k;
        let d_in = e + if every_input { c } else { 0 };
        let decoder = Rnn::new(dec.cell, d_in, dec.hidden, dec.layers, false, rng, device)
            .with_kernels(config.host_kernels);
        let init_state = (has_latent && config.conditioning.initial_state)
            .then(|| linear(c, dec.layers * dec.hidden, rng, device));
        let out = linear(dec.hidden, vocab_size, rng, device);
        // Zero at the start: y first acts through the recurrence's conditioning, as without it.
        let label_bias = (k > 0 && config.label.as_ref().is_some_and(|x| x.word_bias))
            .then(|| param(vec![0.0; k * vocab_size], [k, vocab_size], device));
        let prior = Prior::from_config(&config.prior, l, rng, device);
        Self {
            encoder,
            embedding,
            init_state,
            decoder,
            out,
            label_bias,
            prior,
            shape: Shape {
                latent: l,
                n_classes: k,
                classifier_weight: config.label.as_ref().map_or(0.0, |x| x.classifier_weight),
                posterior_weight: config.label.as_ref().map_or(0.0, |x| x.posterior_weight),
                refit_samples: config.label.as_ref().map_or(0, |x| x.refit_samples),
                refit_c: config.label.as_ref().map_or(1.0, |x| x.refit_c),
                guidance: config
                    .label
                    .as_ref()
                    .and_then(|x| x.guidance)
                    .unwrap_or(0.0),
                has_latent,
                every_input,
                dropout: config.dropout,
                word_dropout: config.word_dropout,
                vocab_size,
                host_kernels: config.host_kernels.is_some(),
            },
        }
    }

    /// The decoder's initial states for conditioning rows `z` `[N, latent]`, or `[N, latent + classes]`
    /// with a label latent (see [`TextVae::condition`]); zeros without conditioning.
    pub fn initial_states(&self, z: &Tensor<2>) -> Vec<RnnState> {
        let n = z.dims()[0];
        let (kind, h, layers) = (
            self.decoder.kind(),
            self.decoder.hidden(),
            self.decoder.layers(),
        );
        match &self.init_state {
            None => (0..layers)
                .map(|_| RnnState::zeros(kind, n, h, &z.device()))
                .collect(),
            Some(map) => {
                let all = map.forward(z.clone());
                (0..layers)
                    .map(|i| {
                        let part = all.clone().slice([0..n, i * h..(i + 1) * h]);
                        match kind {
                            // As He et al. 2019's decoder: c0 = W z, h0 = tanh(c0).
                            CellKind::Lstm => RnnState {
                                h: activation::tanh(part.clone()),
                                c: Some(part),
                            },
                            CellKind::Gru => RnnState {
                                h: activation::tanh(part),
                                c: None,
                            },
                        }
                    })
                    .collect()
            }
        }
    }

    /// Decoder inputs: the embeddings of `ids` `[N, T]`, with the conditioning `z` `[N, c]` beside each
    /// when the model conditions every input.
    fn decoder_inputs(&self, ids: Tensor<2, Int>, z: &Tensor<2>, noise: Option<u64>) -> Tensor<3> {
        let [n, t] = ids.dims();
        let emb = burn::tensor::module::embedding(self.embedding.val(), ids);
        let emb = dropout(emb, self.shape.dropout, noise, b"dropout-input");
        if self.shape.every_input {
            let l = z.dims()[1];
            let zs = z.clone().reshape([n, 1, l]).expand([n, t, l]);
            Tensor::cat(vec![emb, zs], 2)
        } else {
            emb
        }
    }

    /// Logits over the vocabulary and the new states after reading `prev` `[N]` (one step of
    /// generation).
    pub fn next_logits(
        &self,
        prev: Tensor<1, Int>,
        z: &Tensor<2>,
        states: Vec<RnnState>,
    ) -> (Tensor<2>, Vec<RnnState>) {
        let n = prev.dims()[0];
        let x = self.decoder_inputs(prev.reshape([n, 1]), z, None);
        let d = x.dims()[2];
        let (h, states) = self.decoder.step(x.reshape([n, d]), states);
        let logits = self.out.forward(h);
        let logits = match self.word_shift(z) {
            Some(shift) => logits + shift,
            None => logits,
        };
        (logits, states)
    }

    /// `onehot(y) U` `[N, vocab]`: each row's shift of the vocabulary logits by its class, read from
    /// the conditioning `[z, onehot(y)]` `[N, latent + classes]`; `None` without a word bias.
    fn word_shift(&self, conditioning: &Tensor<2>) -> Option<Tensor<2>> {
        let u = self.label_bias.as_ref()?;
        let (n, l, k) = (
            conditioning.dims()[0],
            self.shape.latent,
            self.shape.n_classes,
        );
        let y = conditioning.clone().slice([0..n, l..l + k]);
        Some(y.matmul(u.val()))
    }

    /// `log p(x | c)` per row for the decoder's conditioning `c` `[S * B, c]` (sample-major; z, or
    /// `[z, onehot(y)]` with a label latent) and the batch `x`.
    pub fn sentence_log_prob(&self, x: &TextBatch, z: Tensor<2>, samples: usize) -> Tensor<1> {
        let tb = &x.tokens;
        let [b, t] = tb.tokens.dims();
        let rows = samples * b;
        let mut input = tb.decoder_input.clone();
        if let Some(seed) = x.noise
            && self.shape.word_dropout > 0.0
        {
            input = word_dropout(input, self.shape.word_dropout, seed);
        }
        let repeat = |ids: Tensor<2, Int>| {
            if samples == 1 {
                ids
            } else {
                ids.repeat_dim(0, samples)
            }
        };
        let inputs = self.decoder_inputs(repeat(input), &z, x.noise);
        let init = self.initial_states(&z);
        let (out, _) = self.decoder.forward(inputs, None, Some(init));
        let out = dropout(out, self.shape.dropout, x.noise, b"dropout-output");
        let h = out.dims()[2];
        let out = out.reshape([rows * t, h]);
        if self.shape.host_kernels && crate::output::supported(&out) {
            let tokens: Vec<usize> = tb
                .tokens
                .clone()
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .expect("converted to i64")
                .into_iter()
                .map(|id| id as usize)
                .collect();
            let shift = self.word_shift(&z);
            return crate::output::sentence_log_prob(
                out,
                &self.out,
                shift,
                &tokens,
                &tb.lengths,
                rows,
            );
        }
        let mut logits = self.out.forward(out);
        if let Some(shift) = self.word_shift(&z) {
            let v = self.shape.vocab_size;
            logits =
                (logits.reshape([rows, t, v]) + shift.reshape([rows, 1, v])).reshape([rows * t, v]);
        }
        let targets = repeat(tb.tokens.clone()).reshape([rows * t, 1]);
        let log_p = log_softmax_at(logits, targets);
        let mask = if samples == 1 {
            tb.mask.clone()
        } else {
            tb.mask.clone().repeat_dim(0, samples)
        };
        (log_p.reshape([rows, t]) * mask).sum_dim(1).reshape([rows])
    }
}

/// `log softmax(logits)` at the `targets` `[N, 1]`: `[N, 1]`.
///
/// The vocabulary-wide part runs on the backend's fused softmax without autodiff: with `p = softmax(l)`,
/// `lse = max(l) - log max(p)` (exact, and `max(p) >= 1/V` cannot underflow), and the gradient of `lse`,
/// which is `p`, enters through the surrogate `s - detach(s) + lse` with `s = sum(l * detach(p))`. This
/// spares the autodiff graph a `[N, V]` exponential and its intermediate buffers per step.
pub fn log_softmax_at(logits: Tensor<2>, targets: Tensor<2, Int>) -> Tensor<2> {
    let plain = logits.clone().inner();
    let p = activation::softmax(plain.clone(), 1);
    let lse = plain.max_dim(1) - p.clone().max_dim(1).log();
    if logits.is_autodiff() {
        log_softmax_with_gradient(logits, targets, p, lse)
    } else {
        logits.gather(1, targets) - lse
    }
}

/// `logits[targets] - lse`, where the plain `p` (softmax) and `lse` were computed outside the autodiff
/// graph: the gradient of `lse`, which is `p`, enters through `s - detach(s) + lse` with
/// `s = sum(logits * p)`.
fn log_softmax_with_gradient(
    logits: Tensor<2>,
    targets: Tensor<2, Int>,
    p: Tensor<2>,
    lse: Tensor<2>,
) -> Tensor<2> {
    let s = (logits.clone() * Tensor::from_inner(p)).sum_dim(1);
    let lse = s.clone() - s.detach() + Tensor::from_inner(lse);
    logits.gather(1, targets) - lse
}

/// Inverted dropout with a host-drawn mask (reproducible on every backend); identity without noise.
fn dropout(x: Tensor<3>, p: f64, noise: Option<u64>, stream: &[u8]) -> Tensor<3> {
    let Some(seed) = noise else { return x };
    if p <= 0.0 {
        return x;
    }
    let shape = x.dims();
    let mut rng = rng_for(seed, stream, 0);
    let keep = (1.0 / (1.0 - p)) as f32;
    let values: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| if rng.random::<f64>() < p { 0.0 } else { keep })
        .collect();
    x.clone() * Tensor::from_data(TensorData::new(values, shape), &x.device())
}

/// Word dropout: each decoder input but `<bos>` becomes `<unk>` with probability `p`.
fn word_dropout(ids: Tensor<2, Int>, p: f64, seed: u64) -> Tensor<2, Int> {
    let [b, t] = ids.dims();
    let mut rng = rng_for(seed, b"word-dropout", 0);
    let drop: Vec<bool> = (0..b * t)
        .map(|i| i % t != 0 && rng.random::<f64>() < p)
        .collect();
    let mask = Tensor::<2, Bool>::from_data(TensorData::new(drop, [b, t]), &ids.device());
    ids.mask_fill(mask, UNK as i64)
}

impl AmortizedModel for TextVae {
    type Config = TextVaeConfig;
    type Batch = TextBatch;
    type Data = TextDataset;

    fn init(config: &TextVaeConfig, seed: u64, device: &Device) -> Self {
        Self::new(config, config.vocab_size, seed, device)
    }

    fn check_data(config: &TextVaeConfig, data: &TextDataset) -> Result<(), VaeError> {
        if data.vocab_size != config.vocab_size {
            return Err(VaeError::Checkpoint(format!(
                "the data were encoded with a vocabulary of {} entries but the model has {}",
                data.vocab_size, config.vocab_size
            )));
        }
        Ok(())
    }

    fn posterior(&self, x: &TextBatch) -> Posterior {
        match &self.encoder {
            Some(enc) => enc.forward(&x.tokens.tokens, &x.tokens.lengths),
            None => {
                // No latent code: the posterior is the prior, so KL = 0 and every bound is exact.
                let b = x.tokens.lengths.len();
                let zeros = Tensor::zeros([b, self.shape.latent], &x.tokens.mask.device());
                Posterior {
                    mean: zeros.clone(),
                    log_var: zeros,
                }
            }
        }
    }

    fn log_likelihood(&self, x: &TextBatch, z: Tensor<2>, samples: usize) -> Tensor<1> {
        if self.shape.n_classes == 0 {
            self.sentence_log_prob(x, z, samples)
        } else {
            self.labelled_log_likelihood(x, z, samples, false).0
        }
    }

    fn log_likelihood_and_guide_loss(
        &self,
        x: &TextBatch,
        z: Tensor<2>,
        samples: usize,
    ) -> (Tensor<1>, Option<Tensor<1>>) {
        if self.shape.n_classes == 0 {
            (self.sentence_log_prob(x, z, samples), None)
        } else {
            let (lik, loss) = self.labelled_log_likelihood(x, z, samples, true);
            (lik, loss)
        }
    }

    fn prior(&self) -> &Prior {
        &self.prior
    }

    fn finish_training(&mut self, data: &TextDataset, seed: u64) -> Result<(), VaeError> {
        if let Some(r) = self.refit_classifier(&data.data, seed) {
            tracing::info!(
                "q(y | x) refitted to the model's posterior p(y | x) ({} importance samples) on {} unlabelled and \
                 {} labelled training sentences: it now agrees with the posterior's class on {:.1}% of the \
                 unlabelled ones ({:.1}% before)",
                self.shape.refit_samples,
                r.unlabelled,
                r.labelled,
                100.0 * r.agreement_after,
                100.0 * r.agreement_before
            );
        }
        Ok(())
    }

    fn guide_gradients(&self, grads: Gradients) -> GradientsParams {
        match &self.encoder {
            Some(enc) => GradientsParams::from_grads(grads, enc),
            None => GradientsParams::new(),
        }
    }

    fn guide_only(&self) -> Self {
        let mut frozen = self.clone().no_grad();
        frozen.encoder = self.encoder.clone();
        frozen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn log_softmax_at_matches_the_direct_formula_in_value_and_gradient() {
        let device = Device::flex().autodiff();
        let plain = Tensor::<2>::random([7, 50], Distribution::Normal(0.0, 3.0), &Device::flex());
        let targets = Tensor::<2, Int>::from_data(
            TensorData::new(vec![0i64, 3, 49, 7, 7, 20, 1], [7, 1]),
            &device,
        );
        let weights = Tensor::<2>::random([7, 1], Distribution::Default, &device);
        let run = |way: usize| {
            let l = Tensor::from_inner(plain.clone()).require_grad();
            let out = match way {
                0 => log_softmax_at(l.clone(), targets.clone()),
                _ => activation::log_softmax(l.clone(), 1).gather(1, targets.clone()),
            };
            let value = out.clone().inner().into_data().try_to_vec::<f32>().unwrap();
            let grads = (out * weights.clone()).sum().backward();
            let g = l
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            (value, g)
        };
        let (v1, g1) = run(0);
        let (v2, g2) = run(1);
        for (a, b) in v1.iter().zip(&v2).chain(g1.iter().zip(&g2)) {
            assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // Plain tensors (evaluation) give the same values.
        let v3 = log_softmax_at(plain.clone(), targets.clone().inner())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(v1, v3);
    }

    /// The encoder-only steps' frozen copy: the guide's gradients (encoder and classifier, through
    /// the decoder and the label latent) are those of the whole model, bit for bit, and the decoder's
    /// parameters get none.
    #[test]
    fn guide_only_gives_the_guide_the_same_gradients_and_the_decoder_none() {
        use crate::batch::TextData;
        use crate::test_support::labelled_model_on;
        use emvae_vae::config::{KlEstimator, ObjectiveKind};
        use emvae_vae::objective::{ObjectiveSpec, batch_terms};
        use emvae_vae::train::gradient_values;

        let device = Device::flex().autodiff();
        let model = labelled_model_on(&device, 1.0, 0.5, true, 0, 3);
        let data = TextData {
            sentences: vec![vec![4, 5, 6], vec![7, 8], vec![9, 4, 10, 11]],
            labels: Some(vec![Some(1), None, Some(0)]),
            label_names: vec!["neg".into(), "pos".into()],
        };
        let x = TextBatch {
            tokens: data.batch(&[0, 1, 2], &device),
            noise: None,
        };
        let eps = Tensor::<2>::random([6, 3], Distribution::Normal(0.0, 1.0), &device);
        let spec = ObjectiveSpec {
            kind: ObjectiveKind::Elbo,
            samples: 2,
            beta: 0.7,
            free_bits: 0.0,
            kl: KlEstimator::Analytic,
        };
        // The encoder's gradients, and whether the output layer and the embedding got one.
        let grads_of = |m: &TextVae| {
            let q = m.posterior(&x);
            let grads = batch_terms(m, &q, &x, eps.clone(), &spec).loss.backward();
            let mut grads = GradientsParams::from_grads(grads, m);
            let encoder = m.encoder.as_ref().expect("an encoder");
            let encoder = gradient_values(encoder, &mut grads);
            let decoder = [
                grads.get::<2>(m.out.weight.id).is_some(),
                grads.get::<2>(m.embedding.id).is_some(),
            ];
            (encoder, decoder)
        };
        let (full, full_decoder) = grads_of(&model);
        let (guide, guide_decoder) = grads_of(&model.guide_only());
        assert_eq!(full_decoder, [true, true]);
        assert_eq!(guide_decoder, [false, false]);
        assert!(
            full.iter().all(Option::is_some),
            "every encoder parameter has a gradient"
        );
        assert!(full.iter().flatten().flatten().any(|g| *g != 0.0));
        assert_eq!(full, guide);
    }
}

//! A corpus as the amortized trainer sees it: length-bucketed minibatches of token ids, each with the
//! seed of its training noise (dropout masks, word dropout), drawn on the host so that a run is
//! reproducible on every backend and resumes bit for bit.

use std::sync::Arc;

use burn::tensor::Device;
use emvae_core::rng::{derive_seed, splitmix64};
use emvae_vae::TrainData;

use crate::batch::{TextData, TokenBatch};

/// A batch of sentences and the seed of its training noise (`None`: no dropout, as in evaluation).
#[derive(Debug, Clone)]
pub struct TextBatch {
    pub tokens: TokenBatch,
    pub noise: Option<u64>,
}

/// Sentences for training or evaluation.
#[derive(Debug, Clone)]
pub struct TextDataset {
    pub data: Arc<TextData>,
    /// Seed of the training noise; `None` for evaluation data.
    pub noise_seed: Option<u64>,
    /// Vocabulary size (the width of one token's likelihood, for sizing evaluation chunks).
    pub vocab_size: usize,
    /// Longest sentence in tokens (words + `<eos>`).
    pub max_tokens: usize,
}

impl TextDataset {
    /// Training data whose batches carry noise seeds derived from `seed`.
    pub fn training(data: TextData, vocab_size: usize, seed: u64) -> Self {
        Self::with(data, vocab_size, Some(derive_seed(seed, b"text-noise", 0)))
    }

    /// Evaluation data (no training noise).
    pub fn evaluation(data: TextData, vocab_size: usize) -> Self {
        Self::with(data, vocab_size, None)
    }

    fn with(data: TextData, vocab_size: usize, noise_seed: Option<u64>) -> Self {
        let max_tokens = data.sentences.iter().map(Vec::len).max().unwrap_or(0) + 1;
        Self {
            data: Arc::new(data),
            noise_seed,
            vocab_size,
            max_tokens,
        }
    }
}

impl TrainData for TextDataset {
    type Batch = TextBatch;

    fn len(&self) -> usize {
        self.data.len()
    }

    fn batch(&self, rows: &[usize], epoch: u64, device: &Device) -> TextBatch {
        // The noise of a batch is a function of the epoch and its rows (not of a counter), so that a
        // resumed run draws what an uninterrupted one draws.
        let noise = self.noise_seed.map(|s| {
            rows.iter().fold(derive_seed(s, b"epoch", epoch), |h, &r| {
                splitmix64(h ^ r as u64)
            })
        });
        TextBatch {
            tokens: self.data.batch(rows, device),
            noise,
        }
    }

    fn epoch_batches(&self, batch_size: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
        self.data.batches(batch_size, seed, epoch)
    }

    fn for_evaluation(&self) -> Self {
        Self {
            noise_seed: None,
            ..self.clone()
        }
    }

    fn shape(&self) -> (usize, usize) {
        (self.data.len(), self.vocab_size)
    }

    fn units(&self, rows: &[usize]) -> usize {
        self.data.n_tokens(rows)
    }

    fn row_cost(&self) -> usize {
        self.max_tokens * self.vocab_size
    }
}

//! Encoded corpora and length-bucketed, padded token batches.

use burn::tensor::{Device, Int, Tensor, TensorData};
use emvae_core::rng::rng_for;
use rand::seq::SliceRandom;

use crate::corpus::Corpus;
use crate::error::TextError;
use crate::vocab::{BOS, EOS, PAD, Vocab};

/// Batches sorted together by length: each pool of `POOL_BATCHES * batch_size` shuffled rows.
const POOL_BATCHES: usize = 50;

/// A corpus as word ids, with label ids into `label_names`.
#[derive(Clone, Debug, PartialEq)]
pub struct TextData {
    /// Word ids per sentence, without `<bos>`/`<eos>`.
    pub sentences: Vec<Vec<u32>>,
    /// Per sentence when the corpus is labelled (`None` for an unlabelled row).
    pub labels: Option<Vec<Option<u32>>>,
    pub label_names: Vec<String>,
}

/// One padded batch of sentences, `T` = the longest row's words + 1.
#[derive(Clone, Debug)]
pub struct TokenBatch {
    /// `[B, T]`: words then `<eos>`, padded with `<pad>`; the encoder input and the decoder target.
    pub tokens: Tensor<2, Int>,
    /// `[B, T]`: `<bos>` then words, padded with `<pad>`.
    pub decoder_input: Tensor<2, Int>,
    /// `[B, T]`: 1 at real targets (words and `<eos>`), 0 at padding.
    pub mask: Tensor<2>,
    /// `[B, T]`: 1 at the first occurrence of each distinct token among the real targets (the
    /// sentence's bag of words with `<eos>`, each counted once), 0 elsewhere.
    pub bag: Tensor<2>,
    /// Words + 1 per row: the number of real targets.
    pub lengths: Vec<usize>,
    pub labels: Vec<Option<u32>>,
}

/// For the targets of `words` (the words, then `<eos>`): whether each is the token's first occurrence.
fn bag_flags(words: &[u32]) -> Vec<bool> {
    let mut seen = std::collections::HashSet::with_capacity(words.len() + 1);
    words
        .iter()
        .chain(std::iter::once(&EOS))
        .map(|w| seen.insert(*w))
        .collect()
}

impl TextData {
    /// Encodes `corpus` with `vocab`; returns the data and the number of out-of-vocabulary tokens (now `<unk>`).
    ///
    /// Labels are looked up in `label_names`; one not there is an error naming it and its line.
    pub fn new(
        corpus: &Corpus,
        vocab: &Vocab,
        label_names: &[String],
    ) -> Result<(TextData, usize), TextError> {
        let mut n_oov = 0;
        let sentences = corpus
            .sentences
            .iter()
            .map(|words| {
                let (ids, oov) = vocab.encode(words);
                n_oov += oov.len();
                ids
            })
            .collect();
        let labels = match &corpus.labels {
            None => None,
            Some(labels) => Some(
                labels
                    .iter()
                    .zip(&corpus.line_numbers)
                    .map(|(label, &line)| label_id(label.as_deref(), label_names, corpus, line))
                    .collect::<Result<_, _>>()?,
            ),
        };
        let data = TextData {
            sentences,
            labels,
            label_names: label_names.to_vec(),
        };
        Ok((data, n_oov))
    }

    /// Number of sentences.
    pub fn len(&self) -> usize {
        self.sentences.len()
    }

    /// Whether there are no sentences.
    pub fn is_empty(&self) -> bool {
        self.sentences.is_empty()
    }

    /// The data with the labels of all but `fraction` of each class's labelled sentences hidden (at
    /// least one kept per class), the kept ones drawn from `seed`; and the labels before hiding.
    pub fn hide_labels(&self, fraction: f64, seed: u64) -> (TextData, Vec<Option<u32>>) {
        let all = self
            .labels
            .clone()
            .unwrap_or_else(|| vec![None; self.len()]);
        let mut kept = vec![None; all.len()];
        for class in 0..self.label_names.len() as u32 {
            let mut rows: Vec<usize> = (0..all.len()).filter(|&r| all[r] == Some(class)).collect();
            if rows.is_empty() {
                continue;
            }
            rows.shuffle(&mut rng_for(seed, b"labelled-rows", u64::from(class)));
            let n = ((fraction * rows.len() as f64).round() as usize).clamp(1, rows.len());
            for &r in &rows[..n] {
                kept[r] = Some(class);
            }
        }
        let data = TextData {
            labels: self.labels.as_ref().map(|_| kept),
            ..self.clone()
        };
        (data, all)
    }

    /// The data without labels (what a model scores as `log p(x)`), and the labels.
    pub fn without_labels(&self) -> (TextData, Vec<Option<u32>>) {
        let all = self
            .labels
            .clone()
            .unwrap_or_else(|| vec![None; self.len()]);
        let data = TextData {
            labels: None,
            ..self.clone()
        };
        (data, all)
    }

    /// Number of predicted tokens in `rows`: the words plus one `<eos>` per sentence.
    pub fn n_tokens(&self, rows: &[usize]) -> usize {
        rows.iter().map(|&r| self.sentences[r].len() + 1).sum()
    }

    /// Each row's bag of words with `<eos>` (see [`TokenBatch::bag`]): its distinct token ids.
    pub fn bag_of_words(&self, row: usize) -> Vec<u32> {
        let words = &self.sentences[row];
        words
            .iter()
            .chain(std::iter::once(&EOS))
            .zip(bag_flags(words))
            .filter_map(|(&w, first)| first.then_some(w))
            .collect()
    }

    /// The padded batch of `rows` (indices into `sentences`) on `device`.
    pub fn batch(&self, rows: &[usize], device: &Device) -> TokenBatch {
        let lengths: Vec<usize> = rows.iter().map(|&r| self.sentences[r].len() + 1).collect();
        let t = lengths.iter().copied().max().unwrap_or(1);
        let b = rows.len();
        let mut tokens = vec![i64::from(PAD); b * t];
        let mut decoder_input = tokens.clone();
        let mut mask = vec![0f32; b * t];
        let mut bag = vec![0f32; b * t];
        for (i, &r) in rows.iter().enumerate() {
            let words = &self.sentences[r];
            let row = i * t;
            decoder_input[row] = i64::from(BOS);
            for (j, &w) in words.iter().enumerate() {
                tokens[row + j] = i64::from(w);
                decoder_input[row + j + 1] = i64::from(w);
            }
            tokens[row + words.len()] = i64::from(EOS);
            mask[row..row + words.len() + 1].fill(1.0);
            for (j, first) in bag_flags(words).into_iter().enumerate() {
                bag[row + j] = f32::from(u8::from(first));
            }
        }
        let labels = rows
            .iter()
            .map(|&r| self.labels.as_ref().and_then(|l| l[r]))
            .collect();
        TokenBatch {
            tokens: Tensor::from_data(TensorData::new(tokens, [b, t]), device),
            decoder_input: Tensor::from_data(TensorData::new(decoder_input, [b, t]), device),
            mask: Tensor::from_data(TensorData::new(mask, [b, t]), device),
            bag: Tensor::from_data(TensorData::new(bag, [b, t]), device),
            lengths,
            labels,
        }
    }

    /// The row indices of each batch of one epoch, every row exactly once, fixed by `(seed, epoch)`.
    ///
    /// Rows are shuffled, cut into pools of 50 batches, sorted by length within each pool (so a batch holds
    /// sentences of similar length and little padding), cut into batches of `batch_size` (at least 1; the
    /// last of each pool may be smaller), and the batches are shuffled.
    pub fn batches(&self, batch_size: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
        let batch_size = batch_size.max(1);
        let mut rng = rng_for(seed, b"epoch-order", epoch);
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut rng);
        let mut batches: Vec<Vec<usize>> = Vec::new();
        for pool in order.chunks_mut(POOL_BATCHES * batch_size) {
            // Stable, so equal lengths keep their shuffled order.
            pool.sort_by_key(|&r| self.sentences[r].len());
            batches.extend(pool.chunks(batch_size).map(<[usize]>::to_vec));
        }
        batches.shuffle(&mut rng);
        batches
    }
}

/// The id of `label` in `names` (`None` stays `None`); an unknown label is an input error naming its line.
fn label_id(
    label: Option<&str>,
    names: &[String],
    corpus: &Corpus,
    line: usize,
) -> Result<Option<u32>, TextError> {
    let Some(label) = label else {
        return Ok(None);
    };
    match names.iter().position(|n| n == label) {
        Some(i) => Ok(Some(i as u32)),
        None => Err(TextError::Input(format!(
            "{}:{line}: label \"{label}\" is not one of the model's labels ({})",
            corpus.path.display(),
            names.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::{CorpusOptions, parse_corpus};
    use rand::Rng as _;
    use std::path::Path;

    fn corpus(text: &str) -> Corpus {
        parse_corpus(
            text.as_bytes(),
            Path::new("c.txt"),
            &CorpusOptions::default(),
        )
        .unwrap()
    }

    /// `n` sentences of 1..=40 random words (ids 4..10), drawn from `seed`.
    fn mixed(n: usize, seed: u64) -> TextData {
        let mut rng = rng_for(seed, b"test", 0);
        let sentences = (0..n)
            .map(|_| {
                let len = rng.random_range(1..=40);
                (0..len).map(|_| rng.random_range(4..10)).collect()
            })
            .collect();
        TextData {
            sentences,
            labels: None,
            label_names: Vec::new(),
        }
    }

    fn padding(data: &TextData, batches: &[Vec<usize>]) -> usize {
        batches
            .iter()
            .map(|rows| {
                let t = rows
                    .iter()
                    .map(|&r| data.sentences[r].len() + 1)
                    .max()
                    .unwrap_or(0);
                rows.len() * t - data.n_tokens(rows)
            })
            .sum()
    }

    #[test]
    fn encodes_labels_and_counts_oov() {
        let c = corpus("pos\tthe cat sat\n\tthe dog\nneg\ta cat\n");
        let vocab = Vocab::build(&[c.sentences[0].clone()], None, 1);
        let names = vec!["neg".to_string(), "pos".to_string()];
        let (data, n_oov) = TextData::new(&c, &vocab, &names).unwrap();
        assert_eq!(n_oov, 2); // dog, a
        assert_eq!(data.labels, Some(vec![Some(1), None, Some(0)]));
        assert_eq!(data.sentences[1], [vocab.id("the"), crate::vocab::UNK]);
        assert_eq!(data.n_tokens(&[0, 1]), 4 + 3);
    }

    #[test]
    fn unknown_label_names_it_and_its_line() {
        let c = corpus("pos\tgood\n\nmeh\tso so\n");
        let vocab = Vocab::build(&c.sentences, None, 1);
        match TextData::new(&c, &vocab, &["neg".into(), "pos".into()]) {
            Err(TextError::Input(m)) => {
                assert!(m.contains("c.txt:3") && m.contains("\"meh\""), "{m}")
            }
            other => panic!("expected an input error, got {other:?}"),
        }
    }

    #[test]
    fn small_batch_shapes_and_values() {
        let data = TextData {
            sentences: vec![vec![5, 6, 7], vec![8], vec![9, 10]],
            labels: Some(vec![Some(0), None, Some(1)]),
            label_names: vec!["a".into(), "b".into()],
        };
        let b = data.batch(&[1, 0], &Device::flex());
        assert_eq!(b.tokens.dims(), [2, 4]);
        assert_eq!(b.lengths, [2, 4]);
        assert_eq!(b.labels, [None, Some(0)]);
        let ints = |t: Tensor<2, Int>| t.into_data().try_into_vec_as::<i64>().unwrap();
        assert_eq!(ints(b.tokens), [8, 3, 0, 0, 5, 6, 7, 3]);
        assert_eq!(ints(b.decoder_input), [2, 8, 0, 0, 2, 5, 6, 7]);
        let mask = b.mask.into_data().try_into_vec_as::<f32>().unwrap();
        assert_eq!(mask, [1., 1., 0., 0., 1., 1., 1., 1.]);
    }

    #[test]
    fn every_row_once_per_epoch() {
        let data = mixed(1234, 1);
        for (bs, epoch) in [(16, 0), (7, 3), (1, 1), (5000, 2)] {
            let batches = data.batches(bs, 9, epoch);
            assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= bs));
            let mut rows: Vec<usize> = batches.concat();
            rows.sort_unstable();
            assert_eq!(rows, (0..data.len()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn batches_are_reproducible_and_vary_by_epoch() {
        let data = mixed(500, 2);
        assert_eq!(data.batches(16, 4, 1), data.batches(16, 4, 1));
        assert_ne!(data.batches(16, 4, 1), data.batches(16, 4, 2));
        assert_ne!(data.batches(16, 4, 1), data.batches(16, 5, 1));
    }

    #[test]
    fn bucketing_cuts_padding() {
        let data = mixed(4000, 3);
        let bucketed = padding(&data, &data.batches(32, 0, 0));
        let mut order: Vec<usize> = (0..data.len()).collect();
        order.shuffle(&mut rng_for(0, b"plain", 0));
        let plain: Vec<Vec<usize>> = order.chunks(32).map(<[usize]>::to_vec).collect();
        let unbucketed = padding(&data, &plain);
        assert!(
            bucketed * 20 < unbucketed,
            "bucketed {bucketed}, unbucketed {unbucketed}"
        );
    }
}

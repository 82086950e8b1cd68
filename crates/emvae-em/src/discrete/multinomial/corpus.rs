//! Bag-of-words documents, stored sparsely: per document its `(word, count)` pairs.
//!
//! A corpus of 40,000 documents over 10,000 words would be 400 million cells densely; stored as pairs
//! it is about the number of tokens.

use std::path::PathBuf;

use emvae_core::data::{DataError, Dataset};

use crate::discrete::sparse::{SparseBuilder, SparseRows};

/// Documents as word counts over a vocabulary of `vocab_size` words, optionally with a known component
/// per document.
#[derive(Debug, Clone, PartialEq)]
pub struct BagOfWords {
    pub(crate) x: SparseRows,
    /// `labels[i] = Some(j)`: document `i` is known to come from component `j`.
    pub labels: Option<Vec<Option<usize>>>,
    /// Where the documents came from, for messages.
    pub source: PathBuf,
    /// The 1-based line of each document in a text file, for messages about a document.
    row_lines: Option<Vec<usize>>,
}

impl BagOfWords {
    /// Documents from a dense document-term count matrix (rows are documents), with its labels. A
    /// negative, non-integer or non-finite count is an error naming its row and column; a row of zeros
    /// is an empty document.
    pub fn from_dataset(data: &Dataset) -> Result<Self, DataError> {
        Ok(Self {
            x: SparseRows::from_counts(data)?,
            labels: data.labels.clone(),
            source: data.source.clone(),
            row_lines: data.row_lines.clone(),
        })
    }

    /// Documents from token-id sequences over a vocabulary of `vocab_size` words (ids `0..vocab_size`);
    /// an id outside it is an error naming the sequence and position. `source` names them in messages.
    pub fn from_token_sequences(
        sequences: &[Vec<usize>],
        vocab_size: usize,
        source: impl Into<PathBuf>,
    ) -> Result<Self, DataError> {
        let source = source.into();
        if vocab_size == 0 || vocab_size > u32::MAX as usize {
            return Err(DataError::new(
                &source,
                format!(
                    "vocab_size is {vocab_size}: it must be between 1 and {}",
                    u32::MAX
                ),
            ));
        }
        if sequences.len() > u32::MAX as usize {
            return Err(DataError::new(&source, "too many sequences"));
        }
        for (i, seq) in sequences.iter().enumerate() {
            if let Some(p) = seq.iter().position(|&t| t >= vocab_size) {
                return Err(DataError::new(
                    &source,
                    format!(
                        "sequence {i}, position {p}: token id {} is outside the vocabulary (ids 0..{})",
                        seq[p],
                        vocab_size - 1
                    ),
                ));
            }
        }
        Ok(Self::from_checked_sequences(sequences, vocab_size, source))
    }

    /// [`Self::from_token_sequences`] of sequences known to be in range.
    pub(crate) fn from_checked_sequences(
        sequences: &[Vec<usize>],
        vocab_size: usize,
        source: PathBuf,
    ) -> Self {
        let mut b = SparseBuilder::new(vocab_size, false);
        let mut ids = Vec::new();
        for seq in sequences {
            ids.clear();
            ids.extend_from_slice(seq);
            ids.sort_unstable();
            for run in ids.chunk_by(|a, b| a == b) {
                b.push(run[0], run.len() as f64);
            }
            b.end_row();
        }
        Self {
            x: b.finish(),
            labels: None,
            source,
            row_lines: None,
        }
    }

    /// The same documents with a known component (or `None`) per document.
    pub fn with_labels(mut self, labels: Vec<Option<usize>>) -> Self {
        self.labels = Some(labels);
        self
    }

    pub fn n_documents(&self) -> usize {
        self.x.n_rows
    }

    pub fn vocab_size(&self) -> usize {
        self.x.n_cols
    }

    /// Document `i`'s `(word, count)` pairs, words ascending.
    pub fn document(&self, i: usize) -> Vec<(usize, u64)> {
        self.x.row(i).map(|(w, c)| (w, c as u64)).collect()
    }

    /// Number of tokens of every document.
    pub fn lengths(&self) -> Vec<u64> {
        (0..self.n_documents())
            .map(|i| self.x.row_sum(i) as u64)
            .collect()
    }

    /// A data error about the documents as a whole.
    pub fn error(&self, message: impl Into<String>) -> DataError {
        DataError::new(&self.source, message)
    }

    /// A data error about document `i` (0-based), at its line when it came from a text file.
    pub fn row_error(&self, i: usize, message: impl Into<String>) -> DataError {
        match self.row_lines.as_ref().and_then(|l| l.get(i)) {
            Some(&line) => DataError::new(&self.source, message).at_line(line),
            None => DataError::new(&self.source, format!("document {i}: {}", message.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emvae_core::data::Matrix;

    #[test]
    fn sequences_and_count_matrices_give_the_same_documents() {
        let seqs = vec![vec![2, 0, 2, 3], vec![], vec![1, 1, 1]];
        let a = BagOfWords::from_token_sequences(&seqs, 4, "tokens").unwrap();
        let m = Matrix::from_rows(&[
            vec![1.0, 0.0, 2.0, 1.0],
            vec![0.0; 4],
            vec![0.0, 3.0, 0.0, 0.0],
        ]);
        let b = BagOfWords::from_dataset(&Dataset::new(m, "tokens")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.document(0), vec![(0, 1), (2, 2), (3, 1)]);
        assert_eq!(a.lengths(), vec![4, 0, 3]);
        assert_eq!((a.n_documents(), a.vocab_size()), (3, 4));
    }

    #[test]
    fn an_id_outside_the_vocabulary_names_sequence_and_position() {
        let e =
            BagOfWords::from_token_sequences(&[vec![0], vec![1, 4, 2]], 4, "s.txt").unwrap_err();
        assert!(
            e.message.contains("sequence 1, position 1: token id 4"),
            "{e}"
        );
        let e = BagOfWords::from_token_sequences(&[vec![0]], 0, "s.txt").unwrap_err();
        assert!(e.message.contains("vocab_size is 0"), "{e}");
    }
}

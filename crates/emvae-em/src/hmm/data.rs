//! Observations of many sequences of different lengths, as hmmlearn's `(X, lengths)`.
//!
//! Sequences are stored concatenated: Gaussian observations as the rows of one [`Matrix`], symbols as
//! one flat vector, with `lengths[s]` the number of time steps of sequence `s`. Every constructor
//! validates (no empty sequence, lengths summing to the rows, finite values, symbols in the
//! vocabulary) and its errors name the source, the sequence and the position.

use std::path::{Path, PathBuf};

use emvae_core::data::{DataError, Dataset, Matrix};

use crate::driver::fingerprint;

/// What is observed at each time step.
#[derive(Debug, Clone, PartialEq)]
pub enum Observations {
    /// Real vectors, one row per time step (all sequences concatenated).
    Gaussian(Matrix),
    /// Symbols `0..n_symbols`, one per time step (all sequences concatenated).
    Categorical {
        symbols: Vec<usize>,
        n_symbols: usize,
    },
}

/// Observations of one or more sequences.
#[derive(Debug, Clone, PartialEq)]
///
/// Built only by the validating constructors, so every sequence is non-empty and in range.
pub struct Sequences {
    pub(crate) observations: Observations,
    /// Time steps of each sequence, all > 0, summing to the number of observations.
    pub(crate) lengths: Vec<usize>,
    /// Where the data came from (a path or a description), for messages.
    pub(crate) source: PathBuf,
    /// The 1-based line of each observation in a text file, for messages about one.
    pub(crate) row_lines: Option<Vec<usize>>,
}

impl Sequences {
    /// Gaussian observations: the rows of `x`, cut into sequences by `lengths` (`None`: one sequence).
    pub fn gaussian(
        x: Matrix,
        lengths: Option<Vec<usize>>,
        source: impl Into<PathBuf>,
    ) -> Result<Self, DataError> {
        Self::new(Observations::Gaussian(x), lengths, source.into(), None)
    }

    /// Gaussian observations from a data set read from a file: errors about a row name its line.
    pub fn from_dataset(data: &Dataset, lengths: Option<Vec<usize>>) -> Result<Self, DataError> {
        let observations = Observations::Gaussian(data.x.clone());
        Self::new(
            observations,
            lengths,
            data.source.clone(),
            data.row_lines.clone(),
        )
    }

    /// Categorical observations: one symbol sequence per entry of `sequences`.
    pub fn categorical(
        sequences: &[Vec<usize>],
        n_symbols: usize,
        source: impl Into<PathBuf>,
    ) -> Result<Self, DataError> {
        let lengths = sequences.iter().map(Vec::len).collect();
        Self::categorical_flat(sequences.concat(), Some(lengths), n_symbols, source)
    }

    /// Categorical observations: concatenated `symbols` cut by `lengths` (`None`: one sequence).
    pub fn categorical_flat(
        symbols: Vec<usize>,
        lengths: Option<Vec<usize>>,
        n_symbols: usize,
        source: impl Into<PathBuf>,
    ) -> Result<Self, DataError> {
        let observations = Observations::Categorical { symbols, n_symbols };
        Self::new(observations, lengths, source.into(), None)
    }

    /// Categorical observations from a one-column data set of non-negative integers; `n_symbols`
    /// defaults to the largest symbol + 1 (as hmmlearn's `n_features`).
    pub fn categorical_from_dataset(
        data: &Dataset,
        lengths: Option<Vec<usize>>,
        n_symbols: Option<usize>,
    ) -> Result<Self, DataError> {
        let x = &data.x;
        if x.n_cols != 1 {
            return Err(data.error(format!(
                "categorical observations are one symbol per row, found {} columns",
                x.n_cols
            )));
        }
        let lengths = lengths.unwrap_or_else(|| vec![x.n_rows]);
        check_lengths(&lengths, x.n_rows, &data.source)?;
        let mut symbols = Vec::with_capacity(x.n_rows);
        for (i, &v) in x.values.iter().enumerate() {
            if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < u32::MAX as f64) {
                let (seq, pos) = locate(&lengths, i);
                let message = format!(
                    "sequence {seq}, position {pos}: expected a symbol (an integer >= 0), found {v}"
                );
                return Err(match data.row_lines.as_ref().and_then(|l| l.get(i)) {
                    Some(&line) => data.error(message).at_line(line),
                    None => data.error(message),
                });
            }
            symbols.push(v as usize);
        }
        let n_symbols = n_symbols.unwrap_or_else(|| symbols.iter().max().map_or(1, |m| m + 1));
        let observations = Observations::Categorical { symbols, n_symbols };
        Self::new(
            observations,
            Some(lengths),
            data.source.clone(),
            data.row_lines.clone(),
        )
    }

    /// Validated sequences: lengths, finite values, symbols in the vocabulary.
    fn new(
        observations: Observations,
        lengths: Option<Vec<usize>>,
        source: PathBuf,
        row_lines: Option<Vec<usize>>,
    ) -> Result<Self, DataError> {
        let n = match &observations {
            Observations::Gaussian(x) => x.n_rows,
            Observations::Categorical { symbols, .. } => symbols.len(),
        };
        let lengths = lengths.unwrap_or_else(|| vec![n]);
        check_lengths(&lengths, n, &source)?;
        let s = Self {
            observations,
            lengths,
            source,
            row_lines,
        };
        match &s.observations {
            Observations::Gaussian(x) => {
                if x.n_cols == 0 {
                    return Err(s.error("observations have no features"));
                }
                if let Some(i) = x.values.iter().position(|v| !v.is_finite()) {
                    let (row, col) = (i / x.n_cols, i % x.n_cols);
                    let message = format!("feature {col} is {}, not a finite number", x.values[i]);
                    return Err(s.at(row, message));
                }
            }
            Observations::Categorical { n_symbols, .. } => {
                if *n_symbols == 0 {
                    return Err(s.error("n_symbols must be at least 1"));
                }
                s.check_symbols(*n_symbols)?;
            }
        }
        Ok(s)
    }

    pub fn observations(&self) -> &Observations {
        &self.observations
    }

    /// Time steps of each sequence.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    pub fn n_sequences(&self) -> usize {
        self.lengths.len()
    }

    /// Total number of observations (time steps over all sequences).
    pub fn n_observations(&self) -> usize {
        self.lengths.iter().sum()
    }

    /// Start offset of every sequence in the concatenated observations.
    pub fn offsets(&self) -> Vec<usize> {
        self.lengths
            .iter()
            .scan(0, |start, &len| {
                let s = *start;
                *start += len;
                Some(s)
            })
            .collect()
    }

    /// Number of features of Gaussian observations, `None` for symbols.
    pub fn n_features(&self) -> Option<usize> {
        match &self.observations {
            Observations::Gaussian(x) => Some(x.n_cols),
            Observations::Categorical { .. } => None,
        }
    }

    /// A data error about the data as a whole.
    pub fn error(&self, message: impl Into<String>) -> DataError {
        DataError::new(&self.source, message)
    }

    /// A data error about observation `row` (0-based over the concatenation), naming its sequence and
    /// position, and its line when the data came from a text file.
    pub fn at(&self, row: usize, message: impl Into<String>) -> DataError {
        let (seq, pos) = locate(&self.lengths, row);
        let message = format!("sequence {seq}, position {pos}: {}", message.into());
        match self.row_lines.as_ref().and_then(|l| l.get(row)) {
            Some(&line) => DataError::new(&self.source, message).at_line(line),
            None => DataError::new(&self.source, message),
        }
    }

    /// Checks that every symbol is below `n_symbols` (a model's vocabulary may differ from the data's).
    pub fn check_symbols(&self, n_symbols: usize) -> Result<(), DataError> {
        if let Observations::Categorical { symbols, .. } = &self.observations
            && let Some(i) = symbols.iter().position(|&v| v >= n_symbols)
        {
            return Err(self.at(
                i,
                format!(
                    "symbol {} is outside the vocabulary of {n_symbols} symbols (0..{})",
                    symbols[i],
                    n_symbols - 1
                ),
            ));
        }
        Ok(())
    }

    /// Fingerprint of the observations and lengths, for checkpoints.
    pub fn fingerprint(&self) -> String {
        let (kind, shape, values): (u64, u64, Vec<u64>) = match &self.observations {
            Observations::Gaussian(x) => (
                0,
                x.n_cols as u64,
                x.values.iter().map(|v| v.to_bits()).collect(),
            ),
            Observations::Categorical { symbols, n_symbols } => (
                1,
                *n_symbols as u64,
                symbols.iter().map(|&v| v as u64).collect(),
            ),
        };
        let lengths = self.lengths.iter().map(|&l| l as u64);
        fingerprint(
            [kind, shape, self.lengths.len() as u64]
                .into_iter()
                .chain(lengths)
                .chain(values)
                .flat_map(u64::to_le_bytes),
        )
    }
}

/// `(sequence, position)` of observation `row` of the concatenation.
fn locate(lengths: &[usize], row: usize) -> (usize, usize) {
    let mut start = 0;
    for (s, &len) in lengths.iter().enumerate() {
        if row < start + len {
            return (s, row - start);
        }
        start += len;
    }
    (lengths.len(), row - start)
}

/// Checks sequence lengths against the number of observations.
fn check_lengths(lengths: &[usize], n: usize, source: &Path) -> Result<(), DataError> {
    if lengths.is_empty() {
        return Err(DataError::new(source, "there are no sequences"));
    }
    if let Some(s) = lengths.iter().position(|&l| l == 0) {
        return Err(DataError::new(source, format!("sequence {s} is empty")));
    }
    let total: usize = lengths.iter().sum();
    if total != n {
        return Err(DataError::new(
            source,
            format!(
                "the sequence lengths sum to {total} but there are {n} observations ({} sequences)",
                lengths.len()
            ),
        ));
    }
    Ok(())
}

/// Reads a lengths file: one positive integer per line (blank lines and `#` comments are skipped).
/// Errors name the file and the line.
pub fn read_lengths(path: &Path) -> Result<Vec<usize>, DataError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| DataError::new(path, format!("cannot read lengths file: {e}")))?;
    parse_lengths(path, &text)
}

/// [`read_lengths`] on text already read.
pub fn parse_lengths(path: &Path, text: &str) -> Result<Vec<usize>, DataError> {
    let mut lengths = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.split('#').next().unwrap_or("").trim();
        if t.is_empty() {
            continue;
        }
        match t.parse::<usize>() {
            Ok(0) => {
                return Err(
                    DataError::new(path, "a sequence length must be at least 1, found 0")
                        .at_line(i + 1),
                );
            }
            Ok(v) => lengths.push(v),
            Err(_) => {
                return Err(DataError::new(
                    path,
                    format!("expected a sequence length (a positive integer), found `{t}`"),
                )
                .at_line(i + 1));
            }
        }
    }
    if lengths.is_empty() {
        return Err(DataError::new(path, "the lengths file holds no lengths"));
    }
    Ok(lengths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(n: usize) -> Matrix {
        Matrix::new(n, 2, (0..2 * n).map(|v| v as f64).collect())
    }

    #[test]
    fn bad_sequences_are_named() {
        let e = Sequences::gaussian(x(5), Some(vec![2, 0, 3]), "d.csv").unwrap_err();
        assert!(e.to_string().contains("sequence 1 is empty"), "{e}");
        let e = Sequences::gaussian(x(5), Some(vec![2, 2]), "d.csv").unwrap_err();
        assert!(e.message.contains("sum to 4 but there are 5"), "{e}");
        let e = Sequences::gaussian(x(5), Some(vec![]), "d.csv").unwrap_err();
        assert!(e.message.contains("no sequences"), "{e}");
        let mut m = x(5);
        m.values[7] = f64::NAN;
        let e = Sequences::gaussian(m, Some(vec![2, 3]), "d.csv").unwrap_err();
        assert!(
            e.message
                .contains("sequence 1, position 1: feature 1 is NaN"),
            "{e}"
        );
        let e = Sequences::categorical(&[vec![0, 1], vec![], vec![2]], 3, "s").unwrap_err();
        assert!(e.message.contains("sequence 1 is empty"), "{e}");
        let e = Sequences::categorical(&[vec![0, 1], vec![2, 1, 5]], 3, "s").unwrap_err();
        assert!(
            e.message
                .contains("sequence 1, position 2: symbol 5 is outside the vocabulary of 3"),
            "{e}"
        );
        let s = Sequences::categorical(&[vec![0, 1], vec![2]], 3, "s").unwrap();
        assert_eq!((s.n_sequences(), s.n_observations()), (2, 3));
        assert_eq!(s.offsets(), vec![0, 2]);
    }

    #[test]
    fn symbols_from_a_file_name_the_line() {
        let mut data = Dataset::new(Matrix::new(4, 1, vec![0.0, 2.0, 1.5, 1.0]), "sym.csv");
        data.row_lines = Some(vec![2, 3, 4, 5]);
        let e = Sequences::categorical_from_dataset(&data, Some(vec![2, 2]), None).unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("sequence 1, position 0"), "{e}");
        data.x.values[2] = 7.0;
        let s = Sequences::categorical_from_dataset(&data, Some(vec![2, 2]), None).unwrap();
        assert!(matches!(
            s.observations,
            Observations::Categorical { n_symbols: 8, .. }
        ));
        let e = Sequences::categorical_from_dataset(&data, Some(vec![2, 2]), Some(5)).unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("symbol 7"), "{e}");
    }

    #[test]
    fn lengths_file_errors_name_the_line() {
        let p = Path::new("lengths.txt");
        assert_eq!(
            parse_lengths(p, "3\n\n# c\n4 # four\n").unwrap(),
            vec![3, 4]
        );
        let e = parse_lengths(p, "3\nfour\n").unwrap_err();
        assert_eq!((e.line, e.file.as_path()), (Some(2), p));
        assert!(e.message.contains("`four`"), "{e}");
        let e = parse_lengths(p, "3\n-1\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        let e = parse_lengths(p, "1\n0\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(parse_lengths(p, "\n# nothing\n").is_err());
        assert!(read_lengths(Path::new("/nonexistent/lengths.txt")).is_err());
    }

    #[test]
    fn fingerprint_covers_values_and_lengths() {
        let a = Sequences::gaussian(x(5), Some(vec![2, 3]), "a").unwrap();
        let b = Sequences::gaussian(x(5), Some(vec![3, 2]), "a").unwrap();
        let mut m = x(5);
        m.values[0] = 0.5;
        let c = Sequences::gaussian(m, Some(vec![2, 3]), "a").unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
    }
}

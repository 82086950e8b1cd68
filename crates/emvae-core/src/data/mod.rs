//! Data sets: a dense row-major matrix of f64 (rows are observations), optionally with a label per row.
//!
//! Readers for CSV (header and delimiter detection, gzipped or not), NumPy `.npy` and IDX (MNIST) files.
//! Every error names the file and, for text, the line and column, and says what was expected: a NaN, an
//! infinity, a ragged row, a non-numeric cell, an empty file, a wrong magic number, a truncated file.
//! [`stream`] reads CSV and `.npy` files (and generated mixtures) a mini-batch of rows at a time.

mod config;
mod csv_reader;
mod idx;
mod npy;
pub mod stream;
pub mod synthetic;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use config::{Binarize, DataConfig};
pub use csv_reader::{ColumnRef, CsvOptions, Delimiter, HeaderMode, read_csv};
pub use idx::read_idx;
pub use npy::read_npy;

/// A data error, located in its file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct DataError {
    pub file: PathBuf,
    /// 1-based line of a text file, where the error is on one.
    pub line: Option<usize>,
    /// 1-based column (field) number.
    pub column: Option<usize>,
    pub message: String,
}

impl DataError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    pub fn at_column(mut self, column: usize) -> Self {
        self.column = Some(column);
        self
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(col) = self.column {
            write!(f, "column {col}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// A dense row-major matrix of observations.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub n_rows: usize,
    pub n_cols: usize,
    pub values: Vec<f64>,
}

impl Matrix {
    /// A matrix from row-major values; `values.len()` must be `n_rows * n_cols`.
    pub fn new(n_rows: usize, n_cols: usize, values: Vec<f64>) -> Self {
        assert_eq!(
            values.len(),
            n_rows * n_cols,
            "matrix values do not match its shape"
        );
        Self {
            n_rows,
            n_cols,
            values,
        }
    }

    /// A matrix from rows of equal length.
    pub fn from_rows(rows: &[Vec<f64>]) -> Self {
        let n_cols = rows.first().map_or(0, Vec::len);
        let mut values = Vec::with_capacity(rows.len() * n_cols);
        for r in rows {
            assert_eq!(r.len(), n_cols, "ragged rows");
            values.extend_from_slice(r);
        }
        Self::new(rows.len(), n_cols, values)
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.n_cols..(i + 1) * self.n_cols]
    }

    pub fn rows(&self) -> impl Iterator<Item = &[f64]> {
        self.values
            .chunks_exact(self.n_cols.max(1))
            .take(self.n_rows)
    }

    /// The rows at `indices`, in that order.
    pub fn select_rows(&self, indices: &[usize]) -> Self {
        let mut values = Vec::with_capacity(indices.len() * self.n_cols);
        for &i in indices {
            values.extend_from_slice(self.row(i));
        }
        Self::new(indices.len(), self.n_cols, values)
    }

    /// Rows `start..end`.
    pub fn slice_rows(&self, start: usize, end: usize) -> Self {
        Self::new(
            end - start,
            self.n_cols,
            self.values[start * self.n_cols..end * self.n_cols].to_vec(),
        )
    }
}

/// A data set: observations and, for partly labelled data, a known latent class for some rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub x: Matrix,
    /// `labels[i] = Some(j)`: row `i` is known to come from component / class `j`.
    pub labels: Option<Vec<Option<usize>>>,
    /// Column names when the file had a header.
    pub column_names: Option<Vec<String>>,
    /// Where the data came from (a path, or a description of generated data), for messages.
    pub source: PathBuf,
    /// The 1-based line of each row in a text file, for messages about a row.
    pub row_lines: Option<Vec<usize>>,
}

impl Dataset {
    pub fn new(x: Matrix, source: impl Into<PathBuf>) -> Self {
        Self {
            x,
            labels: None,
            column_names: None,
            source: source.into(),
            row_lines: None,
        }
    }

    pub fn n_rows(&self) -> usize {
        self.x.n_rows
    }

    pub fn n_cols(&self) -> usize {
        self.x.n_cols
    }

    /// Number of rows that carry a label.
    pub fn n_labelled(&self) -> usize {
        self.labels
            .as_ref()
            .map_or(0, |l| l.iter().filter(|v| v.is_some()).count())
    }

    /// A data error about this data set as a whole.
    pub fn error(&self, message: impl Into<String>) -> DataError {
        DataError::new(&self.source, message)
    }

    /// A data error about row `i` (0-based), at its line when the file was text.
    pub fn row_error(&self, i: usize, message: impl Into<String>) -> DataError {
        match self.row_lines.as_ref().and_then(|l| l.get(i)) {
            Some(&line) => DataError::new(&self.source, message).at_line(line),
            None => DataError::new(&self.source, format!("row {i}: {}", message.into())),
        }
    }
}

/// File formats [`load`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Decided from the file's first bytes: NumPy magic, IDX magic, else CSV text, unless the file is
    /// named as a binary format (`*.npy`, `*-idx3-ubyte`, `*-ubyte`, `*.idx`): then it is read as that
    /// format, whose reader reports the bad magic number.
    #[default]
    Auto,
    Csv,
    Npy,
    Idx,
}

/// Reads a data file (gzipped or not) in `format`, with `csv` options for text files.
pub fn load(path: &Path, format: Format, csv: &CsvOptions) -> Result<Dataset, DataError> {
    let bytes = read_maybe_gzipped(path)?;
    let (format, by_name) = resolve_format(path, &bytes, format);
    let read = match format {
        Format::Npy => read_npy(path, &bytes).map(|m| Dataset::new(m, path)),
        Format::Idx => read_idx(path, &bytes).map(|m| Dataset::new(m, path)),
        Format::Csv | Format::Auto => read_csv(path, &bytes, csv),
    };
    read.map_err(|e| name_hint(e, by_name))
}

/// Reads a file of labels (one per row): a `.npy` or IDX vector of integers, or a CSV column.
pub fn load_labels(path: &Path, format: Format) -> Result<Vec<Option<usize>>, DataError> {
    let bytes = read_maybe_gzipped(path)?;
    let (format, by_name) = resolve_format(path, &bytes, format);
    let m = match format {
        Format::Npy => read_npy(path, &bytes),
        Format::Idx => read_idx(path, &bytes),
        Format::Csv | Format::Auto => read_csv(path, &bytes, &CsvOptions::default()).map(|d| d.x),
    }
    .map_err(|e| name_hint(e, by_name))?;
    if m.n_cols != 1 && m.n_rows != 1 {
        return Err(DataError::new(
            path,
            format!(
                "a label file holds one label per row, found a {} x {} array",
                m.n_rows, m.n_cols
            ),
        ));
    }
    m.values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            parse_label_value(v).map_err(|msg| DataError::new(path, format!("label {i}: {msg}")))
        })
        .collect()
}

/// A label cell's numeric value: a non-negative integer, or negative for "unknown".
pub(crate) fn parse_label_value(v: f64) -> Result<Option<usize>, String> {
    if v.is_nan() || v < 0.0 {
        Ok(None)
    } else if v.fract() == 0.0 && v < u32::MAX as f64 {
        Ok(Some(v as usize))
    } else {
        Err(format!(
            "expected a non-negative integer label (or -1 for unknown), found {v}"
        ))
    }
}

fn read_maybe_gzipped(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path)
        .map_err(|e| DataError::new(path, format!("cannot read data file: {e}")))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::new(path, format!("corrupt or truncated gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn detect_format(bytes: &[u8]) -> Format {
    if bytes.starts_with(npy::MAGIC) {
        Format::Npy
    } else if idx::looks_like_idx(bytes) {
        Format::Idx
    } else {
        Format::Csv
    }
}

/// The binary format a file's name announces: `*.npy`, or IDX (`train-images-idx3-ubyte`, `*-ubyte`,
/// `*.idx`, `*.idx3`), gzipped or not.
fn format_by_name(path: &Path) -> Option<Format> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    let ext = name.rsplit_once('.').map(|(_, e)| e);
    if ext == Some("npy") {
        Some(Format::Npy)
    } else if name.ends_with("-ubyte")
        || name.ends_with(".ubyte")
        || ext.is_some_and(|e| e == "idx" || (e.len() == 4 && e.starts_with("idx")))
    {
        Some(Format::Idx)
    } else {
        None
    }
}

/// The format to read `bytes` in, and whether it was taken from the file name. With `auto`, the magic
/// numbers decide; failing them, a binary file name does, so that a damaged IDX or `.npy` file is reported
/// as such instead of being read as CSV text.
fn resolve_format(path: &Path, bytes: &[u8], format: Format) -> (Format, bool) {
    match format {
        Format::Auto => match (detect_format(bytes), format_by_name(path)) {
            (Format::Csv, Some(named)) => (named, true),
            (detected, _) => (detected, false),
        },
        f => (f, false),
    }
}

/// Says where the format of a file that failed to read came from, and how to override it.
fn name_hint(mut e: DataError, by_name: bool) -> DataError {
    if by_name {
        e.message.push_str(
            " (the format was taken from the file name; set data.format = \"csv\" if it is text)",
        );
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values() {
        assert_eq!(parse_label_value(3.0), Ok(Some(3)));
        assert_eq!(parse_label_value(-1.0), Ok(None));
        assert!(parse_label_value(1.5).is_err());
    }

    #[test]
    fn binary_formats_are_recognised_by_name_when_the_magic_is_wrong() {
        let text = b"1,2\n3,4\n";
        for name in [
            "train-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte.gz",
            "digits.IDX",
            "digits.idx3",
            "pixels-ubyte",
        ] {
            assert_eq!(
                resolve_format(Path::new(name), text, Format::Auto),
                (Format::Idx, true),
                "{name}"
            );
        }
        assert_eq!(
            resolve_format(Path::new("x.npy"), text, Format::Auto),
            (Format::Npy, true)
        );
        for name in ["data.csv", "idx.csv", "ubyte.txt", "data"] {
            assert_eq!(
                resolve_format(Path::new(name), text, Format::Auto),
                (Format::Csv, false),
                "{name}"
            );
        }
        // The magic decides when there is one; an explicit format always does.
        let idx = idx::tests::idx_u8(&[1, 2], &[1, 2]);
        assert_eq!(
            resolve_format(Path::new("a.csv"), &idx, Format::Auto),
            (Format::Idx, false)
        );
        assert_eq!(
            resolve_format(Path::new("a-idx3-ubyte"), text, Format::Csv),
            (Format::Csv, false)
        );
    }

    #[test]
    fn a_bad_idx_magic_is_reported_for_an_idx_named_file() {
        let dir = std::env::temp_dir().join(format!("emvae-idx-name-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("train-images-idx3-ubyte");
        let mut bytes = idx::tests::idx_u8(&[2, 2], &[0, 1, 2, 3]);
        bytes[2] = 0x07;
        std::fs::write(&path, &bytes).unwrap();
        let e = load(&path, Format::Auto, &CsvOptions::default()).unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.message.contains("wrong magic number 0x00000702"), "{e}");
        assert!(e.message.contains("taken from the file name"), "{e}");
        assert!(!e.message.contains("ragged"), "{e}");
    }

    #[test]
    fn matrix_rows() {
        let m = Matrix::from_rows(&[vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]]);
        assert_eq!(m.row(1), &[3.0, 4.0]);
        assert_eq!(m.select_rows(&[2, 0]).values, vec![5.0, 6.0, 1.0, 2.0]);
        assert_eq!(m.slice_rows(1, 3).n_rows, 2);
    }
}

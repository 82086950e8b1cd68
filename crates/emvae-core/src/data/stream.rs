//! Data sets read in mini-batches of rows, never held whole: the input of online (mini-batch) EM.
//!
//! A [`RowStream`] hands out its rows in order, at most `max_rows` at a time, and can start over for
//! another pass (epoch). Implementations hold one batch at a time (plus what a reader buffers):
//! - [`CsvStream`]: delimited text, gzipped or not, read line by line with the options and errors of
//!   [`read_csv`](super::read_csv) (header, delimiter, the file and line of a bad cell);
//! - [`NpyStream`]: a NumPy `.npy` array read a block of rows at a time;
//! - [`SyntheticStream`]: rows drawn on the fly from a known Gaussian mixture, reproducibly;
//! - [`MatrixStream`]: a matrix already in memory (for tests, and small data through the same path).
//!
//! Streams carry features only; a label column, when the options name one, is left out of the rows.

mod csv;
mod npy;
mod synthetic;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

pub use self::csv::CsvStream;
pub use self::npy::NpyStream;
pub use self::synthetic::SyntheticStream;
use super::{CsvOptions, DataError, Format, Matrix};

/// Rows read in order, a mini-batch at a time.
pub trait RowStream {
    /// Number of columns (features) of every row.
    fn n_cols(&self) -> usize;

    /// The next (at most) `max_rows` rows, or `None` once the stream is exhausted. Only the last
    /// batch of a pass may hold fewer than `max_rows` rows (and never none).
    fn next_batch(&mut self, max_rows: usize) -> Result<Option<Matrix>, DataError>;

    /// Starts over from the first row, for another pass; the rows come again, in the same order.
    fn rewind(&mut self) -> Result<(), DataError>;

    /// Where the rows come from (a path, or a description of generated data), for messages.
    fn source(&self) -> &Path;

    /// Number of rows of a pass, when known without reading them.
    fn len_hint(&self) -> Option<usize> {
        None
    }
}

/// Opens a data file (gzipped or not) as a stream: `.npy` or delimited text, decided as by
/// [`load`](super::load). IDX files are not streamed (they are small enough to load).
pub fn open_stream(
    path: &Path,
    format: Format,
    csv: &CsvOptions,
) -> Result<Box<dyn RowStream>, DataError> {
    let mut head = Vec::new();
    let (reader, gzipped) = open_maybe_gzipped(path)?;
    reader
        .take(16)
        .read_to_end(&mut head)
        .map_err(|e| read_error(path, gzipped, &e))?;
    let (format, by_name) = super::resolve_format(path, &head, format);
    let stream: Result<Box<dyn RowStream>, DataError> = match format {
        Format::Npy => NpyStream::open(path).map(|s| Box::new(s) as Box<dyn RowStream>),
        Format::Idx => Err(DataError::new(
            path,
            "IDX files are not streamed: load them whole (they hold at most a few hundred MB)",
        )),
        Format::Csv | Format::Auto => {
            CsvStream::open(path, csv).map(|s| Box::new(s) as Box<dyn RowStream>)
        }
    };
    stream.map_err(|e| super::name_hint(e, by_name))
}

/// A reader of the file's bytes, decompressed when it starts with the gzip magic, and whether it was.
fn open_maybe_gzipped(path: &Path) -> Result<(Box<dyn BufRead>, bool), DataError> {
    let file = File::open(path)
        .map_err(|e| DataError::new(path, format!("cannot read data file: {e}")))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let gzipped = reader
        .fill_buf()
        .map_err(|e| read_error(path, false, &e))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gzipped {
        let decoder = flate2::read::MultiGzDecoder::new(reader);
        (Box::new(BufReader::with_capacity(1 << 16, decoder)), true)
    } else {
        (Box::new(reader), false)
    })
}

/// The error for a failed read, in [`load`](super::load)'s words.
fn read_error(path: &Path, gzipped: bool, e: &std::io::Error) -> DataError {
    let what = if gzipped {
        "corrupt or truncated gzip stream"
    } else {
        "cannot read data file"
    };
    DataError::new(path, format!("{what}: {e}"))
}

/// A matrix in memory, handed out a batch at a time.
#[derive(Debug, Clone)]
pub struct MatrixStream {
    x: Matrix,
    source: PathBuf,
    next: usize,
}

impl MatrixStream {
    pub fn new(x: Matrix, source: impl Into<PathBuf>) -> Self {
        Self {
            x,
            source: source.into(),
            next: 0,
        }
    }
}

impl RowStream for MatrixStream {
    fn n_cols(&self) -> usize {
        self.x.n_cols
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<Matrix>, DataError> {
        let end = (self.next + max_rows).min(self.x.n_rows);
        if end == self.next {
            return Ok(None);
        }
        let batch = self.x.slice_rows(self.next, end);
        self.next = end;
        Ok(Some(batch))
    }

    fn rewind(&mut self) -> Result<(), DataError> {
        self.next = 0;
        Ok(())
    }

    fn source(&self) -> &Path {
        &self.source
    }

    fn len_hint(&self) -> Option<usize> {
        Some(self.x.n_rows)
    }
}

/// Every row of `stream` from where it stands, read `batch` rows at a time (tests, small data).
pub fn collect_rows(stream: &mut dyn RowStream, batch: usize) -> Result<Matrix, DataError> {
    let mut values = Vec::new();
    let mut n_rows = 0;
    while let Some(b) = stream.next_batch(batch)? {
        n_rows += b.n_rows;
        values.extend(b.values);
    }
    Ok(Matrix::new(n_rows, stream.n_cols(), values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_stream_gives_its_rows_in_batches_and_again_after_rewind() {
        let x = Matrix::new(5, 2, (0..10).map(f64::from).collect());
        let mut s = MatrixStream::new(x.clone(), "m");
        let sizes: Vec<usize> =
            std::iter::from_fn(|| s.next_batch(2).unwrap().map(|b| b.n_rows)).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        assert_eq!(s.next_batch(2).unwrap(), None);
        s.rewind().unwrap();
        assert_eq!(collect_rows(&mut s, 3).unwrap(), x);
    }
}

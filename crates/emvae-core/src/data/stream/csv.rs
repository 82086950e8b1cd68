//! Delimited text read a batch of lines at a time.
//!
//! Each batch's lines are parsed by the whole-file reader ([`read_csv`]) behind a copy of the file's
//! first row (its header, or its first data row): so the delimiter, the header and the columns are
//! decided exactly as for the whole file, every batch is checked by the same code, and an error names
//! the line of the file, not of the batch. A copied first data row is dropped from the batch.
//!
//! Batches end between records: a quoted field may hold line breaks, so a line with an odd number of
//! `"` opens a record that only a later line with an odd number closes.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::{RowStream, open_maybe_gzipped, read_error};
use crate::data::{CsvOptions, DataError, Matrix, read_csv};

/// Lines an unterminated quote may run on for past a batch's records before the batch is cut (and
/// the parser reports the bad field): a bound on memory, not a limit of well-formed files.
const MAX_OPEN_QUOTE_LINES: usize = 1 << 16;

/// A delimited text file (gzipped or not), read a batch of lines at a time.
pub struct CsvStream {
    path: PathBuf,
    opts: CsvOptions,
    reader: Box<dyn BufRead>,
    gzipped: bool,
    /// Number of the last line read (1-based).
    line: usize,
    /// The record the layout was decided on (header or first data row): its text, first line and
    /// number of lines.
    first_row: Vec<u8>,
    first_row_line: usize,
    first_row_lines: usize,
    header: bool,
    n_cols: usize,
    /// Rows parsed but not handed out yet, row-major.
    pending: Vec<f64>,
    eof: bool,
}

/// Whether a line is neither blank nor a comment (as [`read_csv`] skips them).
fn is_record(line: &[u8]) -> bool {
    let t = line.trim_ascii();
    !t.is_empty() && !t.starts_with(b"#")
}

fn odd_quotes(line: &[u8]) -> bool {
    line.iter().filter(|&&b| b == b'"').count() % 2 == 1
}

impl CsvStream {
    /// Opens `path` and reads its first rows: a file [`read_csv`] refuses (empty, a header without
    /// rows, a bad first row) is refused here.
    pub fn open(path: &Path, opts: &CsvOptions) -> Result<Self, DataError> {
        let (reader, gzipped) = open_maybe_gzipped(path)?;
        let mut s = Self {
            path: path.to_path_buf(),
            opts: opts.clone(),
            reader,
            gzipped,
            line: 0,
            first_row: Vec::new(),
            first_row_line: 0,
            first_row_lines: 0,
            header: false,
            n_cols: 0,
            pending: Vec::new(),
            eof: false,
        };
        // Everything up to the first record, then the first record (on one line or more).
        let mut text = Vec::new();
        let mut open_quote = false;
        loop {
            let start = text.len();
            if !s.read_line(&mut text)? {
                break;
            }
            let line = &text[start..];
            if s.first_row_lines == 0 && !is_record(line) {
                continue;
            }
            if s.first_row_lines == 0 {
                s.first_row_line = s.line;
            }
            s.first_row.extend_from_slice(line);
            s.first_row_lines += 1;
            open_quote ^= odd_quotes(line);
            if !open_quote || s.first_row_lines > MAX_OPEN_QUOTE_LINES {
                break;
            }
        }
        if !s.first_row.ends_with(b"\n") {
            s.first_row.push(b'\n');
        }
        // One more record tells a header from data, and a header without rows fails here.
        s.read_records(&mut text, 1)?;
        let d = read_csv(path, &text, opts)?;
        s.header = d.column_names.is_some();
        s.n_cols = d.n_cols();
        s.pending = d.x.values;
        Ok(s)
    }

    /// Appends the next line (with its end of line) to `buf`; false at the end of the file.
    fn read_line(&mut self, buf: &mut Vec<u8>) -> Result<bool, DataError> {
        let n = self
            .reader
            .read_until(b'\n', buf)
            .map_err(|e| read_error(&self.path, self.gzipped, &e))?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.line += 1;
        Ok(true)
    }

    /// Appends lines to `text` until it holds `want` more records (or the file ends); returns how
    /// many it holds.
    fn read_records(&mut self, text: &mut Vec<u8>, want: usize) -> Result<usize, DataError> {
        let (mut records, mut open_quote, mut open_lines) = (0, false, 0);
        while records < want || open_quote {
            let start = text.len();
            if !self.read_line(text)? {
                break;
            }
            let line = &text[start..];
            if open_quote {
                open_lines += 1;
            } else if is_record(line) {
                records += 1;
            } else {
                continue;
            }
            open_quote ^= odd_quotes(line);
            if open_lines > MAX_OPEN_QUOTE_LINES {
                break;
            }
        }
        Ok(records)
    }

    fn pending_rows(&self) -> usize {
        self.pending.len() / self.n_cols
    }
}

impl RowStream for CsvStream {
    fn n_cols(&self) -> usize {
        self.n_cols
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<Matrix>, DataError> {
        let max_rows = max_rows.max(1);
        while self.pending_rows() < max_rows && !self.eof {
            let mut text = self.first_row.clone();
            let chunk_start = self.line + 1;
            let want = max_rows - self.pending_rows();
            if self.read_records(&mut text, want)? == 0 {
                break;
            }
            let (first_line, first_lines) = (self.first_row_line, self.first_row_lines);
            let d = read_csv(&self.path, &text, &self.opts).map_err(|mut e| {
                // Lines of `text` back to lines of the file.
                e.line = e.line.map(|l| {
                    if l <= first_lines {
                        first_line + l - 1
                    } else {
                        chunk_start + l - first_lines - 1
                    }
                });
                e
            })?;
            let copied = if self.header { 0 } else { self.n_cols };
            self.pending.extend_from_slice(&d.x.values[copied..]);
        }
        let rows = self.pending_rows().min(max_rows);
        if rows == 0 {
            return Ok(None);
        }
        let values: Vec<f64> = self.pending.drain(..rows * self.n_cols).collect();
        Ok(Some(Matrix::new(rows, self.n_cols, values)))
    }

    fn rewind(&mut self) -> Result<(), DataError> {
        *self = Self::open(&self.path, &self.opts)?;
        Ok(())
    }

    fn source(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::data::stream::collect_rows;
    use crate::data::{ColumnRef, Delimiter, Format, load};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("emvae-csv-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn write(path: &Path, text: &str, gzip: bool) {
        if gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(text.as_bytes()).unwrap();
            std::fs::write(path, enc.finish().unwrap()).unwrap();
        } else {
            std::fs::write(path, text).unwrap();
        }
    }

    /// A random delimited file: delimiters, headers (some spanning lines), comments (some holding a
    /// lone quote), blank lines, CRLF, quoted cells, a label column, and now and then a bad row.
    fn random_file(rng: &mut rand_chacha::ChaCha8Rng) -> (String, CsvOptions) {
        let n_cols = rng.random_range(1..=5);
        let delim = [",", "\t", ";", " "][rng.random_range(0..4)];
        let csv_mode = delim != " " && n_cols > 1;
        let eol = if rng.random_bool(0.3) { "\r\n" } else { "\n" };
        let labelled = rng.random_bool(0.2);
        let mut lines: Vec<String> = Vec::new();
        if rng.random_bool(0.2) {
            lines.push("# leading comment".into());
        }
        if rng.random_bool(0.5) {
            let mut names: Vec<String> = (0..n_cols).map(|j| format!("c{j}")).collect();
            if csv_mode && rng.random_bool(0.3) {
                names[0] = "\"first\nname\"".into();
            }
            if labelled {
                names.push("label".into());
            }
            lines.push(names.join(delim));
        }
        let bad = rng.random_bool(0.15).then(|| rng.random_range(0..300));
        for i in 0..rng.random_range(1..300) {
            match rng.random_range(0..40) {
                0 => lines.push("# a comment with a lone \" quote".into()),
                1 => lines.push(String::new()),
                2 => lines.push("   ".into()),
                _ => {}
            }
            let mut cells: Vec<String> = (0..n_cols)
                .map(|_| {
                    let v = rng.random_range(-1e3..1e3f64);
                    match rng.random_range(0..4) {
                        0 => format!("{v:e}"),
                        1 => format!("{}", v.round()),
                        2 if csv_mode => format!("\"{v}\""),
                        _ => format!("{v}"),
                    }
                })
                .collect();
            if labelled {
                let unknown = if csv_mode { "" } else { "NA" };
                cells.push([unknown, "0", "1"][rng.random_range(0..3)].into());
            }
            if bad == Some(i) {
                match rng.random_range(0..3) {
                    0 => cells[0] = "x".into(),
                    1 => cells[0] = "nan".into(),
                    _ => {
                        cells.pop();
                    }
                }
            }
            lines.push(cells.join(delim));
        }
        let mut text = lines.join(eol);
        if rng.random_bool(0.8) {
            text.push_str(eol);
        }
        // Detection reads the first line: a header spanning lines needs the delimiter named.
        let delimiter = match delim {
            " " => Delimiter::Whitespace,
            _ if rng.random_bool(0.5) => Delimiter::Char(delim.as_bytes()[0]),
            _ => Delimiter::Auto,
        };
        let opts = CsvOptions {
            label_column: labelled.then_some(ColumnRef::Index(n_cols)),
            delimiter,
            ..Default::default()
        };
        (text, opts)
    }

    /// The property: a stream read in batches of any size gives the whole-file reader's rows, or its
    /// error (same line, column and message), pass after pass.
    #[test]
    fn the_stream_gives_the_rows_or_the_error_of_the_whole_file_reader() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (mut rows, mut errors) = (0, 0);
        for case in 0..300 {
            let (text, opts) = random_file(&mut rng);
            let gzip = rng.random_bool(0.25);
            let path = scratch(&format!("case{case}.csv"));
            write(&path, &text, gzip);
            let whole = load(&path, Format::Csv, &opts).map(|d| d.x);
            let batch = rng.random_range(1..40);
            let streamed = CsvStream::open(&path, &opts).and_then(|mut s| {
                let first = collect_rows(&mut s, batch)?;
                s.rewind()?;
                assert_eq!(
                    collect_rows(&mut s, batch + 1)?,
                    first,
                    "case {case}: second pass"
                );
                Ok(first)
            });
            match (&whole, &streamed) {
                (Ok(_), _) => rows += 1,
                (Err(_), _) => errors += 1,
            }
            assert_eq!(streamed, whole, "case {case}, batch {batch}:\n{text}");
            let _ = std::fs::remove_file(&path);
        }
        // Both kinds of file were tried.
        assert!(rows > 150 && errors > 20, "{rows} read, {errors} refused");
    }

    #[test]
    fn a_bad_cell_deep_in_the_file_is_reported_at_its_line() {
        let bad_line = 45_678;
        let mut text = String::from("a,b,c\n");
        for line in 2..=60_000 {
            if line == bad_line {
                text.push_str("1,oops,3\n");
            } else {
                text.push_str(&format!("{line},{}.5,-{line}\n", line % 7));
            }
        }
        let path = scratch("deep.csv");
        write(&path, &text, false);
        let opts = CsvOptions::default();
        let whole = load(&path, Format::Csv, &opts).unwrap_err();
        let mut s = CsvStream::open(&path, &opts).unwrap();
        let mut good_rows = 0;
        let e = loop {
            match s.next_batch(1000) {
                Ok(Some(b)) => good_rows += b.n_rows,
                Ok(None) => panic!("no error"),
                Err(e) => break e,
            }
        };
        let mut auto = super::super::open_stream(&path, Format::Auto, &opts).unwrap();
        assert_eq!(collect_rows(auto.as_mut(), 7_000).unwrap_err(), whole);
        let _ = std::fs::remove_file(&path);
        assert_eq!((e.line, e.column), (Some(bad_line), Some(2)), "{e}");
        assert_eq!(e, whole);
        assert!(
            e.to_string()
                .contains(":45678: column 2: cannot read `oops`"),
            "{e}"
        );
        // The batches before the one holding the bad line were handed out.
        assert_eq!(good_rows, 45_000);
    }

    #[test]
    fn files_the_whole_reader_refuses_are_refused_at_open() {
        for (text, needle) in [
            ("", "empty"),
            ("# only a comment\n", "empty"),
            ("a,b\n", "no data rows"),
            ("1,b\n2,3\n", "mixes numbers and text"),
        ] {
            let path = scratch("refused.csv");
            write(&path, text, false);
            let e = CsvStream::open(&path, &CsvOptions::default())
                .err()
                .unwrap_or_else(|| panic!("{text:?} was accepted"));
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }
}

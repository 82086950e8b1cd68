//! A NumPy `.npy` array read a block of rows at a time, with [`read_npy`](crate::data::read_npy)'s
//! header parsing and errors.
//!
//! C order (row-major) is read sequentially, gzipped or not. Fortran order stores each column
//! contiguously, so a block of rows is one read per column: the file must be seekable (not gzipped).

use std::fs::File;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{RowStream, open_maybe_gzipped, read_error};
use crate::data::npy::{NpyHeader, check_finite, header_extent, parse_header};
use crate::data::{DataError, Matrix};

/// Where the data bytes come from.
enum Source {
    /// Row-major data, read in order.
    Sequential(Box<dyn BufRead>),
    /// Column-major data in a plain file, read column by column.
    Columns(File),
}

/// A `.npy` file read a block of rows at a time.
pub struct NpyStream {
    path: PathBuf,
    header: NpyHeader,
    source: Source,
    gzipped: bool,
    /// Rows handed out so far.
    row: usize,
}

impl NpyStream {
    /// Opens `path` and parses its header; a plain file shorter than its shape needs is refused here.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let (mut reader, gzipped) = open_maybe_gzipped(path)?;
        let mut bytes = Vec::new();
        (&mut reader)
            .take(12)
            .read_to_end(&mut bytes)
            .map_err(|e| read_error(path, gzipped, &e))?;
        let data_offset = header_extent(path, &bytes)?;
        (&mut reader)
            .take((data_offset - bytes.len()) as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| read_error(path, gzipped, &e))?;
        let header = parse_header(path, &bytes)?;
        let source = if gzipped {
            if header.fortran && header.shape.len() > 1 {
                return Err(DataError::new(
                    path,
                    "a gzipped Fortran-order .npy file cannot be streamed (its rows are spread over the \
                     whole file): decompress it, or save it in C order",
                ));
            }
            Source::Sequential(reader)
        } else {
            let file = File::open(path)
                .map_err(|e| DataError::new(path, format!("cannot read data file: {e}")))?;
            let len = file
                .metadata()
                .map_err(|e| read_error(path, false, &e))?
                .len() as usize;
            let available = len.saturating_sub(header.data_offset);
            if available < header.needed {
                return Err(header.truncated(path, available));
            }
            if header.fortran && header.shape.len() > 1 {
                Source::Columns(file)
            } else {
                drop(file);
                Source::Sequential(reader)
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            header,
            source,
            gzipped,
            row: 0,
        })
    }

    /// The raw bytes of rows `start..end`, row-major.
    fn read_rows(&mut self, start: usize, end: usize) -> Result<Vec<u8>, DataError> {
        let h = &self.header;
        let size = h.elem.size;
        let rows = end - start;
        let io = |e: std::io::Error| read_error(&self.path, self.gzipped, &e);
        match &mut self.source {
            Source::Sequential(reader) => {
                let mut raw = vec![0; rows * h.n_cols * size];
                reader.read_exact(&mut raw).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        // Only a gzipped file can end early: a plain one was measured at `open`.
                        DataError::new(
                            &self.path,
                            format!(
                                "truncated .npy data: shape {:?} of '{}' needs {} bytes, the data end \
                                 within rows {start}..{end}",
                                h.shape, h.descr, h.needed
                            ),
                        )
                    } else {
                        io(e)
                    }
                })?;
                Ok(raw)
            }
            Source::Columns(file) => {
                // Column j holds element (i, j) at j * n_rows + i; gather it into row-major order.
                let mut raw = vec![0; rows * h.n_cols * size];
                let mut column = vec![0; rows * size];
                for j in 0..h.n_cols {
                    let at = h.data_offset + (j * h.n_rows + start) * size;
                    file.seek(SeekFrom::Start(at as u64)).map_err(io)?;
                    file.read_exact(&mut column).map_err(io)?;
                    for (i, v) in column.chunks_exact(size).enumerate() {
                        let to = (i * h.n_cols + j) * size;
                        raw[to..to + size].copy_from_slice(v);
                    }
                }
                Ok(raw)
            }
        }
    }
}

impl RowStream for NpyStream {
    fn n_cols(&self) -> usize {
        self.header.n_cols
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<Matrix>, DataError> {
        let start = self.row;
        let end = (start + max_rows.max(1)).min(self.header.n_rows);
        if end == start {
            return Ok(None);
        }
        let raw = self.read_rows(start, end)?;
        let values: Vec<f64> = raw
            .chunks_exact(self.header.elem.size)
            .map(|c| self.header.elem.read(c))
            .collect();
        check_finite(&self.path, &values, start, self.header.n_cols)?;
        self.row = end;
        Ok(Some(Matrix::new(end - start, self.header.n_cols, values)))
    }

    fn rewind(&mut self) -> Result<(), DataError> {
        *self = Self::open(&self.path)?;
        Ok(())
    }

    fn source(&self) -> &Path {
        &self.path
    }

    fn len_hint(&self) -> Option<usize> {
        Some(self.header.n_rows)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::data::npy::tests::npy_bytes;
    use crate::data::stream::{collect_rows, open_stream};
    use crate::data::{CsvOptions, Format, read_npy};

    fn scratch(name: &str, bytes: &[u8], gzip: bool) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("emvae-npy-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        if gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(bytes).unwrap();
            std::fs::write(&path, enc.finish().unwrap()).unwrap();
        } else {
            std::fs::write(&path, bytes).unwrap();
        }
        path
    }

    fn f8(values: impl IntoIterator<Item = f64>) -> Vec<u8> {
        values.into_iter().flat_map(f64::to_le_bytes).collect()
    }

    #[test]
    fn batches_give_the_whole_file_readers_rows_in_either_order_gzipped_or_not() {
        let data = f8((0..7 * 3).map(|v| v as f64 * 0.5 - 2.0));
        for (fortran, gzip) in [(false, false), (true, false), (false, true)] {
            let bytes = npy_bytes("<f8", "(7, 3)", fortran, &data);
            let whole = read_npy(Path::new("a.npy"), &bytes).unwrap();
            let path = scratch("a.npy", &bytes, gzip);
            for batch in [1, 2, 3, 7, 100] {
                let mut s = NpyStream::open(&path).unwrap();
                assert_eq!((s.n_cols(), s.len_hint()), (3, Some(7)));
                assert_eq!(
                    collect_rows(&mut s, batch).unwrap(),
                    whole,
                    "{fortran} {batch}"
                );
                s.rewind().unwrap();
                assert_eq!(collect_rows(&mut s, batch).unwrap(), whole);
            }
            // Found by its magic, whatever its name.
            let mut s = open_stream(&path, Format::Auto, &CsvOptions::default()).unwrap();
            assert_eq!(collect_rows(s.as_mut(), 4).unwrap(), whole);
        }
        // Images: trailing dimensions flattened, integer dtype.
        let bytes = npy_bytes("|u1", "(3, 2, 2)", false, &(0..12).collect::<Vec<u8>>());
        let mut s = NpyStream::open(&scratch("img.npy", &bytes, false)).unwrap();
        assert_eq!(
            collect_rows(&mut s, 2).unwrap(),
            read_npy(Path::new("img.npy"), &bytes).unwrap()
        );
    }

    #[test]
    fn bad_files_give_the_whole_file_readers_errors() {
        // Truncated: refused at open, with the same message.
        let bytes = npy_bytes("<f8", "(4, 2)", false, &f8([1.0; 7]));
        let whole = read_npy(Path::new("t.npy"), &bytes).unwrap_err();
        let e = NpyStream::open(&scratch("t.npy", &bytes, false))
            .err()
            .unwrap();
        assert_eq!(e.message, whole.message);
        // Truncated and gzipped: found when the data run out.
        let mut s = NpyStream::open(&scratch("t.npy", &bytes, true)).unwrap();
        let e = collect_rows(&mut s, 3).unwrap_err();
        assert!(e.message.contains("truncated .npy data"), "{e}");
        // A NaN: the same row and column as the whole-file reader, in a later batch.
        let mut values = vec![1.0; 10];
        values[7] = f64::NAN;
        let bytes = npy_bytes("<f8", "(5, 2)", false, &f8(values));
        let whole = read_npy(Path::new("n.npy"), &bytes).unwrap_err();
        let mut s = NpyStream::open(&scratch("n.npy", &bytes, false)).unwrap();
        let e = collect_rows(&mut s, 2).unwrap_err();
        assert_eq!(e.message, whole.message);
        assert!(e.message.contains("row 3 column 1"), "{e}");
        // Fortran order cannot be streamed from a gzipped file.
        let bytes = npy_bytes("<f8", "(5, 2)", true, &f8([1.0; 10]));
        let e = NpyStream::open(&scratch("f.npy", &bytes, true))
            .err()
            .unwrap();
        assert!(e.message.contains("Fortran"), "{e}");
        let e = NpyStream::open(&scratch(
            "m.npy",
            b"\x93NUMPY\x07\x00\x00\x00\x00\x00",
            false,
        ))
        .err()
        .unwrap();
        assert!(e.message.contains("version 7"), "{e}");
    }
}

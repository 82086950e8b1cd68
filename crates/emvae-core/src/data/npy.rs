//! NumPy `.npy` reader (format versions 1, 2 and 3; numeric dtypes; C or Fortran order).
//!
//! A 1-D array is read as one column, a 2-D array as rows x columns, and an array of higher rank (such
//! as images `(n, 28, 28)`) as `n` rows of its flattened trailing dimensions.

use std::path::Path;

use super::{DataError, Matrix};

pub(super) const MAGIC: &[u8] = b"\x93NUMPY";

pub fn read_npy(path: &Path, bytes: &[u8]) -> Result<Matrix, DataError> {
    let h = parse_header(path, bytes)?;
    let data = &bytes[h.data_offset..];
    if data.len() < h.needed {
        return Err(h.truncated(path, data.len()));
    }
    let mut values: Vec<f64> = data[..h.needed]
        .chunks_exact(h.elem.size)
        .map(|c| h.elem.read(c))
        .collect();
    let (n_rows, n_cols) = (h.n_rows, h.n_cols);
    if h.fortran && h.shape.len() > 1 {
        // Column-major: element (i, j) sits at j * n_rows + i.
        let mut c_order = vec![0.0; h.count];
        for i in 0..n_rows {
            for j in 0..n_cols {
                c_order[i * n_cols + j] = values[j * n_rows + i];
            }
        }
        values = c_order;
    }
    check_finite(path, &values, 0, n_cols)?;
    Ok(Matrix::new(n_rows, n_cols, values))
}

/// What a `.npy` header says: the element type, the layout and where the data start.
pub(super) struct NpyHeader {
    pub descr: String,
    pub elem: Elem,
    pub fortran: bool,
    pub shape: Vec<usize>,
    pub n_rows: usize,
    pub n_cols: usize,
    /// `n_rows * n_cols`.
    pub count: usize,
    /// Bytes of data the shape needs.
    pub needed: usize,
    /// Offset of the data: the magic, version, length and header text.
    pub data_offset: usize,
}

impl NpyHeader {
    /// The error for a file whose data stop after `available` bytes.
    pub fn truncated(&self, path: &Path, available: usize) -> DataError {
        DataError::new(
            path,
            format!(
                "truncated .npy data: shape {:?} of '{}' needs {} bytes, the file holds {available}",
                self.shape, self.descr, self.needed
            ),
        )
    }
}

/// The offset of the data (the whole header's length) from the first 12 bytes of a `.npy` file.
pub(super) fn header_extent(path: &Path, bytes: &[u8]) -> Result<usize, DataError> {
    let err = |m: String| DataError::new(path, m);
    if !bytes.starts_with(MAGIC) {
        return Err(err(
            "not a NumPy .npy file (missing the \\x93NUMPY magic)".into()
        ));
    }
    match bytes.get(6..12) {
        Some(&[1, _, a, b, ..]) => Ok(10 + u16::from_le_bytes([a, b]) as usize),
        Some(&[2 | 3, _, a, b, c, d]) => Ok(12 + u32::from_le_bytes([a, b, c, d]) as usize),
        Some(&[v, ..]) => Err(err(format!("unsupported .npy format version {v}"))),
        _ => Err(err("truncated .npy header".into())),
    }
}

/// Parses the header at the start of `bytes` (which may stop where the data start).
pub(super) fn parse_header(path: &Path, bytes: &[u8]) -> Result<NpyHeader, DataError> {
    let err = |m: String| DataError::new(path, m);
    let data_offset = header_extent(path, bytes)?;
    let (major, header_start) = if bytes[6] == 1 {
        (1, 10)
    } else {
        (bytes[6], 12)
    };
    let header_bytes = bytes
        .get(header_start..data_offset)
        .ok_or_else(|| err("truncated .npy header".into()))?;
    let header = if major == 3 {
        String::from_utf8_lossy(header_bytes).into_owned()
    } else {
        header_bytes.iter().map(|&b| b as char).collect()
    };
    let descr = dict_value(&header, "descr")
        .ok_or_else(|| err(format!("no 'descr' in .npy header: {header}")))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran = dict_value(&header, "fortran_order")
        .map(|v| v.starts_with("True"))
        .unwrap_or(false);
    let shape_text = dict_value(&header, "shape")
        .ok_or_else(|| err(format!("no 'shape' in .npy header: {header}")))?;
    let shape: Vec<usize> = shape_text
        .trim_start_matches('(')
        .split([',', ')'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| err(format!("bad shape {shape_text} in .npy header")))
        })
        .collect::<Result<_, _>>()?;
    let elem = Elem::parse(descr).ok_or_else(|| {
        err(format!(
            "unsupported .npy dtype '{descr}': expected a numeric type (f4, f8, i1..i8, u1..u8, b1)"
        ))
    })?;
    if shape.contains(&0) {
        return Err(err(format!("the array holds no values: shape {shape:?}")));
    }
    let available = bytes.len() - data_offset;
    // Sizes beyond the address space overflow; they are more than any file holds.
    let n_rows = shape.first().copied().unwrap_or(1);
    let n_cols = shape
        .iter()
        .skip(1)
        .try_fold(1usize, |a, &d| a.checked_mul(d));
    let count = n_cols.and_then(|c| c.checked_mul(n_rows));
    let needed = count.and_then(|c| c.checked_mul(elem.size));
    let (Some(n_cols), Some(count), Some(needed)) = (n_cols, count, needed) else {
        return Err(err(format!(
            "truncated .npy data: shape {shape:?} of '{descr}' needs more bytes than any file holds, the \
             file holds {available}"
        )));
    };
    Ok(NpyHeader {
        descr: descr.to_string(),
        elem,
        fortran,
        shape,
        n_rows,
        n_cols,
        count,
        needed,
        data_offset,
    })
}

/// The error for the first value that is not finite; `values` are rows from `first_row` on.
pub(super) fn check_finite(
    path: &Path,
    values: &[f64],
    first_row: usize,
    n_cols: usize,
) -> Result<(), DataError> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(pos) => Err(DataError::new(
            path,
            format!(
                "row {} column {}: {} is not a finite number",
                first_row + pos / n_cols.max(1),
                pos % n_cols.max(1),
                values[pos]
            ),
        )),
    }
}

/// The raw text of `key`'s value in a Python dict literal (up to the next top-level comma).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[..=i]);
                }
            }
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

pub(super) struct Elem {
    kind: u8,
    pub size: usize,
    big_endian: bool,
}

impl Elem {
    fn parse(descr: &str) -> Option<Self> {
        // By bytes: the header is arbitrary text, and its first character need not be one byte long.
        let (big_endian, rest) = match descr.as_bytes().first() {
            Some(b'<' | b'|' | b'=') => (false, &descr.as_bytes()[1..]),
            Some(b'>') => (true, &descr.as_bytes()[1..]),
            _ => (false, descr.as_bytes()),
        };
        let (&kind, size) = rest.split_first()?;
        let size: usize = std::str::from_utf8(size).ok()?.parse().ok()?;
        let ok = matches!(
            (kind, size),
            (b'f', 4 | 8) | (b'i' | b'u', 1 | 2 | 4 | 8) | (b'b', 1)
        );
        ok.then_some(Self {
            kind,
            size,
            big_endian,
        })
    }

    pub fn read(&self, c: &[u8]) -> f64 {
        let mut buf = [0u8; 8];
        buf[..self.size].copy_from_slice(c);
        if self.big_endian {
            buf[..self.size].reverse();
        }
        match (self.kind, self.size) {
            (b'f', 4) => f32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as f64,
            (b'f', 8) => f64::from_le_bytes(buf),
            (b'i', 1) => buf[0] as i8 as f64,
            (b'i', 2) => i16::from_le_bytes([buf[0], buf[1]]) as f64,
            (b'i', 4) => i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as f64,
            (b'i', 8) => i64::from_le_bytes(buf) as f64,
            (b'u', 2) => u16::from_le_bytes([buf[0], buf[1]]) as f64,
            (b'u', 4) => u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as f64,
            (b'u', 8) => u64::from_le_bytes(buf) as f64,
            // u1 and b1
            _ => buf[0] as f64,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes of a version-1 .npy file.
    pub(crate) fn npy_bytes(descr: &str, shape: &str, fortran: bool, data: &[u8]) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_f8_c_and_fortran_order() {
        let vals: Vec<u8> = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let m = read_npy(
            Path::new("a.npy"),
            &npy_bytes("<f8", "(2, 3)", false, &vals),
        )
        .unwrap();
        assert_eq!((m.n_rows, m.n_cols), (2, 3));
        assert_eq!(m.row(1), &[4.0, 5.0, 6.0]);
        let m = read_npy(Path::new("a.npy"), &npy_bytes("<f8", "(2, 3)", true, &vals)).unwrap();
        assert_eq!(m.row(0), &[1.0, 3.0, 5.0]);
    }

    #[test]
    fn reads_images_as_flat_rows_and_rejects_truncation() {
        let vals = vec![7u8; 2 * 2 * 2];
        let m = read_npy(
            Path::new("a.npy"),
            &npy_bytes("|u1", "(2, 2, 2)", false, &vals),
        )
        .unwrap();
        assert_eq!((m.n_rows, m.n_cols), (2, 4));
        let e = read_npy(
            Path::new("a.npy"),
            &npy_bytes("|u1", "(3, 2, 2)", false, &vals),
        )
        .unwrap_err();
        assert!(e.message.contains("truncated"), "{e}");
        let e = read_npy(Path::new("a.npy"), &npy_bytes("<U8", "(1,)", false, &vals)).unwrap_err();
        assert!(e.message.contains("unsupported"), "{e}");
    }

    /// Fuzzing found these: a dtype starting with a character of two bytes panicked (the string was
    /// split inside it); a shape whose size overflows wrapped around to a small one and was accepted as
    /// an inconsistent matrix; an empty array was accepted as a matrix of no values.
    #[test]
    fn odd_dtypes_huge_and_empty_shapes_are_errors() {
        let vals = vec![7u8; 16];
        for descr in ["é8", "<é", ">é4", "\u{e9}", "<", ""] {
            let e =
                read_npy(Path::new("a.npy"), &npy_bytes(descr, "(2,)", false, &vals)).unwrap_err();
            assert!(e.message.contains("unsupported .npy dtype"), "{descr}: {e}");
        }
        // 2^62 rows of 4 eight-byte values: 2^67 bytes, which wrapped to 0.
        for shape in [
            "(4611686018427387904, 4)",
            "(18446744073709551615, 2)",
            "(65536, 65536, 65536, 65536)",
        ] {
            let e =
                read_npy(Path::new("a.npy"), &npy_bytes("<f8", shape, false, &vals)).unwrap_err();
            assert!(e.message.contains("truncated"), "{shape}: {e}");
        }
        for shape in ["(0,)", "(3, 0)", "(0, 2)", "(2, 0, 2)"] {
            let e =
                read_npy(Path::new("a.npy"), &npy_bytes("|u1", shape, false, &vals)).unwrap_err();
            assert!(e.message.contains("holds no values"), "{shape}: {e}");
        }
    }
}

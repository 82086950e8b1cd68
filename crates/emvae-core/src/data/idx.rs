//! IDX reader: the format of the MNIST files (`train-images-idx3-ubyte`, gzipped or not).
//!
//! Magic number: two zero bytes, a type code (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64)
//! and the number of dimensions; then each dimension as a big-endian u32; then the data, big-endian.
//! A 1-D file (labels) is one column; higher ranks are rows of the flattened trailing dimensions.

use std::path::Path;

use super::{DataError, Matrix};

fn elem_size(code: u8) -> Option<usize> {
    match code {
        0x08 | 0x09 => Some(1),
        0x0B => Some(2),
        0x0C | 0x0D => Some(4),
        0x0E => Some(8),
        _ => None,
    }
}

pub(super) fn looks_like_idx(bytes: &[u8]) -> bool {
    bytes.len() >= 4
        && bytes[0] == 0
        && bytes[1] == 0
        && elem_size(bytes[2]).is_some()
        && (1..=4).contains(&bytes[3])
}

pub fn read_idx(path: &Path, bytes: &[u8]) -> Result<Matrix, DataError> {
    let err = |m: String| DataError::new(path, m);
    if bytes.len() < 4 {
        return Err(err(format!(
            "not an IDX file: {} bytes, too short for the 4-byte magic number",
            bytes.len()
        )));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let size = elem_size(bytes[2]);
    if bytes[0] != 0 || bytes[1] != 0 || size.is_none() || !(1..=4).contains(&bytes[3]) {
        return Err(err(format!(
            "not an IDX file: wrong magic number 0x{magic:08X} (expected 0x000008NN for unsigned bytes, e.g. \
             0x00000803 for MNIST images or 0x00000801 for labels)"
        )));
    }
    let size = size.unwrap_or(1);
    let ndim = bytes[3] as usize;
    let dims_end = 4 + 4 * ndim;
    if bytes.len() < dims_end {
        return Err(err(format!(
            "truncated IDX header: {ndim} dimensions need {dims_end} bytes"
        )));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    if dims.contains(&0) {
        return Err(err(format!(
            "the IDX file holds no values: dimensions {dims:?}"
        )));
    }
    let n_rows = dims[0];
    let data = &bytes[dims_end..];
    // Sizes beyond the address space overflow; they are more than any file holds.
    let n_cols = dims[1..].iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let needed = n_cols
        .and_then(|c| c.checked_mul(n_rows))
        .and_then(|c| c.checked_mul(size));
    let (Some(n_cols), Some(needed)) = (n_cols, needed) else {
        return Err(err(format!(
            "truncated IDX file: dimensions {dims:?} need more bytes than any file holds, the file holds {}",
            data.len()
        )));
    };
    if data.len() < needed {
        return Err(err(format!(
            "truncated IDX file: dimensions {dims:?} need {needed} bytes of data, the file holds {}",
            data.len()
        )));
    }
    let code = bytes[2];
    let values: Vec<f64> = data[..needed]
        .chunks_exact(size)
        .map(|c| match code {
            0x08 => c[0] as f64,
            0x09 => c[0] as i8 as f64,
            0x0B => i16::from_be_bytes([c[0], c[1]]) as f64,
            0x0C => i32::from_be_bytes([c[0], c[1], c[2], c[3]]) as f64,
            0x0D => f32::from_be_bytes([c[0], c[1], c[2], c[3]]) as f64,
            _ => f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        })
        .collect();
    if values.iter().any(|v| !v.is_finite()) {
        return Err(err("IDX file holds NaN or infinite values".into()));
    }
    Ok(Matrix::new(n_rows, n_cols, values))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes of an unsigned-byte IDX file.
    pub(crate) fn idx_u8(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_images_and_labels() {
        let m = read_idx(
            Path::new("i"),
            &idx_u8(&[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 255]),
        )
        .unwrap();
        assert_eq!((m.n_rows, m.n_cols), (2, 4));
        assert_eq!(m.row(1), &[4.0, 5.0, 6.0, 255.0]);
        let l = read_idx(Path::new("l"), &idx_u8(&[3], &[1, 2, 3])).unwrap();
        assert_eq!((l.n_rows, l.n_cols), (3, 1));
    }

    #[test]
    fn rejects_bad_magic_and_truncation() {
        let mut b = idx_u8(&[2, 2], &[0, 1, 2, 3]);
        b[0] = 8;
        let e = read_idx(Path::new("i"), &b).unwrap_err();
        assert!(e.message.contains("wrong magic number 0x08000802"), "{e}");
        let e = read_idx(Path::new("i"), &idx_u8(&[2, 2], &[0, 1, 2])).unwrap_err();
        assert!(e.message.contains("truncated"), "{e}");
    }

    /// Fuzzing found these: a zero dimension gave a matrix of no values but some rows (a panic), and
    /// dimensions whose product overflows wrapped around to a small size, accepted as a matrix whose
    /// shape does not match its values.
    #[test]
    fn zero_and_huge_dimensions_are_errors() {
        for dims in [&[5u32, 0][..], &[0], &[0, 3], &[2, 3, 0]] {
            let e = read_idx(Path::new("i"), &idx_u8(dims, &[1, 2, 3])).unwrap_err();
            assert!(e.message.contains("holds no values"), "{dims:?}: {e}");
        }
        // 65536^4 = 2^64 wrapped to 0 bytes; u32::MAX^4 to a few.
        for dims in [
            &[65536u32, 65536, 65536, 65536][..],
            &[u32::MAX; 4],
            &[u32::MAX, 2],
        ] {
            let e = read_idx(Path::new("i"), &idx_u8(dims, &[1, 2, 3])).unwrap_err();
            assert!(e.message.contains("truncated"), "{dims:?}: {e}");
        }
    }
}

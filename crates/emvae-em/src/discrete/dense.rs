//! Sparse rows from dense data sets: binary rows or counts, every bad value an error naming its row
//! and column.

use emvae_core::data::{DataError, Dataset};
use rayon::prelude::*;

use super::sparse::{BLOCK_ROWS, SparseBuilder, SparseRows};

/// Rejects data too large for `u32` indices.
fn check_size(data: &Dataset, n_rows: usize, n_cols: usize) -> Result<(), DataError> {
    if n_rows > u32::MAX as usize || n_cols > u32::MAX as usize {
        return Err(data.error(format!(
            "{n_rows} x {n_cols} is too large: at most {} rows and columns",
            u32::MAX
        )));
    }
    if n_cols == 0 {
        return Err(data.error("the data have no columns"));
    }
    Ok(())
}

impl SparseRows {
    /// Binary rows of a dense data set; any value other than 0 or 1 is an error naming its row and
    /// column.
    pub fn from_binary(data: &Dataset) -> Result<Self, DataError> {
        Self::from_dense(data, true, |v| match v {
            1.0 => Ok(Some(1.0)),
            0.0 => Ok(None),
            _ => Err(format!(
                "value {v} is not binary: the Bernoulli mixture takes 0 or 1"
            )),
        })
    }

    /// Count rows of a dense data set (a document-term matrix); a negative, non-integer or non-finite
    /// count is an error naming its row and column.
    pub fn from_counts(data: &Dataset) -> Result<Self, DataError> {
        Self::from_dense(data, false, |v| {
            if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0) {
                Err(format!("count {v} is not a non-negative integer"))
            } else {
                Ok((v > 0.0).then_some(v))
            }
        })
    }

    /// The entries `entry` keeps (`Some(value)`) of a dense data set, built per block of rows in
    /// parallel and joined in order; the first error in row order is returned.
    fn from_dense(
        data: &Dataset,
        binary: bool,
        entry: impl Fn(f64) -> Result<Option<f64>, String> + Sync,
    ) -> Result<Self, DataError> {
        let (n, d) = (data.n_rows(), data.n_cols());
        check_size(data, n, d)?;
        let blocks: Vec<Result<SparseBuilder, DataError>> = data.x.values[..n * d]
            .par_chunks(BLOCK_ROWS * d)
            .enumerate()
            .map(|(b, values)| {
                let mut part = SparseBuilder::new(d, binary);
                for (i, row) in values.chunks_exact(d).enumerate() {
                    for (a, &v) in row.iter().enumerate() {
                        match entry(v) {
                            Ok(Some(value)) => part.push(a, value),
                            Ok(None) => {}
                            Err(m) => {
                                return Err(data.row_error(b * BLOCK_ROWS + i, m).at_column(a + 1));
                            }
                        }
                    }
                    part.end_row();
                }
                Ok(part)
            })
            .collect();
        let mut whole = SparseBuilder::new(d, binary);
        for part in blocks {
            whole.append(part?);
        }
        Ok(whole.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emvae_core::data::Matrix;

    fn dataset(rows: &[Vec<f64>]) -> Dataset {
        Dataset::new(Matrix::from_rows(rows), "x.csv")
    }

    #[test]
    fn bad_values_name_row_and_column() {
        let e = SparseRows::from_binary(&dataset(&[vec![0.0, 1.0], vec![1.0, 0.5]])).unwrap_err();
        assert_eq!(e.column, Some(2));
        assert!(
            e.message.contains("row 1") && e.message.contains("0.5"),
            "{e}"
        );
        for (v, what) in [(-1.0, "-1"), (1.5, "1.5"), (f64::NAN, "NaN")] {
            let e = SparseRows::from_counts(&dataset(&[vec![2.0, 0.0], vec![0.0, v]])).unwrap_err();
            assert_eq!(e.column, Some(2));
            assert!(
                e.message.contains("row 1") && e.message.contains(what),
                "{e}"
            );
        }
        let e = SparseRows::from_binary(&dataset(&[vec![], vec![]])).unwrap_err();
        assert!(e.message.contains("no columns"), "{e}");
        // The same data with another value elsewhere has another fingerprint.
        let a = SparseRows::from_binary(&dataset(&[vec![0.0, 1.0]])).unwrap();
        let b = SparseRows::from_binary(&dataset(&[vec![1.0, 0.0]])).unwrap();
        assert_ne!(a.fingerprint(None), b.fingerprint(None));
        assert_ne!(a.fingerprint(None), a.fingerprint(Some(&[Some(0)])));
    }
}

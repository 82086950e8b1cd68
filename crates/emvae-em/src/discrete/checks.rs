//! Checks of the parameters a model file or checkpoint holds, shared by both mixtures; errors complete
//! a message about one key.

pub(crate) use crate::gmm::check_weights;

/// Checks component probabilities: `k` rows of `d` finite numbers in `[0, 1]`, each row summing to 1
/// (within `1e-6`) when `rows_sum_to_one`. Returns them row-major.
pub(crate) fn check_probs(
    probs: &[Vec<f64>],
    k: usize,
    d: usize,
    rows_sum_to_one: bool,
) -> Result<Vec<f64>, String> {
    if probs.len() != k {
        return Err(format!("has {} rows, n_components is {k}", probs.len()));
    }
    let mut out = Vec::with_capacity(k * d);
    for (j, row) in probs.iter().enumerate() {
        if row.len() != d {
            return Err(format!("row {j} has {} entries, not {d}", row.len()));
        }
        if let Some(a) = row.iter().position(|p| !(0.0..=1.0).contains(p)) {
            return Err(format!(
                "entry [{j}][{a}] is {}, a probability must be in [0, 1]",
                row[a]
            ));
        }
        let sum: f64 = row.iter().sum();
        if rows_sum_to_one && (sum - 1.0).abs() > 1e-6 {
            return Err(format!("row {j} must sum to 1, sums to {sum}"));
        }
        out.extend_from_slice(row);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_are_checked() {
        let ok = vec![vec![0.25, 0.75], vec![1.0, 0.0]];
        assert_eq!(
            check_probs(&ok, 2, 2, true).unwrap(),
            vec![0.25, 0.75, 1.0, 0.0]
        );
        let e = check_probs(&ok, 3, 2, false).unwrap_err();
        assert!(e.contains("n_components is 3"), "{e}");
        let e = check_probs(&[vec![0.5], vec![0.5, 0.5]], 2, 2, false).unwrap_err();
        assert!(e.contains("row 0 has 1"), "{e}");
        let e = check_probs(&[vec![0.5, 1.5]], 1, 2, false).unwrap_err();
        assert!(e.contains("[0][1] is 1.5"), "{e}");
        let e = check_probs(&[vec![0.5, f64::NAN]], 1, 2, false).unwrap_err();
        assert!(e.contains("[0][1] is NaN"), "{e}");
        assert!(check_probs(&[vec![0.5, 0.4]], 1, 2, false).is_ok());
        let e = check_probs(&[vec![0.5, 0.4]], 1, 2, true).unwrap_err();
        assert!(e.contains("sums to 0.9"), "{e}");
    }
}

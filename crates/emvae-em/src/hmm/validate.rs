//! The rules initial values (`*_init`) and model files share: probability vectors summing to 1,
//! row-stochastic matrices, finite means, positive definite covariances. Errors name the key, and the
//! row (`transmat_init[2]`) where one row is wrong.

use emvae_core::config::InvalidParam;
use emvae_core::linalg;

use crate::gmm::{ArrayInit, CovarianceType};

/// Largest `|sum - 1|` of a probability vector (rounding in files written by other tools).
pub(crate) const SUM_TOLERANCE: f64 = 1e-6;

/// Checks a probability vector: `len` finite numbers >= 0 summing to 1; `len_name` names its length.
pub(crate) fn check_distribution(p: &[f64], len: usize, len_name: &str) -> Result<(), String> {
    if p.len() != len {
        return Err(format!("has {} entries, {len_name} is {len}", p.len()));
    }
    if let Some(i) = p.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
        return Err(format!("entry {i} is {}, probabilities must be >= 0", p[i]));
    }
    let sum: f64 = p.iter().sum();
    if (sum - 1.0).abs() > SUM_TOLERANCE {
        return Err(format!("must sum to 1, sums to {sum}"));
    }
    Ok(())
}

/// Checks a row-stochastic matrix of `n_rows` rows (of `n_cols` entries when given, else of a common
/// width); a bad row is named as `key[i]`. Returns `(width, row-major values)`.
pub(crate) fn check_stochastic(
    rows: &[Vec<f64>],
    n_rows: usize,
    n_cols: Option<usize>,
    key: &str,
) -> Result<(usize, Vec<f64>), InvalidParam> {
    if rows.len() != n_rows {
        let m = format!("has {} rows, n_states is {n_rows}", rows.len());
        return Err(InvalidParam::new(key, m));
    }
    let width = n_cols.unwrap_or_else(|| rows.first().map_or(0, Vec::len));
    if width == 0 {
        return Err(InvalidParam::new(key, "rows are empty"));
    }
    let len_name = if n_cols.is_some() {
        "n_states"
    } else {
        "the width of row 0"
    };
    for (i, row) in rows.iter().enumerate() {
        check_distribution(row, width, len_name)
            .map_err(|m| InvalidParam::new(format!("{key}[{i}]"), format!("row {i} {m}")))?;
    }
    Ok((width, rows.concat()))
}

/// Checks means: `k` rows of equal, non-zero length (`d` when given) holding finite numbers.
/// Returns `(d, row-major values)`.
pub(crate) fn check_means(
    m: &[Vec<f64>],
    k: usize,
    d: Option<usize>,
    key: &str,
) -> Result<(usize, Vec<f64>), InvalidParam> {
    let bad = |msg: String| InvalidParam::new(key, msg);
    if m.len() != k {
        return Err(bad(format!("has {} rows, n_states is {k}", m.len())));
    }
    let width = d.unwrap_or_else(|| m.first().map_or(0, Vec::len));
    if width == 0 {
        return Err(bad("rows are empty".into()));
    }
    if let Some(i) = m.iter().position(|r| r.len() != width) {
        return Err(bad(format!(
            "row {i} has {} entries, expected {width}",
            m[i].len()
        )));
    }
    let values = m.concat();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(bad(format!(
            "entry [{}][{}] is not finite",
            i / width,
            i % width
        )));
    }
    Ok((width, values))
}

/// Checks covariances for `cov` and `k` states: the shape (`[k, d, d]` full, `[k, d]` diag, `[k]`
/// spherical, `[d, d]` tied), finite, variances > 0, symmetric positive definite matrices.
/// `d_means` is the width of the means and their key. Returns `(d, row-major values)`, `d = None`
/// for spherical, whose shape does not say.
pub(crate) fn check_covars(
    array: &ArrayInit,
    cov: CovarianceType,
    k: usize,
    d_means: Option<(usize, &str)>,
    key: &str,
) -> Result<(Option<usize>, Vec<f64>), InvalidParam> {
    let bad = |msg: String| InvalidParam::new(key, msg);
    let (shape, values) = array.flatten().map_err(bad)?;
    let d = match (cov, shape.as_slice()) {
        (CovarianceType::Full, [kk, a, b]) if *kk == k && a == b => Some(*a),
        (CovarianceType::Diag, [kk, a]) if *kk == k => Some(*a),
        (CovarianceType::Tied, [a, b]) if a == b => Some(*a),
        (CovarianceType::Spherical, [kk]) if *kk == k => None,
        _ => {
            let expected = match cov {
                CovarianceType::Full => "[n_states, d, d]",
                CovarianceType::Diag => "[n_states, d]",
                CovarianceType::Tied => "[d, d]",
                CovarianceType::Spherical => "[n_states]",
            };
            return Err(bad(format!(
                "covariance_type = \"{cov}\" takes shape {expected} (n_states = {k}), got shape {shape:?}"
            )));
        }
    };
    if d == Some(0) {
        return Err(bad("matrices are empty".into()));
    }
    if let (Some(d), Some((dm, means_key))) = (d, d_means)
        && d != dm
    {
        return Err(bad(format!(
            "is for {d} features but {means_key} rows have {dm}"
        )));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(bad(format!("entry {i} is not finite")));
    }
    match cov {
        CovarianceType::Diag | CovarianceType::Spherical => {
            if let Some(i) = values.iter().position(|v| *v <= 0.0) {
                return Err(bad(format!(
                    "entry {i} is {}, variances must be > 0",
                    values[i]
                )));
            }
        }
        CovarianceType::Full | CovarianceType::Tied => {
            let dd = d.unwrap_or(0);
            for (j, m) in values.chunks_exact(dd * dd).enumerate() {
                let which = if cov == CovarianceType::Tied {
                    "the matrix".to_string()
                } else {
                    format!("matrix {j}")
                };
                if linalg::asymmetry(m, dd) > 1e-10 {
                    return Err(bad(format!("{which} is not symmetric")));
                }
                if linalg::cholesky_lower(m, dd).is_err() {
                    return Err(bad(format!("{which} is not positive definite")));
                }
            }
        }
    }
    Ok((d, values))
}

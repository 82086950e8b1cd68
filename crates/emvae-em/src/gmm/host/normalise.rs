//! The E-step's normalisation of a tile, fused in one kernel: max, `exp`, sum, `ln`, scale.
//!
//! A tile holds `log p(x_i, z = j)` for `c` rows column-major (`w[j c + i]`), so every step runs down
//! contiguous columns, vectorised over rows whatever `k` is. With `m_i = max_j`, the shift
//! `s_i = m_i` (0 where `m_i` is infinite: no NaN from `-inf - -inf`),
//! ```text
//! e_ij = exp(max(w_ij - s_i, floor)),   log p(x_i) = s_i + ln sum_j e_ij,   r_ij = e_ij / sum_j e_ij.
//! ```
//! The floor keeps ratios, and the M-step's products with them, out of the subnormals (two orders of
//! magnitude slower) and changes nothing at working precision.

use super::vmath::{exp_nonpositive, ln_normal};
use emvae_core::simd::multiversion;

/// Scratch the kernel needs for a tile of `c` rows.
pub(crate) fn scratch_len(c: usize) -> usize {
    2 * c
}

/// The kernel's body; see [`normalise_tile`].
#[inline(always)]
fn normalise_body<const FMA: bool>(
    w: &mut [f64],
    c: usize,
    floor: f64,
    log_norm: &mut [f64],
    scratch: &mut [f64],
) {
    let k = w.len() / c;
    let (shift, inv) = scratch[..2 * c].split_at_mut(c);
    let log_norm = &mut log_norm[..c];
    shift.copy_from_slice(&w[..c]);
    for col in w.chunks_exact(c).skip(1) {
        for (s, &v) in shift.iter_mut().zip(col) {
            *s = if v > *s { v } else { *s };
        }
    }
    for s in shift.iter_mut() {
        *s = if s.is_infinite() { 0.0 } else { *s };
    }
    inv.fill(0.0);
    for col in w.chunks_exact_mut(c) {
        for ((v, &s), sum) in col.iter_mut().zip(shift.iter()).zip(inv.iter_mut()) {
            let z = *v - s;
            let e = exp_nonpositive::<FMA>(if z < floor { floor } else { z });
            *v = e;
            *sum += e;
        }
    }
    for ((l, sum), &s) in log_norm.iter_mut().zip(inv.iter_mut()).zip(shift.iter()) {
        *l = s + ln_normal::<FMA>(*sum);
        *sum = 1.0 / *sum;
    }
    for col in w.chunks_exact_mut(c).take(k) {
        for (v, &i) in col.iter_mut().zip(inv.iter()) {
            *v *= i;
        }
    }
}

multiversion! {
    /// Turns a tile `w` of `log p(x_i, z = j)` (`c` rows, column-major) into `p(z = j | x_i)` in place
    /// and writes `log p(x_i)` to `log_norm[..c]`; `floor` is the least `log r` kept (about -600 in
    /// f64). `scratch` holds at least [`scratch_len`]`(c)` values.
    pub(crate) fn normalise_tile(
        w: &mut [f64],
        c: usize,
        floor: f64,
        log_norm: &mut [f64],
        scratch: &mut [f64],
    ) => normalise_body::<FMA>
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition() {
        let (c, k) = (5, 3);
        let rows: [[f64; 3]; 5] = [
            [0.0, -1.0, -2.0],
            [1000.0, 999.0, -1e6],
            [f64::NEG_INFINITY, -3.0, f64::NEG_INFINITY],
            [f64::NEG_INFINITY; 3],
            [-700.0, 0.0, -0.5],
        ];
        let mut w = vec![0.0; c * k];
        for (i, row) in rows.iter().enumerate() {
            for j in 0..k {
                w[j * c + i] = row[j];
            }
        }
        let floor = -600.0;
        let (mut log_norm, mut scratch) = (vec![0.0; c], vec![0.0; scratch_len(c)]);
        normalise_tile(&mut w, c, floor, &mut log_norm, &mut scratch);
        for (i, row) in rows.iter().enumerate() {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let m = if m.is_infinite() { 0.0 } else { m };
            let e: Vec<f64> = row.iter().map(|v| (v - m).max(floor).exp()).collect();
            let s: f64 = e.iter().sum();
            assert!(
                (log_norm[i] - (m + s.ln())).abs() <= 1e-13 * (1.0 + m.abs()),
                "row {i}"
            );
            for j in 0..k {
                let r = w[j * c + i];
                assert!(
                    (r - e[j] / s).abs() <= 1e-15 * (e[j] / s),
                    "row {i}: {r} vs {}",
                    e[j] / s
                );
                assert!(r > 0.0 && r.is_normal());
            }
        }
    }
}

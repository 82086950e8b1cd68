//! The vocabulary log-softmax as host loops, for tensors that live in host memory (a CPU backend, as
//! the edge says through [`crate::TextVaeConfig::host_kernels`]).
//!
//! burn's CPU softmax takes libm's scalar `expf` per value; at V = 10,000 the exponentials and the
//! two row maxima were half of an importance-weighted evaluation. These loops use a branch-free `exp`
//! that LLVM vectorises, compiled for AVX-512 or AVX2 where the CPU has them ([`emvae_core::simd`]).

use emvae_core::simd::{mul_add_f32 as mul_add, multiversion};

/// `exp(x)` for `x <= 0`, within 2 ulp of libm's on [-87, 0]; below -87 it returns `exp(-87)` (about
/// 1.6e-38, nothing next to the row's largest term, which is 1), and NaN stays NaN.
///
/// Cephes' `expf`: `x = n ln 2 + r` with `|r| <= ln 2 / 2` (`ln 2` split so that `n C1` is exact),
/// `e^r` by a minimax polynomial of degree 7, times `2^n` built in the exponent bits.
#[inline(always)]
pub(crate) fn exp_nonpositive<const FMA: bool>(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to an integer.
    const ROUND: f32 = 12_582_912.0;
    // A comparison, not `max`: NaN compares false and passes through.
    let x = if x < -87.0 { -87.0 } else { x };
    let shifted = mul_add::<FMA>(x, LOG2_E, ROUND);
    let n = shifted - ROUND;
    let r = mul_add::<FMA>(n, -C2, mul_add::<FMA>(n, -C1, x));
    let mut p = 1.987_569_1e-4;
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = mul_add::<FMA>(p, r, c);
    }
    let e_r = mul_add::<FMA>(p, r * r, r) + 1.0;
    // `n` sits in the low mantissa bits of `shifted`: shifted into the exponent field with the bias
    // added, integer operations only (a float-to-integer cast is not vectorised).
    let scale = f32::from_bits((shifted.to_bits() << 23).wrapping_add(127 << 23));
    e_r * scale
}

/// Lanes of the accumulators: enough independent sums for a 16-wide unit to pipeline.
const LANES: usize = 16;

/// The row's largest value (NaN values are passed over; they reach the result through the sum).
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..LANES {
            acc[k] = if c[k] > acc[k] { c[k] } else { acc[k] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for x in acc.into_iter().chain(rest.iter().copied()) {
        m = if x > m { x } else { m };
    }
    m
}

/// `log sum_j exp(x_j)` of each row of the row-major `[rows, v]` `logits`, into `lse`.
#[inline(always)]
fn log_sum_exp_rows_body<const FMA: bool>(logits: &[f32], v: usize, lse: &mut [f32]) {
    for (row, out) in logits.chunks_exact(v).zip(lse.iter_mut()) {
        let m = row_max(row);
        let mut acc = [0.0f32; LANES];
        let chunks = row.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for k in 0..LANES {
                acc[k] += exp_nonpositive::<FMA>(c[k] - m);
            }
        }
        let mut s: f32 = acc.iter().sum();
        for &x in rest {
            s += exp_nonpositive::<FMA>(x - m);
        }
        *out = m + s.ln();
    }
}

/// Each row of the row-major `[rows, v]` `logits` replaced by its softmax, and its
/// `log sum_j exp(x_j)` written to `lse`.
#[inline(always)]
fn softmax_rows_body<const FMA: bool>(logits: &mut [f32], v: usize, lse: &mut [f32]) {
    for (row, out) in logits.chunks_exact_mut(v).zip(lse.iter_mut()) {
        let m = row_max(row);
        let mut acc = [0.0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for k in 0..LANES {
                c[k] = exp_nonpositive::<FMA>(c[k] - m);
                acc[k] += c[k];
            }
        }
        let mut s: f32 = acc.iter().sum();
        for x in chunks.into_remainder() {
            *x = exp_nonpositive::<FMA>(*x - m);
            s += *x;
        }
        let inv = 1.0 / s;
        for x in row.iter_mut() {
            *x *= inv;
        }
        *out = m + s.ln();
    }
}

multiversion! {
    /// `lse[i] = log sum_j exp(logits[i, j])` for the row-major `[lse.len(), v]` `logits`.
    pub(crate) fn log_sum_exp_rows(logits: &[f32], v: usize, lse: &mut [f32])
        => log_sum_exp_rows_body::<FMA>
}

multiversion! {
    /// The row-major `[lse.len(), v]` `logits` replaced by their row-wise softmax, and
    /// `lse[i] = log sum_j exp(logits[i, j])`.
    pub(crate) fn softmax_rows(logits: &mut [f32], v: usize, lse: &mut [f32])
        => softmax_rows_body::<FMA>
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let (want, got) = (x.exp(), exp_nonpositive::<true>(x));
            let ulp = f32::from_bits(want.to_bits() + 1) - want;
            assert!((got - want).abs() <= 2.0 * ulp, "{x}: {got} vs {want}");
            let plain = exp_nonpositive::<false>(x);
            assert!((plain - want).abs() <= 2.0 * ulp, "{x}: {plain} vs {want}");
        }
        assert!(exp_nonpositive::<true>(f32::NAN).is_nan());
        assert_eq!(exp_nonpositive::<true>(f32::NEG_INFINITY), (-87.0f32).exp());
    }

    #[test]
    fn rows_match_the_direct_formulas() {
        let (rows, v) = (3, 1003);
        let logits: Vec<f32> = (0..rows * v)
            .map(|i| ((i * 7919 % 1000) as f32 / 50.0 - 10.0) * if i < v { 1.0 } else { 3.0 })
            .collect();
        let mut lse = vec![0.0; rows];
        log_sum_exp_rows(&logits, v, &mut lse);
        let mut p = logits.clone();
        let mut lse2 = vec![0.0; rows];
        softmax_rows(&mut p, v, &mut lse2);
        for r in 0..rows {
            let row = &logits[r * v..(r + 1) * v];
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
            let want = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            assert!(
                (lse[r] as f64 - want).abs() < 1e-5 * want.abs().max(1.0),
                "{r}"
            );
            assert_eq!(lse[r], lse2[r]);
            let total: f64 = p[r * v..(r + 1) * v].iter().map(|&x| x as f64).sum();
            assert!((total - 1.0).abs() < 1e-5, "{total}");
            for (j, &x) in row.iter().enumerate() {
                let want = (x as f64 - want).exp();
                assert!(
                    (p[r * v + j] as f64 - want).abs() < 1e-6 + 1e-5 * want,
                    "{r} {j}"
                );
            }
        }
        let mut nan = logits[..v].to_vec();
        nan[5] = f32::NAN;
        let mut one = [0.0];
        log_sum_exp_rows(&nan, v, &mut one);
        assert!(one[0].is_nan(), "a NaN logit gives a NaN normaliser");
    }
}

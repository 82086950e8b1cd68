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

/// The body of [`log_softmax_at_rows`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn log_softmax_at_rows_body<const FMA: bool>(
    logits: &mut [f32],
    v: usize,
    offsets: &[f32],
    offset_row: &[usize],
    targets: &[usize],
    log_p: &mut [f32],
    sentence: &[usize],
    dsum: &mut [f32],
) {
    let grad = !dsum.is_empty();
    for (i, row) in logits.chunks_exact_mut(v).enumerate() {
        let target = targets[i];
        if target == usize::MAX {
            log_p[i] = 0.0;
            if grad {
                row.fill(0.0);
            }
            continue;
        }
        let o = offset_row[i];
        let offset = &offsets[o * v..(o + 1) * v];
        // The offset added and the row's largest value found in one pass.
        let mut acc = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        let mut offset_chunks = offset.chunks_exact(LANES);
        for (c, o) in (&mut chunks).zip(&mut offset_chunks) {
            for k in 0..LANES {
                c[k] += o[k];
                acc[k] = if c[k] > acc[k] { c[k] } else { acc[k] };
            }
        }
        let mut m = f32::NEG_INFINITY;
        for (x, o) in chunks
            .into_remainder()
            .iter_mut()
            .zip(offset_chunks.remainder())
        {
            *x += o;
            m = if *x > m { *x } else { m };
        }
        for a in acc {
            m = if a > m { a } else { m };
        }
        let at_target = row[target];
        let mut acc = [0.0f32; LANES];
        let mut rest = 0.0f32;
        if grad {
            let mut chunks = row.chunks_exact_mut(LANES);
            for c in &mut chunks {
                for k in 0..LANES {
                    c[k] = exp_nonpositive::<FMA>(c[k] - m);
                    acc[k] += c[k];
                }
            }
            for x in chunks.into_remainder() {
                *x = exp_nonpositive::<FMA>(*x - m);
                rest += *x;
            }
        } else {
            let chunks = row.chunks_exact(LANES);
            let tail = chunks.remainder();
            for c in chunks {
                for k in 0..LANES {
                    acc[k] += exp_nonpositive::<FMA>(c[k] - m);
                }
            }
            for &x in tail {
                rest += exp_nonpositive::<FMA>(x - m);
            }
        }
        let total = acc.iter().sum::<f32>() + rest;
        log_p[i] = at_target - m - total.ln();
        if grad {
            // e_target - p, and its sum over the sentence's tokens.
            let scale = -1.0 / total;
            row[target] -= total;
            let s = sentence[i];
            let out = &mut dsum[s * v..(s + 1) * v];
            for (x, d) in row.iter_mut().zip(out.iter_mut()) {
                *x *= scale;
                *d += *x;
            }
        }
    }
}

multiversion! {
    #[allow(clippy::too_many_arguments)]
    /// The log-softmax at the targets of the row-major `[targets.len(), v]` `logits`, each row first
    /// shifted by a row of `offsets` (`[.., v]`, row `offset_row[i]` for logits row `i`):
    /// `log_p[i] = log softmax(logits[i] + offsets[offset_row[i]])[targets[i]]`; a target of
    /// `usize::MAX` (padding) gives 0.
    ///
    /// With a non-empty `dsum` (`[sentences, v]`, zeros) the gradient too: row `i` becomes
    /// `e_{targets[i]} - softmax(..)` (zeros at padding), which is `d log_p[i] / d logits[i]`, and is
    /// added into row `sentence[i]` of `dsum`.
    pub(crate) fn log_softmax_at_rows(
        logits: &mut [f32],
        v: usize,
        offsets: &[f32],
        offset_row: &[usize],
        targets: &[usize],
        log_p: &mut [f32],
        sentence: &[usize],
        dsum: &mut [f32],
    ) => log_softmax_at_rows_body::<FMA>
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
        let (n, v) = (4, 1003);
        let logits: Vec<f32> = (0..n * v)
            .map(|i| ((i * 7919 % 1000) as f32 / 50.0 - 10.0) * if i < v { 1.0 } else { 3.0 })
            .collect();
        let offsets: Vec<f32> = (0..2 * v).map(|i| (i % 13) as f32 * 0.25 - 1.0).collect();
        let sentence = [0, 0, 1, 1];
        let targets = [5, 1002, usize::MAX, 0];
        let mut plain = logits.clone();
        let mut log_p = vec![0.0; n];
        log_softmax_at_rows(
            &mut plain,
            v,
            &offsets,
            &sentence,
            &targets,
            &mut log_p,
            &sentence,
            &mut [],
        );
        let mut grad = logits.clone();
        let mut log_p2 = vec![0.0; n];
        let mut dsum = vec![0.0; 2 * v];
        log_softmax_at_rows(
            &mut grad,
            v,
            &offsets,
            &sentence,
            &targets,
            &mut log_p2,
            &sentence,
            &mut dsum,
        );
        assert_eq!(log_p, log_p2);
        let mut want_dsum = vec![0.0f64; 2 * v];
        for i in 0..n {
            let s = sentence[i];
            let row: Vec<f64> = (0..v)
                .map(|j| (logits[i * v + j] + offsets[s * v + j]) as f64)
                .collect();
            if targets[i] == usize::MAX {
                assert_eq!(log_p[i], 0.0);
                assert!(grad[i * v..(i + 1) * v].iter().all(|&x| x == 0.0));
                continue;
            }
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let lse = m + row.iter().map(|&x| (x - m).exp()).sum::<f64>().ln();
            let want = row[targets[i]] - lse;
            assert!(
                (log_p[i] as f64 - want).abs() < 1e-5 * want.abs().max(1.0),
                "{i}"
            );
            let mut total = 0.0;
            for j in 0..v {
                let d = f64::from(u8::from(j == targets[i])) - (row[j] - lse).exp();
                total += grad[i * v + j] as f64;
                want_dsum[s * v + j] += d;
                assert!(
                    (grad[i * v + j] as f64 - d).abs() < 1e-6 + 1e-5 * d.abs(),
                    "{i} {j}"
                );
            }
            assert!(total.abs() < 1e-5, "a gradient row sums to 0: {total}");
        }
        for (a, b) in dsum.iter().zip(&want_dsum) {
            assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
        }
        let mut nan = logits[..v].to_vec();
        nan[5] = f32::NAN;
        let mut one = [0.0];
        log_softmax_at_rows(&mut nan, v, &offsets, &[0], &[3], &mut one, &[0], &mut []);
        assert!(one[0].is_nan(), "a NaN logit gives a NaN log-probability");
    }
}

//! The inner loops of Baum-Welch, written once for `k` states and compiled for the common `k` as
//! constants ([`dispatch`]), so that loops over states have a known length: unrolled, vectorised and
//! kept in registers; and compiled for AVX2 as well, used where the CPU has it. They
//! run on the host in f64; the maths is in [`super::forward_backward`].
//!
//! Results do not depend on which version runs: Rust neither fuses `a * b + c` into an FMA nor
//! reorders floating-point sums, so 4-wide and 2-wide vectors round every operation alike.

/// A loop nest over the `k` states of a model, run by [`dispatch`].
pub(crate) trait Kernel {
    type Output;
    /// Runs for `K` states when `K > 0` (a constant: loops of known length), for `k` when `K = 0`.
    fn run<const K: usize>(self, k: usize) -> Self::Output;
}

/// Runs `kernel` for `k` states: with `K = k` for the common numbers of states (2-6, 8, 16), and
/// compiled for AVX2 (4-wide f64 vectors) when the CPU has it. Kernels mark `run` `#[inline(always)]`,
/// so that it is compiled into each version.
#[inline(always)]
pub(crate) fn dispatch<T: Kernel>(k: usize, kernel: T) -> T::Output {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, as checked just above.
        return unsafe { by_k_avx2(k, kernel) };
    }
    by_k(k, kernel)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn by_k_avx2<T: Kernel>(k: usize, kernel: T) -> T::Output {
    by_k(k, kernel)
}

#[inline(always)]
fn by_k<T: Kernel>(k: usize, kernel: T) -> T::Output {
    match k {
        2 => kernel.run::<2>(k),
        3 => kernel.run::<3>(k),
        4 => kernel.run::<4>(k),
        5 => kernel.run::<5>(k),
        6 => kernel.run::<6>(k),
        8 => kernel.run::<8>(k),
        16 => kernel.run::<16>(k),
        _ => kernel.run::<0>(k),
    }
}

/// The number of states a kernel runs with: `K`, or `k` when `K` is 0.
#[inline(always)]
pub(crate) fn states<const K: usize>(k: usize) -> usize {
    if K == 0 { k } else { K }
}

/// The forward recursion over `[T, k]` scaled likelihoods `b`, writing `alpha^` and `c`; false when a
/// `c_t` underflows.
///
/// It carries `u_t = (alpha^_t-1 A) * b'_t` (so `c_t = sum_j u_t(j)`) as `u_t = (u_t-1 A) * b'_t / c_t-1`:
/// the product by `A` then does not wait for `c_t-1` and its division, which run alongside, and row
/// `t - 1` is normalised into `alpha^_t-1` off that path.
pub(crate) struct Forward<'a> {
    pub(crate) startprob: &'a [f64],
    pub(crate) transmat: &'a [f64],
    /// `b'`, `[T, k]`.
    pub(crate) b: &'a [f64],
    /// `alpha^` out, `[T, k]`.
    pub(crate) alpha: &'a mut [f64],
    /// `c` out, `[T]`.
    pub(crate) scale: &'a mut [f64],
}

impl Kernel for Forward<'_> {
    type Output = bool;
    #[inline(always)]
    fn run<const K: usize>(self, k: usize) -> bool {
        let Forward {
            startprob,
            transmat,
            b,
            alpha,
            scale,
        } = self;
        forward::<K>(k, startprob, transmat, b, alpha, scale)
    }
}

#[inline(always)]
fn forward<const K: usize>(
    k: usize,
    startprob: &[f64],
    transmat: &[f64],
    b: &[f64],
    alpha: &mut [f64],
    scale: &mut [f64],
) -> bool {
    let k = states::<K>(k);
    let transmat = &transmat[..k * k];
    let mut inv_prev = 1.0;
    for (t, c_t) in scale.iter_mut().enumerate() {
        let (before, rest) = alpha.split_at_mut(t * k);
        let u = &mut rest[..k];
        let b = &b[t * k..(t + 1) * k];
        if t == 0 {
            u.iter_mut()
                .zip(startprob)
                .zip(b)
                .for_each(|((u, p), b)| *u = p * b);
        } else {
            let prev = &mut before[(t - 1) * k..t * k];
            u.fill(0.0);
            for (p, row) in prev.iter().zip(transmat.chunks_exact(k)) {
                u.iter_mut().zip(row).for_each(|(u, t_ij)| *u += p * t_ij);
            }
            u.iter_mut().zip(b).for_each(|(u, b)| *u *= b * inv_prev);
            prev.iter_mut().for_each(|a| *a *= inv_prev);
        }
        let c: f64 = u.iter().sum();
        if !(c >= f64::MIN_POSITIVE && c.is_finite()) {
            return false;
        }
        inv_prev = 1.0 / c;
        *c_t = c;
    }
    let t_len = scale.len();
    alpha[(t_len - 1) * k..t_len * k]
        .iter_mut()
        .for_each(|a| *a *= inv_prev);
    true
}

/// `sum_t log c_t`, taking one logarithm per run of factors whose product stays a normal float
/// rather than one per time step.
pub(crate) fn sum_log(scale: &[f64]) -> f64 {
    const FLOOR: f64 = 1e-150;
    let (mut total, mut product) = (0.0, 1.0);
    for &c in scale {
        if c < FLOOR {
            total += c.ln();
            continue;
        }
        product *= c;
        if product < FLOOR {
            total += product.ln();
            product = 1.0;
        }
    }
    total + product.ln()
}

/// What the backward recursion reads and writes.
pub(crate) struct Backward<'a> {
    pub(crate) b: &'a [f64],
    pub(crate) scale: &'a [f64],
    /// `A^T`, `[k, k]`.
    pub(crate) transposed: &'a [f64],
    /// `alpha^` in, `gamma` out.
    pub(crate) gamma: &'a mut [f64],
    pub(crate) beta: &'a mut [f64],
    pub(crate) next: &'a mut [f64],
    /// `sum_t alpha^_t-1 (x) next_t`, when wanted (times `A` afterwards gives `sum_t xi_t`).
    pub(crate) xi: Option<&'a mut [f64]>,
}

/// The backward recursion: `gamma_t = alpha^_t * beta^_t`, `next_t = b'_t * beta^_t / c_t`,
/// `beta^_t-1 = A next_t`.
impl Kernel for Backward<'_> {
    type Output = ();
    #[inline(always)]
    fn run<const K: usize>(self, k: usize) {
        backward::<K>(k, self);
    }
}

#[inline(always)]
fn backward<const K: usize>(k: usize, w: Backward<'_>) {
    let k = states::<K>(k);
    let Backward {
        b,
        scale,
        transposed,
        gamma,
        beta,
        next,
        mut xi,
    } = w;
    let (beta, next, transposed) = (&mut beta[..k], &mut next[..k], &transposed[..k * k]);
    beta.fill(1.0);
    for t in (0..scale.len()).rev() {
        let (before, rest) = gamma.split_at_mut(t * k);
        rest[..k].iter_mut().zip(&*beta).for_each(|(g, b)| *g *= b);
        if t == 0 {
            break;
        }
        let inv_c = 1.0 / scale[t];
        let b = &b[t * k..(t + 1) * k];
        next.iter_mut()
            .zip(b)
            .zip(&*beta)
            .for_each(|((n, b), beta)| *n = b * beta * inv_c);
        if let Some(xi) = xi.as_deref_mut() {
            // alpha^_t-1 is still intact.
            let prev = &before[(t - 1) * k..t * k];
            for (p, row) in prev.iter().zip(xi[..k * k].chunks_exact_mut(k)) {
                row.iter_mut().zip(&*next).for_each(|(x, n)| *x += p * n);
            }
        }
        beta.fill(0.0);
        for (n, column) in next.iter().zip(transposed.chunks_exact(k)) {
            beta.iter_mut().zip(column).for_each(|(b, a)| *b += n * a);
        }
    }
}

/// `b'_t = exp(log b_t - m_t)`, `m_t = max_j log b_j(x_t)`, in place over `[T, k]` log-likelihoods.
pub(crate) fn scale_log_likelihoods(b: &mut [f64], shift: &mut [f64], k: usize) {
    dispatch(k, Scale { b, shift });
}

struct Scale<'a> {
    b: &'a mut [f64],
    shift: &'a mut [f64],
}

impl Kernel for Scale<'_> {
    type Output = ();
    #[inline(always)]
    fn run<const K: usize>(self, k: usize) {
        let Scale { b, shift } = self;
        scale::<K>(b, shift, k);
    }
}

#[inline(always)]
fn scale<const K: usize>(b: &mut [f64], shift: &mut [f64], k: usize) {
    let k = states::<K>(k);
    for (row, m) in b.chunks_exact_mut(k).zip(shift.iter_mut()) {
        *m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let max = *m;
        row.iter_mut().for_each(|v| *v = exp_nonpositive(*v - max));
    }
}

/// `exp(x)` for `x <= 0`, within 2 ulp, branch-free so that a loop of them vectorises (the library
/// `exp` is a call per value). `x = n ln 2 + r`, `|r| <= ln 2 / 2` (Cody-Waite: `ln 2` split so that
/// `n ln2_hi` is exact), `e^r` by its Taylor polynomial of degree 13 (truncation below 1e-17), times
/// `2^n` built in the exponent bits. Below -708 (where `e^x` is subnormal) it returns 0; NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f64) -> f64 {
    const LOG2_E: f64 = std::f64::consts::LOG2_E;
    // fdlibm's split of ln 2: 32 significant bits, and the rest.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    // Adding 1.5 * 2^52 rounds to an integer held in the low mantissa bits.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0;
    for d in [
        479_001_600.0,
        39_916_800.0,
        3_628_800.0,
        362_880.0,
        40_320.0,
        5_040.0,
        720.0,
        120.0,
        24.0,
        6.0,
        2.0,
        1.0,
        1.0,
    ] {
        p = p * r + 1.0 / d;
    }
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let two_n = f64::from_bits(n_bits.wrapping_add(1023) << 52);
    if x < -708.0 { 0.0 } else { p * two_n }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loops compiled for a constant number of states and for any (`K = 0`, what 7, 9, ... states
    /// run) give the same bits.
    #[test]
    fn constant_and_general_kernels_agree() {
        let k = 3;
        let (pi, a) = (
            [0.5, 0.3, 0.2],
            [0.7, 0.2, 0.1, 0.1, 0.6, 0.3, 0.25, 0.25, 0.5],
        );
        let b: Vec<f64> = (0..30)
            .map(|i| ((i * 7 % 11) as f64 * 0.09).max(0.01))
            .collect();
        let transposed: Vec<f64> = (0..9).map(|i| a[(i % 3) * 3 + i / 3]).collect();
        let run = |general: bool| {
            let (mut alpha, mut scale) = (vec![0.0; 30], vec![0.0; 10]);
            let f = Forward {
                startprob: &pi,
                transmat: &a,
                b: &b,
                alpha: &mut alpha,
                scale: &mut scale,
            };
            assert!(if general {
                f.run::<0>(k)
            } else {
                f.run::<3>(k)
            });
            let (mut beta, mut next, mut xi) = (vec![0.0; 3], vec![0.0; 3], vec![0.0; 9]);
            let w = Backward {
                b: &b,
                scale: &scale,
                transposed: &transposed,
                gamma: &mut alpha,
                beta: &mut beta,
                next: &mut next,
                xi: Some(&mut xi),
            };
            if general {
                w.run::<0>(k)
            } else {
                w.run::<3>(k)
            }
            (alpha, scale, xi)
        };
        assert_eq!(run(true), run(false));
        let (gamma, _, _) = run(false);
        assert!(
            gamma
                .chunks(3)
                .all(|g| (g.iter().sum::<f64>() - 1.0).abs() < 1e-14)
        );
    }

    #[test]
    fn fast_exp_is_within_two_ulp() {
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            let x = -(i as f64) * 0.003_541_7;
            let (got, want) = (exp_nonpositive(x), x.exp());
            if want > 1e-300 {
                worst = worst.max((got - want).abs() / want);
            }
        }
        assert!(worst < 4.5e-16, "{worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-800.0), 0.0);
        assert_eq!(exp_nonpositive(f64::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f64::NAN).is_nan());
    }
}

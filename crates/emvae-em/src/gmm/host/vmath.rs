//! `exp` and `ln` for the E-step's normalisation, written so that LLVM vectorises them.
//!
//! libm's scalar `exp` was a sixth of an EM iteration (`n k` calls per E-step). These are branch-free
//! straight-line code (one multiply-add chain), accurate to about one ulp on the ranges the
//! normalisation uses, with or without fused multiply-adds (`FMA`, see [`emvae_core::simd`]); the tests
//! compare them with libm.

use emvae_core::simd::mul_add;

/// `log2(e)`.
const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// `ln 2` split Cody-Waite style (fdlibm's `ln2_hi`, `ln2_lo`, `6.93147180369123816490e-01` and
/// `1.90821492927058770002e-10`): `ln2_hi` has 21 trailing zero bits, so `n ln2_hi` is exact for
/// `|n| < 2^21`.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
/// `1.5 * 2^52`: adding it rounds a float of magnitude below `2^51` to an integer, which then sits in
/// the low bits of the sum's representation.
const ROUND: f64 = 6_755_399_441_055_744.0;

/// `1/m!` for `m = 0..=13`.
const EXP_TAYLOR: [f64; 14] = [
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5_040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
];

/// `e^x` for `x` in `[-708, 0]` (NaN gives NaN; other inputs are outside the contract).
///
/// `x = n ln2 + r` with `n = round(x / ln2)` and `|r| <= ln2 / 2` (Cody-Waite: `r = x - n ln2_hi -
/// n ln2_lo`, the first subtraction exact), `e^r` by its Taylor polynomial to degree 13 (the remainder,
/// `|r|^14 / 14! < 5e-18`, is below rounding), and `2^n` assembled in the exponent bits: normal for
/// `n >= -1022`, so for `x >= -708`.
#[inline(always)]
pub(crate) fn exp_nonpositive<const FMA: bool>(x: f64) -> f64 {
    let t = mul_add::<FMA>(x, LOG2_E, ROUND);
    let n = t - ROUND;
    let r = mul_add::<FMA>(-n, LN2_LO, x - n * LN2_HI);
    let mut p = EXP_TAYLOR[13];
    for &c in EXP_TAYLOR[..13].iter().rev() {
        p = mul_add::<FMA>(p, r, c);
    }
    // The low 12 bits of `t`'s representation hold `n` (two's complement); shifted into the exponent
    // field with the bias, they make `2^n`. The bits above fall off the top.
    let scale = f64::from_bits(t.to_bits().wrapping_add(1023) << 52);
    p * scale
}

/// `2 / (2m + 1)` for `m = 0..=10`: `ln z = 2 atanh(s) = sum_m 2 s^(2m+1) / (2m + 1)`.
const LN_ATANH: [f64; 11] = [
    2.0,
    2.0 / 3.0,
    2.0 / 5.0,
    2.0 / 7.0,
    2.0 / 9.0,
    2.0 / 11.0,
    2.0 / 13.0,
    2.0 / 15.0,
    2.0 / 17.0,
    2.0 / 19.0,
    2.0 / 21.0,
];

/// Representation of (about) `sqrt(1/2)`: mantissas are brought into `[sqrt(1/2), sqrt(2))`.
const SQRT_HALF_BITS: u64 = 0x3fe6_a09e_667f_3bcd;

/// `ln x` for positive normal `x`; NaN and `+inf` give themselves. (Zero and subnormals are outside
/// the contract: the normalisation's sums are at least `e^floor`, far above them.)
///
/// `x = 2^k z` with `z` in `[sqrt(1/2), sqrt(2))`; `ln z = 2 atanh(s)` with `s = (z - 1) / (z + 1)`,
/// `|s| <= 0.172`, by its series to `s^21` (next term below `1e-17` relative); `ln x = k ln2_hi +
/// (ln z + k ln2_lo)`.
#[inline(always)]
pub(crate) fn ln_normal<const FMA: bool>(x: f64) -> f64 {
    let bits = x.to_bits();
    let offset = bits.wrapping_sub(SQRT_HALF_BITS);
    // Arithmetic shift: k is the exponent of x relative to sqrt(1/2)'s binade, possibly negative.
    let k = ((offset as i64) >> 52) as f64;
    let z = f64::from_bits(bits.wrapping_sub(offset & (0xfff << 52)));
    let s = (z - 1.0) / (z + 1.0);
    let s2 = s * s;
    let mut p = LN_ATANH[10];
    for &c in LN_ATANH[..10].iter().rev() {
        p = mul_add::<FMA>(p, s2, c);
    }
    let ln = mul_add::<FMA>(k, LN2_HI, mul_add::<FMA>(s, p, k * LN2_LO));
    if x.is_finite() { ln } else { x }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs() / f64::EPSILON
    }

    #[test]
    fn the_split_of_ln2_is_fdlibms() {
        assert_eq!(LN2_HI, 6.931_471_803_691_238e-1);
        assert_eq!(LN2_HI.to_bits() & ((1 << 21) - 1), 0);
        assert_eq!(LN2_LO, 1.908_214_929_270_587_7e-10);
        assert!((LN2_HI + LN2_LO - std::f64::consts::LN_2).abs() <= f64::EPSILON / 2.0);
    }

    #[test]
    fn exp_is_within_two_ulps_of_libm_on_its_range() {
        exp_within_two_ulps::<false>();
        exp_within_two_ulps::<true>();
    }

    fn exp_within_two_ulps<const FMA: bool>() {
        let mut worst: f64 = 0.0;
        for i in 0..=2_000_000 {
            let x = -708.0 * i as f64 / 2e6 - 1e-7 * (i % 13) as f64;
            let x = x.max(-708.0);
            worst = worst.max(ulps(exp_nonpositive::<FMA>(x), x.exp()));
        }
        for x in [
            0.0,
            -0.0,
            -1e-300,
            -5e-324,
            -0.5 * std::f64::consts::LN_2,
            -708.0,
        ] {
            worst = worst.max(ulps(exp_nonpositive::<FMA>(x), x.exp()));
        }
        assert!(worst <= 2.0, "FMA {FMA}: worst error {worst} ulps");
        assert!(exp_nonpositive::<FMA>(f64::NAN).is_nan());
    }

    #[test]
    fn ln_is_within_two_ulps_of_libm() {
        ln_within_two_ulps::<false>();
        ln_within_two_ulps::<true>();
    }

    fn ln_within_two_ulps<const FMA: bool>() {
        let ln_normal = ln_normal::<FMA>;
        let mut worst: f64 = 0.0;
        let mut x = f64::MIN_POSITIVE;
        while x < 1e300 {
            let sqrt2 = std::f64::consts::SQRT_2;
            for m in [
                1.0,
                1.0 + 1e-12,
                1.1,
                sqrt2 - 1e-9,
                sqrt2 + 1e-9,
                1.9,
                1.999_999_999,
            ] {
                let v = x * m;
                // The relative error of a result near 0 is not the measure; its absolute one is.
                let (a, b) = (ln_normal(v), v.ln());
                let err = if b.abs() < 1.0 {
                    (a - b).abs() / f64::EPSILON
                } else {
                    ulps(a, b)
                };
                worst = worst.max(err);
            }
            x *= 3.7;
        }
        for v in [
            1.0,
            2.0,
            16.0,
            0.5,
            1.0 + f64::EPSILON,
            1.0 - f64::EPSILON / 2.0,
        ] {
            assert!((ln_normal(v) - v.ln()).abs() <= 2.0 * f64::EPSILON * v.ln().abs().max(1.0));
        }
        assert!(worst <= 2.0, "FMA {FMA}: worst error {worst} ulps");
        assert_eq!(ln_normal(1.0), 0.0);
        assert!(ln_normal(f64::NAN).is_nan());
        assert_eq!(ln_normal(f64::INFINITY), f64::INFINITY);
    }
}

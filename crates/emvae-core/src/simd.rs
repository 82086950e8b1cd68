//! Runtime choice of instruction set for host kernels (the mixtures' E-step, the text models'
//! vocabulary softmax).
//!
//! The kernels are plain loops that LLVM vectorises; compiled for baseline x86-64 they get 2-wide SSE2.
//! [`multiversion!`] compiles a kernel body a second and third time with AVX2+FMA and AVX-512 enabled
//! and picks, per call, the widest one the CPU has (the feature test is a cached load).
//!
//! A kernel whose body is generic over `const FMA: bool` (written `=> body::<FMA>`) gets fused
//! multiply-adds in the AVX2 and AVX-512 versions (half the instructions of a polynomial) and separate
//! multiplies and adds in the baseline one, where `f64::mul_add` would be a libm call. So results may
//! differ in the last bit between machines with and without FMA; on one machine they are the same from
//! run to run and for any number of threads.

/// `a b + c`, fused (one rounding) when `FMA`.
#[inline(always)]
pub fn mul_add<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// [`mul_add`] in f32.
#[inline(always)]
pub fn mul_add_f32<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Defines `$vis fn $name(args) -> ret` that calls `$body(args)` (an `#[inline(always)]` function)
/// compiled for the best of AVX-512, AVX2 and the baseline that this CPU supports; `=> $body::<FMA>`
/// calls `$body::<true>` where the CPU has FMA and `$body::<false>` where not.
#[macro_export]
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
        => $body:ident::<FMA>) => {
        $crate::multiversion! {
            @versions $(#[$meta])* $vis fn $name($($arg: $ty),*) $(-> $ret)?
                => ($body::<true>, $body::<false>)
        }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
        => $body:path) => {
        $crate::multiversion! {
            @versions $(#[$meta])* $vis fn $name($($arg: $ty),*) $(-> $ret)? => ($body, $body)
        }
    };
    (@versions $(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?
        => ($wide:path, $base:path)) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma,bmi1,bmi2")]
                fn v4($($arg: $ty),*) $(-> $ret)? {
                    $wide($($arg),*)
                }
                #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
                fn v3($($arg: $ty),*) $(-> $ret)? {
                    $wide($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU has every feature `v4` is compiled with.
                    return unsafe { v4($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("bmi2")
                {
                    // SAFETY: the CPU has every feature `v3` is compiled with.
                    return unsafe { v3($($arg),*) };
                }
            }
            $base($($arg),*)
        }
    };
}

pub use crate::multiversion;

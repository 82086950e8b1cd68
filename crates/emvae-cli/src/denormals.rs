//! Flushing subnormal floats to zero for neural-network training.
//!
//! As a VAE trains, Bernoulli logits grow and `exp(-|l|)`, gradients of saturated units and Adam's
//! second moments fall into the subnormal range, where x86 arithmetic is some 100 times slower
//! (measured: a 500-epoch digits run fell from 22,700 to 11,600 examples per second). Setting the FTZ
//! and DAZ bits of MXCSR makes such values zero, as GPUs and most deep-learning runtimes do; at f32
//! precision they are below anything that changes a result. The setting is per thread, so it is applied
//! to the calling thread and to every thread of rayon's global pool, which burn's CPU backends use.
//! Exact EM does not use it (its log-space responsibilities are floored above the subnormals instead).

/// Sets flush-to-zero and denormals-are-zero on this thread and on rayon's worker threads.
pub fn flush_to_zero() {
    set_this_thread();
    rayon::broadcast(|_| set_this_thread());
}

#[cfg(target_arch = "x86_64")]
fn set_this_thread() {
    // MXCSR bit 15: flush to zero; bit 6: denormals are zero.
    const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);
    let mut csr: u32 = 0;
    // SAFETY: stmxcsr/ldmxcsr read and write this thread's SSE control register, which every x86_64 CPU
    // has; only the FTZ and DAZ bits change.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
        csr |= FTZ_DAZ;
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack));
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn set_this_thread() {}

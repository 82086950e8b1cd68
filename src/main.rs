// burn allocates a fresh buffer for every tensor operation; mimalloc keeps freed pages for reuse where
// the system allocator returns large blocks to the kernel and faults them back in (measured: VAE
// training 9.3k -> 12.3k examples/s on flex).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's option setter (linked through the `mimalloc` crate).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (the same index in its v2 and v3 headers).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

fn main() -> std::process::ExitCode {
    // Never hand freed pages back to the kernel: a text model's vocabulary-sized buffers (30 MB each
    // step at V = 10k) were otherwise returned and zero-faulted back in every step (10% of a step in
    // `clear_page_erms`; measured: sentence-VAE training +28% tokens per second).
    // SAFETY: sets a plain integer option; called before any thread is spawned.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    emvae_cli::main()
}

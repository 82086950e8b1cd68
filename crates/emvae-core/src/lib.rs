//! emvae-core: what every emvae model shares.
//!
//! - [`config`]: TOML configs whose errors name the file, line and key;
//! - [`data`]: reading data sets (CSV, NumPy `.npy`, IDX) into a dense row-major [`data::Matrix`] with
//!   errors that name the file and line;
//! - [`linalg`]: small dense f64 linear algebra done on the host (Cholesky factors of k d x d matrices);
//! - [`tensor`]: the bridge between host matrices and burn tensors, and log-space reductions;
//! - [`run`]: run directories whose files are all written atomically;
//! - [`rng`]: reproducible seeding;
//! - [`simd`]: host kernels compiled for the widest instruction set the CPU has.
//!
//! Nothing here names a backend: a [`burn::tensor::Device`] is chosen by the caller and passed down.

pub mod config;
pub mod data;
pub mod hash;
pub mod linalg;
pub mod rng;
pub mod run;
pub mod simd;
pub mod tensor;

pub use burn;

//! Amortized variational EM: variational autoencoders, validated against exact EM.
//!
//! A latent-variable model p(z) p(x | z) ([`model`]: prior and decoder) is fitted with an
//! approximate posterior q(z | x) ([`guide`]: the encoder, which amortizes the E-step across data
//! points) by maximising a bound on log p(x) ([`objective`]: the ELBO, with analytic or Monte Carlo KL,
//! beta, annealing and free bits, or the importance-weighted bound). [`train`] runs the EM loop with
//! one of several E-step strategies (amortized, aggressive, non-amortized, semi-amortized, Monte Carlo
//! EM), data-parallel shards and a fused [`adam`], and resumable checkpoints; [`diagnostics`] measures what a VAE learned (ELBO terms, active units,
//! mutual information, importance-weighted NLL, amortization gap).

pub mod adam;
pub mod amortized;
pub mod config;
pub mod data;
pub mod diagnostics;
pub mod error;
pub mod guide;
pub mod inference;
pub mod model;
pub mod nn;
pub mod objective;
pub mod refine;
pub mod schedule;
pub mod shard;
pub mod train;
pub mod vae;

pub use amortized::{AmortizedModel, ModelConfig, TrainData};
pub use config::VaeConfig;
pub use error::VaeError;
pub use vae::Vae;

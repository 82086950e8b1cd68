//! Text autoencoders on emvae's amortized-EM machinery.
//!
//! A corpus is one sentence per line, tokens separated by white space (optionally `label<TAB>sentence`);
//! [`vocab`] maps tokens to ids, [`corpus`] reads and checks corpora, [`batch`] forms length-bucketed
//! padded batches, [`rnn`] holds fused LSTM and GRU cells, and [`grammar`] generates a corpus with known
//! factors (sentiment, topic) for tests and examples.

pub mod baseline;
pub mod batch;
pub mod classify;
pub mod config;
pub mod corpus;
pub mod dataset;
pub mod error;
pub mod grammar;
pub mod guidance;
mod host;
pub mod inference;
pub mod label;
pub mod lstm_kernel;
pub mod model;
pub mod output;
pub mod refit;
pub mod rnn;
pub mod softmax;
#[cfg(test)]
mod test_support;
pub mod vocab;

pub use config::TextVaeConfig;
pub use dataset::{TextBatch, TextDataset};
pub use error::TextError;
pub use model::TextVae;

/// The trainer of the sentence VAE.
pub type TextTrainer = emvae_vae::train::AmortizedTrainer<TextVae>;

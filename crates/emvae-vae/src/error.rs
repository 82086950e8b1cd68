//! Errors of the amortized path.

use emvae_core::config::InvalidParam;
use emvae_core::data::DataError;

#[derive(Debug, thiserror::Error)]
pub enum VaeError {
    /// A setting is invalid; its key names the config entry (relative to `[vae]`).
    #[error(transparent)]
    InvalidParam(#[from] InvalidParam),
    /// The data do not fit the model.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A checkpoint or model file does not belong to this model, or is damaged.
    #[error("{0}")]
    Checkpoint(String),
    /// Training produced a non-finite loss.
    #[error("{0}")]
    Diverged(String),
    /// The caller's observer failed (for instance writing a checkpoint).
    #[error("{0}")]
    Observer(Box<dyn std::error::Error + Send + Sync>),
}

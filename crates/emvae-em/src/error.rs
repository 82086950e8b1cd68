//! Errors of exact-EM models.

use emvae_core::config::InvalidParam;
use emvae_core::data::DataError;

/// What can go wrong fitting or using an exact-EM model.
#[derive(Debug, thiserror::Error)]
pub enum EmError {
    /// A hyper-parameter is invalid; its key names the config entry.
    #[error(transparent)]
    InvalidParam(#[from] InvalidParam),
    /// The data does not fit the model (too few rows, wrong width, a label out of range).
    #[error(transparent)]
    Data(#[from] DataError),
    /// Data given to a fitted model has another number of features than it was fitted on.
    #[error("the data has {found} features but the model was fitted on {expected}")]
    FeatureMismatch { expected: usize, found: usize },
    /// A covariance matrix lost positive definiteness: EM cannot continue without more regularisation.
    #[error("{message}")]
    IllConditioned {
        /// The component, or `None` for a tied covariance shared by all.
        component: Option<usize>,
        message: String,
    },
    /// A checkpoint does not belong to this model or data.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The caller's observer asked to stop (for instance it failed to write a checkpoint).
    #[error("{0}")]
    Observer(Box<dyn std::error::Error + Send + Sync>),
}

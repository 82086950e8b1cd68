//! Why a picture or the report could not be made.

use std::path::PathBuf;

/// A plotting failure.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The data cannot make this picture (no points, mismatched lengths, non-finite values only).
    #[error("cannot draw {picture}: {reason}")]
    Data {
        picture: &'static str,
        reason: String,
    },
    /// The drawing backend failed.
    #[error("drawing failed: {0}")]
    Draw(String),
    /// The embedded font could not be registered.
    #[error("the embedded font is invalid")]
    Font,
    /// PNG encoding failed.
    #[error("PNG encoding failed: {0}")]
    Png(String),
    /// Writing a file failed.
    #[error(transparent)]
    Io(#[from] emvae_core::run::RunIoError),
    /// Creating the output directory failed.
    #[error("{path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl PlotError {
    /// Bad input data for `picture`.
    pub fn data(picture: &'static str, reason: impl Into<String>) -> Self {
        Self::Data {
            picture,
            reason: reason.into(),
        }
    }
}

/// Turns any backend error into [`PlotError::Draw`].
pub(crate) fn draw<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

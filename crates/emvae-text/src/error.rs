//! Errors of the text models.

use std::path::PathBuf;

use emvae_core::config::InvalidParam;
use emvae_vae::VaeError;

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// A corpus file cannot be used; `line` is 1-based where the problem is on one line.
    #[error("{}{}: {message}", path.display(), line.map_or(String::new(), |l| format!(":{l}")))]
    Corpus {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// Reading a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A vocabulary file is missing, damaged or does not fit the model.
    #[error("vocabulary: {0}")]
    Vocab(String),
    /// A setting is invalid; its key names the config entry.
    #[error(transparent)]
    InvalidParam(#[from] InvalidParam),
    /// Bad input to a latent-code command (sentence, latents, label).
    #[error("{0}")]
    Input(String),
    /// From the amortized machinery (checkpoints, divergence, observers).
    #[error(transparent)]
    Vae(#[from] VaeError),
}

impl TextError {
    pub fn corpus(
        path: impl Into<PathBuf>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        Self::Corpus {
            path: path.into(),
            line,
            message: message.into(),
        }
    }
}

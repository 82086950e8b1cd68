//! emvae facade.
pub use emvae_core as core;
pub use emvae_em as em;
pub use emvae_text as text;
pub use emvae_vae as vae;

//! emvae-vae

//! The variational autoencoder: model (prior and decoder) and guide (encoder) together.

use burn::module::Module;
use burn::tensor::Device;
use emvae_core::rng::rng_for;

use crate::config::VaeConfig;
use crate::guide::Encoder;
use crate::model::{Decoder, Prior};

#[derive(Module, Debug)]
pub struct Vae {
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub prior: Prior,
}

impl Vae {
    /// A freshly initialised VAE; weights depend only on `seed` (drawn on the host).
    pub fn new(config: &VaeConfig, seed: u64, device: &Device) -> Self {
        let mut rng = rng_for(seed, b"vae-init", 0);
        let encoder = Encoder::new(config, &mut rng, device);
        let decoder = Decoder::new(config, &mut rng, device);
        let prior = Prior::new(config, &mut rng, device);
        Self {
            encoder,
            decoder,
            prior,
        }
    }
}

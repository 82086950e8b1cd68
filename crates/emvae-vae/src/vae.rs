//! The variational autoencoder: model (prior and decoder) and guide (encoder) together.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Gradients, Tensor};
use emvae_core::config::InvalidParam;
use emvae_core::rng::rng_for;

use crate::config::{LikelihoodKind, VaeConfig};
use crate::error::VaeError;
use crate::guide::{Encoder, Posterior};
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

impl crate::amortized::AmortizedModel for Vae {
    type Config = VaeConfig;
    type Batch = Tensor<2>;
    type Data = crate::data::VaeData;

    fn init(config: &VaeConfig, seed: u64, device: &Device) -> Self {
        Self::new(config, seed, device)
    }

    fn check_data(config: &VaeConfig, data: &Self::Data) -> Result<(), VaeError> {
        check_rows(config, data)
    }

    fn posterior(&self, x: &Tensor<2>) -> Posterior {
        self.encoder.forward(x.clone())
    }

    fn log_likelihood(&self, x: &Tensor<2>, z: Tensor<2>, samples: usize) -> Tensor<1> {
        let params = self.decoder.forward(z);
        let x_rep = if samples == 1 {
            x.clone()
        } else {
            x.clone().repeat_dim(0, samples)
        };
        self.decoder.log_prob(&params, x_rep)
    }

    fn prior(&self) -> &Prior {
        &self.prior
    }

    fn guide_gradients(&self, grads: Gradients) -> GradientsParams {
        GradientsParams::from_grads(grads, &self.encoder)
    }
}

/// Checks that dense rows suit the model: width, category ids, Bernoulli range (keys relative to
/// `[vae]`).
fn check_rows(config: &VaeConfig, train: &crate::data::VaeData) -> Result<(), VaeError> {
    let d = config.data_dim();
    if train.d != d {
        return Err(InvalidParam::new(
            "encoder.sizes[0]",
            format!(
                "the data have {} columns but the encoder takes {d}",
                train.d
            ),
        )
        .into());
    }
    if let Some(v) = config.likelihood.n_categories
        && let Some(bad) = train
            .values()
            .iter()
            .find(|&&x| x < 0.0 || x >= v as f32 || x.fract() != 0.0)
    {
        return Err(InvalidParam::new(
            "likelihood.n_categories",
            format!(
                "categorical data must hold category ids 0..{}, found {bad}",
                v - 1
            ),
        )
        .into());
    }
    if config.likelihood.kind == LikelihoodKind::Bernoulli
        && let Some(bad) = train.values().iter().find(|&&x| !(0.0..=1.0).contains(&x))
    {
        return Err(InvalidParam::new(
            "likelihood.kind",
            format!(
                "a Bernoulli likelihood needs data in [0, 1] (binarise with data.binarize, or scale with \
                 data.scale); found {bad}"
            ),
        )
        .into());
    }
    Ok(())
}

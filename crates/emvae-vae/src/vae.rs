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

    fn guide_only(&self) -> Self {
        Self {
            encoder: self.encoder.clone(),
            decoder: self.decoder.clone().no_grad(),
            prior: self.prior.clone().no_grad(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amortized::AmortizedModel;
    use crate::config::{KlEstimator, ObjectiveKind};
    use crate::objective::{ObjectiveSpec, batch_terms};
    use crate::train::gradient_values;
    use burn::tensor::Distribution;

    /// The encoder-only steps' frozen copy: the encoder's gradients are the whole model's, bit for
    /// bit, and neither the decoder nor a learnt prior gets any.
    #[test]
    fn guide_only_gives_the_guide_the_same_gradients_and_the_decoder_none() {
        let device = Device::flex().autodiff();
        let config: VaeConfig = toml::from_str(
            "[encoder]\nsizes = [12, 16, 3]\n[decoder]\nsizes = [3, 16, 12]\n\
             [likelihood]\nkind = \"bernoulli\"\n[prior]\nkind = \"mixture\"\nn_components = 3\n",
        )
        .expect("config");
        let model = Vae::new(&config, 3, &device);
        let x = Tensor::<2>::random([10, 12], Distribution::Bernoulli(0.4), &device);
        let eps = Tensor::<2>::random([20, 3], Distribution::Normal(0.0, 1.0), &device);
        let spec = ObjectiveSpec {
            kind: ObjectiveKind::Elbo,
            samples: 2,
            beta: 0.7,
            free_bits: 0.0,
            kl: KlEstimator::MonteCarlo,
        };
        // The encoder's gradients, and how many of the decoder's and the prior's parameters got one.
        let grads_of = |m: &Vae| {
            let q = m.posterior(&x);
            let grads = batch_terms(m, &q, &x, eps.clone(), &spec).loss.backward();
            let mut grads = GradientsParams::from_grads(grads, m);
            let encoder = gradient_values(&m.encoder, &mut grads);
            (encoder, grads.len())
        };
        let (full, full_others) = grads_of(&model);
        let (guide, guide_others) = grads_of(&model.guide_only());
        assert!(full_others > 0);
        assert_eq!(guide_others, 0);
        assert!(
            full.iter().all(Option::is_some),
            "every encoder parameter has a gradient"
        );
        assert!(full.iter().flatten().flatten().any(|g| *g != 0.0));
        assert_eq!(full, guide);
    }
}

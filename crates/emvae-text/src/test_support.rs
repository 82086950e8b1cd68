//! Small models for unit tests.

use burn::tensor::Device;

use crate::TextVaeConfig;
use crate::config::{LabelLatentConfig, RnnConfig};
use crate::model::TextVae;

/// A model over 12 word ids with z of size 3 and a label latent over ("neg", "pos"), LSTMs of 8 units,
/// no dropout; the classifier's weights, the word bias and the refit as given.
pub(crate) fn labelled_model(
    classifier_weight: f64,
    posterior_weight: f64,
    word_bias: bool,
    refit_samples: usize,
    seed: u64,
) -> (TextVae, Device) {
    let device = Device::flex();
    let model = labelled_model_on(
        &device,
        classifier_weight,
        posterior_weight,
        word_bias,
        refit_samples,
        seed,
    );
    (model, device)
}

/// [`labelled_model`] on `device` (an autodiff device for gradient tests).
pub(crate) fn labelled_model_on(
    device: &Device,
    classifier_weight: f64,
    posterior_weight: f64,
    word_bias: bool,
    refit_samples: usize,
    seed: u64,
) -> TextVae {
    let rnn = RnnConfig {
        hidden: 8,
        ..Default::default()
    };
    let config = TextVaeConfig {
        latent: 3,
        embedding: 6,
        encoder: rnn.clone(),
        decoder: rnn,
        label: Some(LabelLatentConfig {
            classes: vec!["neg".into(), "pos".into()],
            labelled_fraction: 1.0,
            classifier_weight,
            posterior_weight,
            word_bias,
            refit_samples,
            refit_c: 1.0,
            guidance: Some(0.0),
        }),
        vocab_size: 12,
        dropout: 0.0,
        ..Default::default()
    };
    TextVae::new(&config, 12, seed, device)
}

//! What a text run shows of itself: the sentences its summary keeps (reconstructions of held-out
//! sentences, a homotopy between two of them) for the report's tables, and the latent map `emvae plot`
//! draws (posterior means of held-out sentences, coloured by label).

use burn::tensor::Device;
use emvae_core::tensor::tensor_to_vec;
use emvae_text::TextVae;
use emvae_text::batch::TextData;
use emvae_text::classify::guide_classes;
use emvae_text::inference::{Decoding, decode, encode, homotopy, latent_tensor};
use emvae_text::vocab::Vocab;
use emvae_vae::AmortizedModel;
use emvae_vae::inference::sample_prior;

use crate::error::{CliError, CliResult};
use crate::text::{load_corpora, open_trained, words};
use crate::vae::{VIEW_ROWS, VaeView};

/// Sentences reconstructed, and points of the homotopy.
const SHOWN: usize = 5;
/// Longest decoded sentence, in words.
const MAX_WORDS: usize = 50;
/// Prior samples beside the posterior means.
const PRIOR_POINTS: usize = 500;

/// Reconstructions (`input => output`, greedy) of the first sentences of `data` and the homotopy between
/// its first two; empty for a model without a latent code.
pub(crate) struct Shown {
    pub reconstructions: Vec<String>,
    pub interpolation: Vec<String>,
}

pub(crate) fn shown_sentences(
    model: &TextVae,
    vocab: &Vocab,
    data: &TextData,
    device: &Device,
) -> Shown {
    let n = data.len().min(SHOWN);
    if !model.shape.has_latent || n == 0 {
        return Shown {
            reconstructions: Vec::new(),
            interpolation: Vec::new(),
        };
    }
    let first = TextData {
        sentences: data.sentences[..n].to_vec(),
        labels: None,
        label_names: data.label_names.clone(),
    };
    let l = model.shape.latent;
    let (mean, _) = encode(model, &first, device);
    let rows: Vec<Vec<f64>> = mean.chunks(l).map(<[f64]>::to_vec).collect();
    let ys = guide_classes(model, &first, device);
    let z = model.condition(latent_tensor(&rows, device), &ys);
    let reconstructions = decode(model, z, Decoding::Greedy, MAX_WORDS)
        .iter()
        .zip(&first.sentences)
        .map(|(out, input)| format!("{} => {}", words(vocab, input), words(vocab, out)))
        .collect();
    let interpolation = if n >= 2 {
        let line = homotopy(&rows[0], &rows[1], SHOWN);
        let z = model.condition(latent_tensor(&line, device), &vec![ys[0]; line.len()]);
        decode(model, z, Decoding::Greedy, MAX_WORDS)
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "t = {:.2}: {}",
                    i as f64 / (SHOWN - 1) as f64,
                    words(vocab, s)
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    Shown {
        reconstructions,
        interpolation,
    }
}

/// The latent map of a text run: posterior means of (at most 2,000) held-out sentences, else training
/// ones, with their labels, and samples from the prior.
pub(crate) fn latent_view(dir: &std::path::Path) -> CliResult<VaeView> {
    let t = open_trained(dir, crate::vae::ModelFile::Last, None)?;
    if !t.model.shape.has_latent {
        return Err(CliError::user(
            "a language model without a latent code has no latent map",
        ));
    }
    let corpora = load_corpora(&t.loaded)?;
    let (mut corpus, split) = match corpora.test {
        Some(c) => (c, "held-out"),
        None => (corpora.train, "training"),
    };
    let keep = corpus.sentences.len().min(VIEW_ROWS);
    corpus.sentences.truncate(keep);
    if let Some(l) = corpus.labels.as_mut() {
        l.truncate(keep);
    }
    let names = match &t.loaded.text().label {
        Some(l) => l.classes.clone(),
        None => corpus.label_names(),
    };
    let (data, _) = TextData::new(&corpus, &t.vocab, &names).map_err(CliError::user)?;
    let (means, _) = encode(&t.model, &data, &t.device);
    let prior = tensor_to_vec(sample_prior(
        t.model.prior(),
        PRIOR_POINTS,
        t.loaded.config.seed,
        &t.device,
    ));
    Ok(VaeView {
        latent: t.model.shape.latent,
        split,
        labels: data
            .labels
            .as_ref()
            .map(|ls| ls.iter().map(|l| l.map(|y| y as usize)).collect()),
        label_names: (!names.is_empty()).then_some(names),
        means,
        prior,
        inputs: Vec::new(),
        reconstructions: Vec::new(),
        samples: Vec::new(),
    })
}

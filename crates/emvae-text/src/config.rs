//! The `[text]` table of a config: the sentence VAE's architecture (embeddings, recurrent encoder and
//! decoder, latent size), its corpus settings (vocabulary, maximum length), and the training settings
//! every amortized model shares (`objective`, `estep`, `train`, `eval`, as under `[vae]`).
//!
//! ```toml
//! [text]
//! latent = 32            # 0: no latent code, the recurrent language-model baseline
//! embedding = 256
//! word_dropout = 0.3
//! [text.encoder]
//! cell = "lstm"          # lstm | gru
//! hidden = 256
//! [text.decoder]
//! cell = "lstm"
//! hidden = 256
//! ```

use emvae_core::config::InvalidParam;
use emvae_vae::config::{
    EStepConfig, EvalConfig, ObjectiveConfig, PriorConfig, PriorKind, TrainConfig, check_training,
};
use serde::{Deserialize, Serialize};

use crate::corpus::Overlong;
use crate::grammar::{GrammarKind, LabelFactor};
use crate::lstm_kernel::HostKernels;
use crate::rnn::CellKind;

fn default_hidden() -> usize {
    256
}
fn default_one() -> usize {
    1
}
fn default_true() -> bool {
    true
}

/// A recurrent network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RnnConfig {
    #[serde(default = "default_cell")]
    pub cell: CellKind,
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    #[serde(default = "default_one")]
    pub layers: usize,
    /// Encoder only: read the sentence in both directions.
    #[serde(default)]
    pub bidirectional: bool,
}

fn default_cell() -> CellKind {
    CellKind::Lstm
}

impl Default for RnnConfig {
    fn default() -> Self {
        Self {
            cell: default_cell(),
            hidden: default_hidden(),
            layers: 1,
            bidirectional: false,
        }
    }
}

/// How z enters the decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditioning {
    /// z sets the decoder's initial state (a linear map; for an LSTM the cell, with h = tanh(c)).
    #[serde(default = "default_true")]
    pub initial_state: bool,
    /// z is concatenated to every decoder input (as He et al. 2019's decoder).
    #[serde(default = "default_true")]
    pub every_input: bool,
}

impl Default for Conditioning {
    fn default() -> Self {
        Self {
            initial_state: true,
            every_input: true,
        }
    }
}

fn default_max_size() -> Option<usize> {
    Some(10_000)
}

/// The vocabulary built from the training split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VocabConfig {
    /// Most entries, the four special tokens included (`<pad>`, `<unk>`, `<bos>`, `<eos>`).
    #[serde(default = "default_max_size")]
    pub max_size: Option<usize>,
    /// Words seen fewer times are `<unk>`.
    #[serde(default = "default_one")]
    pub min_count: usize,
}

impl Default for VocabConfig {
    fn default() -> Self {
        Self {
            max_size: default_max_size(),
            min_count: 1,
        }
    }
}

/// A generated corpus (the grammar of [`crate::grammar`]) instead of a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratedCorpus {
    pub n_sentences: usize,
    /// Sentences generated for the held-out split.
    #[serde(default)]
    pub n_held_out: usize,
    #[serde(default)]
    pub seed: u64,
    /// Which factor labels the sentences (`both`: `sentiment-topic`, `sentiment`, `topic`, `none`).
    #[serde(default = "default_factor")]
    pub labels: LabelFactor,
    /// The grammar: `reviews` (the default) or `sparse_sentiment`.
    #[serde(default)]
    pub grammar: GrammarKind,
}

fn default_factor() -> LabelFactor {
    LabelFactor::Both
}

fn default_fraction() -> f64 {
    1.0
}

fn default_classifier_weight() -> f64 {
    100.0
}

/// Small: early in training the exact posterior is near uniform, and a large weight would hold the
/// classifier there.
fn default_posterior_weight() -> f64 {
    0.1
}

/// A discrete latent y beside z (Kingma et al. 2014's M2): observed for the sentences whose label the
/// corpus gives (and the run keeps), summed over exactly for the others.
///
/// ```toml
/// [text.label]
/// classes = ["neg", "pos"]
/// labelled_fraction = 0.05   # keep 5% of the training labels (per class), hide the rest
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelLatentConfig {
    /// The values of y, in the order of its one-hot code; the corpus's labels must be among them.
    pub classes: Vec<String>,
    /// Fraction of the training split's labelled sentences whose label is kept, drawn per class from
    /// the run's seed; the hidden labels only score the model afterwards.
    #[serde(default = "default_fraction")]
    pub labelled_fraction: f64,
    /// Weight of the classification loss `-log q(y | x)` per labelled sentence (Kingma et al.'s alpha,
    /// 0.1 N on their summed objective; the loss here is a mean over sentences, so labelled ones,
    /// being few, need a large weight to steer the classifier).
    #[serde(default = "default_classifier_weight")]
    pub classifier_weight: f64,
    /// Weight of `KL(p(y | x, z) || q(y | x))` per unlabelled sentence: the classifier learns the
    /// model's exact posterior over y where no label is given (0 trains it on the labels alone).
    #[serde(default = "default_posterior_weight")]
    pub posterior_weight: f64,
    /// Whether y also shifts the decoder's vocabulary logits by a learned vector per class, so that it
    /// reaches every word directly (a naive-Bayes path beside the recurrence; see [`crate::label`]).
    #[serde(default = "default_true")]
    pub word_bias: bool,
    /// Importance samples of z behind the model's posterior p(y | x) to which q(y | x) is refitted
    /// on the unlabelled training sentences when training ends (see [`crate::refit`]); 0 keeps q as
    /// training left it.
    #[serde(default = "default_refit_samples")]
    pub refit_samples: usize,
    /// Inverse penalty of that refit (scikit-learn's `C`: `C sum_i KL(p(y | x_i) || q(y | x_i)) +
    /// 1/2 ||weights||^2`).
    #[serde(default = "default_refit_c")]
    pub refit_c: f64,
    /// Label guidance of every decoding command (`sample --label`, `transfer`, ...; `--guidance`
    /// overrides it): how much each step's word distribution is pushed away from the other classes'
    /// (see [`crate::inference::decode_with_guidance`]); 0 decodes from the model's own p(x | y, z).
    /// Omitted, it is calibrated when training ends ([`crate::guidance::calibrate_guidance`]): the
    /// smallest value at which q(y | x) recognises the class of most samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f64>,
}

fn default_refit_samples() -> usize {
    4
}

fn default_refit_c() -> f64 {
    1.0
}

impl LabelLatentConfig {
    /// Validates the table; keys relative to `[text]`.
    pub fn check(&self) -> Result<(), InvalidParam> {
        if self.classes.len() < 2 {
            return Err(InvalidParam::new(
                "label.classes",
                format!("needs at least 2 classes, got {}", self.classes.len()),
            ));
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.trim().is_empty() || c.trim() != c || c.contains('\t') {
                return Err(InvalidParam::new(
                    "label.classes",
                    format!(
                        "class {i} ({c:?}) must be a non-empty label without surrounding blanks or TABs"
                    ),
                ));
            }
            if self.classes[..i].contains(c) {
                return Err(InvalidParam::new(
                    "label.classes",
                    format!("{c:?} is listed twice"),
                ));
            }
        }
        if !(self.labelled_fraction > 0.0 && self.labelled_fraction <= 1.0) {
            return Err(InvalidParam::new(
                "label.labelled_fraction",
                format!("must be in (0, 1], got {}", self.labelled_fraction),
            ));
        }
        for (key, w) in [
            ("label.classifier_weight", self.classifier_weight),
            ("label.posterior_weight", self.posterior_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(InvalidParam::new(
                    key,
                    format!("must be finite and at least 0, got {w}"),
                ));
            }
        }
        if let Some(g) = self.guidance
            && !(g.is_finite() && g >= 0.0)
        {
            return Err(InvalidParam::new(
                "label.guidance",
                format!("must be finite and at least 0, got {g}"),
            ));
        }
        if !(self.refit_c.is_finite() && self.refit_c > 0.0) {
            return Err(InvalidParam::new(
                "label.refit_c",
                format!("must be finite and above 0, got {}", self.refit_c),
            ));
        }
        Ok(())
    }

    /// The index of class `name`, or an error listing the classes.
    pub fn class_index(&self, name: &str) -> Result<usize, String> {
        self.classes.iter().position(|c| c == name).ok_or_else(|| {
            format!(
                "{name:?} is not a class of this model; its classes are {}",
                self.classes.join(", ")
            )
        })
    }
}

fn default_embedding() -> usize {
    256
}
fn default_latent() -> usize {
    32
}
fn default_dropout() -> f64 {
    0.5
}

/// The whole `[text]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextVaeConfig {
    /// Dimension of z; 0 turns the latent code off (the language-model baseline).
    #[serde(default = "default_latent")]
    pub latent: usize,
    /// Word embedding size (encoder and decoder have their own embeddings).
    #[serde(default = "default_embedding")]
    pub embedding: usize,
    #[serde(default)]
    pub encoder: RnnConfig,
    #[serde(default)]
    pub decoder: RnnConfig,
    #[serde(default)]
    pub conditioning: Conditioning,
    /// Dropout on the decoder's input embeddings and outputs (training only).
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// Bowman et al. 2016: each decoder input word is replaced by `<unk>` with this probability
    /// (training only), so the decoder must lean on z.
    #[serde(default)]
    pub word_dropout: f64,
    #[serde(default)]
    pub vocab: VocabConfig,
    /// Longest sentence, in words; longer ones are truncated or rejected (`overlong`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[serde(default = "default_overlong")]
    pub overlong: Overlong,
    /// Generate the corpus instead of reading `[data] path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<GeneratedCorpus>,
    /// A partly observed discrete latent beside z (semi-supervised); `None`: z alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<LabelLatentConfig>,
    #[serde(default)]
    pub prior: PriorConfig,
    #[serde(default)]
    pub objective: ObjectiveConfig,
    #[serde(default)]
    pub estep: EStepConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    /// Entries of the vocabulary, set from the corpus when a run starts (not read from configs).
    #[serde(skip)]
    pub vocab_size: usize,
    /// Kernels for tensors in host memory, given by the edge, which knows the backend, where the
    /// device's tensors live there (not read from configs): the output layer and softmax then run as
    /// host loops ([`crate::output`]) and the LSTM recurrence as one operation ([`crate::lstm_kernel`]).
    #[serde(skip)]
    pub host_kernels: Option<HostKernels>,
}

fn default_overlong() -> Overlong {
    Overlong::Truncate
}

impl Default for TextVaeConfig {
    fn default() -> Self {
        Self {
            latent: default_latent(),
            embedding: default_embedding(),
            encoder: RnnConfig::default(),
            decoder: RnnConfig::default(),
            conditioning: Conditioning::default(),
            dropout: default_dropout(),
            word_dropout: 0.0,
            vocab: VocabConfig::default(),
            max_length: None,
            overlong: default_overlong(),
            generated: None,
            label: None,
            prior: PriorConfig::default(),
            objective: ObjectiveConfig::default(),
            estep: EStepConfig::default(),
            train: TrainConfig::default(),
            eval: EvalConfig::default(),
            vocab_size: 0,
            host_kernels: None,
        }
    }
}

fn probability(key: &str, p: f64) -> Result<(), InvalidParam> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(InvalidParam::new(
            key,
            format!("must be in [0, 1), got {p}"),
        ))
    }
}

impl TextVaeConfig {
    /// Whether the model has a latent code (else it is the language-model baseline).
    pub fn has_latent(&self) -> bool {
        self.latent > 0
    }

    /// Number of values of the label latent y (0 without one).
    pub fn n_classes(&self) -> usize {
        self.label.as_ref().map_or(0, |l| l.classes.len())
    }

    /// Validates everything that does not depend on the corpus; keys relative to `[text]`.
    pub fn check(&self) -> Result<(), InvalidParam> {
        let positive = |key: &str, v: usize| {
            if v >= 1 {
                Ok(())
            } else {
                Err(InvalidParam::new(key, "must be at least 1, got 0"))
            }
        };
        positive("embedding", self.embedding)?;
        for (name, rnn) in [("encoder", &self.encoder), ("decoder", &self.decoder)] {
            positive(&format!("{name}.hidden"), rnn.hidden)?;
            positive(&format!("{name}.layers"), rnn.layers)?;
        }
        if self.decoder.bidirectional {
            return Err(InvalidParam::new(
                "decoder.bidirectional",
                "a decoder generates left to right; only the encoder can be bidirectional",
            ));
        }
        if self.has_latent() && !self.conditioning.initial_state && !self.conditioning.every_input {
            return Err(InvalidParam::new(
                "conditioning",
                "z must enter the decoder somewhere: set initial_state or every_input",
            ));
        }
        probability("dropout", self.dropout)?;
        probability("word_dropout", self.word_dropout)?;
        if let Some(m) = self.vocab.max_size
            && m < 5
        {
            return Err(InvalidParam::new(
                "vocab.max_size",
                format!("must leave room for a word beside the 4 special tokens, got {m}"),
            ));
        }
        positive("vocab.min_count", self.vocab.min_count)?;
        if self.max_length == Some(0) {
            return Err(InvalidParam::new("max_length", "must be at least 1 word"));
        }
        if let Some(g) = &self.generated {
            positive("generated.n_sentences", g.n_sentences)?;
        }
        if !self.has_latent() && self.estep.strategy != emvae_vae::config::Strategy::Amortized {
            return Err(InvalidParam::new(
                "estep.strategy",
                "a model without a latent code (latent = 0) has no E-step to choose",
            ));
        }
        if let Some(label) = &self.label {
            label.check()?;
            if !self.has_latent() {
                return Err(InvalidParam::new(
                    "label",
                    "a label latent sits beside z: set latent to at least 1",
                ));
            }
        }
        check_training(
            &self.objective,
            &self.estep,
            &self.train,
            &self.eval,
            self.prior.kind == PriorKind::Mixture,
        )
    }
}

impl emvae_vae::ModelConfig for TextVaeConfig {
    fn objective(&self) -> &ObjectiveConfig {
        &self.objective
    }
    fn estep(&self) -> &EStepConfig {
        &self.estep
    }
    fn train(&self) -> &TrainConfig {
        &self.train
    }
    fn eval(&self) -> &EvalConfig {
        &self.eval
    }
    /// The baseline without a latent code keeps one dummy dimension whose posterior is the prior, so
    /// that its KL is 0 and every bound is its exact log-likelihood.
    fn latent_dim(&self) -> usize {
        self.latent.max(1)
    }
    fn mixture_prior(&self) -> bool {
        self.prior.kind == PriorKind::Mixture
    }
    fn architecture(&self) -> String {
        serde_json::to_string(&(
            self.latent,
            self.vocab_size,
            self.embedding,
            &self.encoder,
            &self.decoder,
            &self.conditioning,
            &self.prior,
            self.label.as_ref().map(|l| &l.classes),
        ))
        .expect("configs serialise")
    }
    fn check(&self) -> Result<(), InvalidParam> {
        TextVaeConfig::check(self)
    }
}

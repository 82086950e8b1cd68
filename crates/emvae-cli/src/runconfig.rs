//! The run configuration file (`configs/*.toml`): which model, on which data, with which settings.
//!
//! ```toml
//! model = "gmm"          # gmm | vae
//! seed = 0               # every random choice derives from it
//! precision = "f64"      # f64 | f32 (default: f64 for gmm, f32 for vae)
//! backend = "flex"       # flex | ndarray | wgpu (the --backend flag overrides it)
//!
//! [data]                 # a file (CSV, .npy, IDX; gzipped or not) or [data.synthetic]
//! path = "../data/x.csv" # relative to this file
//!
//! [gmm]                  # the model's own table
//! n_components = 3
//!
//! [run]
//! checkpoint_every = 1   # iterations (gmm) or epochs (vae) between checkpoints
//! keep_epochs = [1, 5]   # vae and text: the model after these epochs, as model_epoch<N>.bpk
//! plot = true            # pictures and report.html at the end of training (emvae plot)
//! ```
//! Unknown keys are errors; every error names the file, line and key.

use std::path::{Path, PathBuf};

use emvae_core::config::{ConfigText, InvalidParam};
use emvae_core::data::DataConfig;
use emvae_core::tensor::Precision;
use emvae_em::discrete::{BernoulliMixtureParams, MultinomialMixtureParams};
use emvae_em::gmm::GmmParams;
use emvae_em::hmm::{Emission, HmmParams};
use emvae_em::linear::{LinearGaussianParams, Noise};
use emvae_text::TextVaeConfig;
use emvae_vae::VaeConfig;
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::{CliError, CliResult};

/// Which model a config trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Gaussian mixture, exact EM.
    Gmm,
    /// Variational autoencoder, amortized variational EM.
    Vae,
    /// A sentence VAE (or, with `latent = 0`, a recurrent language model) on a text corpus.
    Text,
    /// Probabilistic PCA (isotropic noise), exact EM.
    Ppca,
    /// Factor analysis (diagonal noise), exact EM.
    Fa,
    /// Mixture of multivariate Bernoullis (binary rows), exact EM.
    #[serde(rename = "bernoulli_mixture")]
    BernoulliMixture,
    /// Mixture of multinomials (bag-of-words documents, the mixture of unigrams), exact EM.
    #[serde(rename = "multinomial_mixture")]
    MultinomialMixture,
    /// Hidden Markov model (Gaussian or categorical emissions), Baum-Welch.
    Hmm,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Gmm => "gmm",
            ModelKind::Vae => "vae",
            ModelKind::Text => "text",
            ModelKind::Ppca => "ppca",
            ModelKind::Fa => "fa",
            ModelKind::BernoulliMixture => "bernoulli_mixture",
            ModelKind::MultinomialMixture => "multinomial_mixture",
            ModelKind::Hmm => "hmm",
        }
    }

    /// Whether the model is fitted by exact EM (f64 by default; no amortized training).
    pub fn is_exact(self) -> bool {
        !matches!(self, ModelKind::Vae | ModelKind::Text)
    }
}

/// The `[sequences]` table of an HMM: how the rows of `[data]` are cut into sequences.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequencesConfig {
    /// A file of sequence lengths, one positive integer per line, summing to the rows (relative to the
    /// config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lengths_path: Option<PathBuf>,
    /// Or: sequences of this many rows (the last may be shorter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<usize>,
    /// Categorical emissions from a column of symbols: the alphabet size (default: the largest + 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_symbols: Option<usize>,
}

/// The `[corpus]` table: `data.path` (and `data.test_path`) are text corpora, one sentence per line, whose
/// words become symbols of a vocabulary built from the training split (the text models' vocabulary code);
/// every sentence ends with `<eos>`, as in the Penn Treebank protocol.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusConfig {
    #[serde(default)]
    pub vocab: emvae_text::config::VocabConfig,
    /// Longest sentence in words (without `<eos>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[serde(default)]
    pub overlong: emvae_text::corpus::Overlong,
    /// The generated corpus (the text models' grammar) instead of `data.path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<emvae_text::config::GeneratedCorpus>,
}

fn default_one() -> usize {
    1
}

/// The `[run]` table: how the run is driven, not what is learned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// Iterations (gmm) or epochs (vae) between checkpoints.
    #[serde(default = "default_one")]
    pub checkpoint_every: usize,
    /// Amortized models (vae, text): the model after each of these epochs is kept as
    /// `model_epoch<N>.bpk`, so that a long run can be scored at several budgets (`emvae eval --epoch N`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_epochs: Vec<u64>,
    /// Pictures and report.html at the end of training (`emvae plot`).
    #[serde(default = "default_true")]
    pub plot: bool,
}

fn default_true() -> bool {
    true
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            checkpoint_every: 1,
            keep_epochs: Vec::new(),
            plot: true,
        }
    }
}

/// A whole config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub model: ModelKind,
    #[serde(default)]
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<Precision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
    /// The data; for text, `path` (a corpus), `test_path` or `test_rows`.
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gmm: Option<GmmParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vae: Option<VaeConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextVaeConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppca: Option<LinearGaussianParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fa: Option<LinearGaussianParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bernoulli_mixture: Option<BernoulliMixtureParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multinomial_mixture: Option<MultinomialMixtureParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmm: Option<HmmParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequences: Option<SequencesConfig>,
    /// Read `[data]` as text corpora (multinomial mixtures; categorical HMMs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus: Option<CorpusConfig>,
    #[serde(default)]
    pub run: RunSettings,
}

/// Command-line values that take precedence over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub seed: Option<u64>,
    pub data: Option<PathBuf>,
    pub backend: Option<Backend>,
}

/// A config read, overridden, checked, with its data paths made absolute.
pub struct LoadedConfig {
    pub text: ConfigText,
    pub config: RunConfig,
}

impl LoadedConfig {
    /// Reads, parses and checks `path`, applying `overrides`.
    pub fn load(path: &Path, overrides: &Overrides) -> CliResult<Self> {
        let text = ConfigText::read(path)?;
        let mut config: RunConfig = text.parse()?;
        // Data paths are relative to the config file; keep them absolute from here on so that the run's
        // resolved config.toml works from any directory.
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
        config.data = config.data.resolved(&base);
        if let Some(lengths) = config
            .sequences
            .as_mut()
            .and_then(|s| s.lengths_path.as_mut())
        {
            *lengths = base.join(&*lengths);
        }
        if let Some(seed) = overrides.seed {
            config.seed = seed;
        }
        if let Some(data) = &overrides.data {
            let cwd = std::env::current_dir().unwrap_or_default();
            config.data.path = Some(cwd.join(data));
            config.data.synthetic = None;
            if let Some(corpus) = &mut config.corpus {
                corpus.generated = None;
            }
        }
        if let Some(backend) = overrides.backend {
            config.backend = Some(backend);
        }
        config.precision = Some(config.precision.unwrap_or(if config.model.is_exact() {
            Precision::F64
        } else {
            Precision::F32
        }));
        config.backend = Some(config.backend.unwrap_or_default());
        let mut loaded = Self { text, config };
        loaded.check()?;
        // The model names the noise (checked against a written `noise` key): the resolved config says it.
        if let Some(fa) = &mut loaded.config.fa {
            fa.noise = Noise::Diagonal;
        }
        Ok(loaded)
    }

    /// Locates a semantic error in the file.
    pub fn invalid(&self, e: InvalidParam) -> CliError {
        self.text.invalid(e).into()
    }

    fn check(&self) -> CliResult<()> {
        let c = &self.config;
        if c.model != ModelKind::Text && c.corpus.is_none() {
            c.data.check().map_err(|e| self.invalid(e.within("data")))?;
        }
        if c.sequences.is_some() && c.model != ModelKind::Hmm {
            return Err(self.invalid(InvalidParam::new(
                "sequences",
                "a [sequences] table applies to model = \"hmm\"",
            )));
        }
        if c.run.checkpoint_every == 0 {
            return Err(self.invalid(InvalidParam::new(
                "run.checkpoint_every",
                "must be at least 1, got 0",
            )));
        }
        if c.run.keep_epochs.contains(&0) {
            return Err(self.invalid(InvalidParam::new(
                "run.keep_epochs",
                "epochs count from 1; 0 is not an epoch",
            )));
        }
        if !c.run.keep_epochs.is_empty() && c.model.is_exact() {
            return Err(self.invalid(InvalidParam::new(
                "run.keep_epochs",
                format!(
                    "applies to the amortized models (vae, text), not model = \"{}\"",
                    c.model.name()
                ),
            )));
        }
        let present = [
            ("gmm", c.gmm.is_some()),
            ("vae", c.vae.is_some()),
            ("text", c.text.is_some()),
            ("ppca", c.ppca.is_some()),
            ("fa", c.fa.is_some()),
            ("bernoulli_mixture", c.bernoulli_mixture.is_some()),
            ("multinomial_mixture", c.multinomial_mixture.is_some()),
            ("hmm", c.hmm.is_some()),
        ];
        let needed = c.model.name();
        let other = present
            .iter()
            .find(|(name, there)| *there && *name != needed)
            .map(|(name, _)| *name);
        if let Some(other) = other {
            return Err(self.invalid(InvalidParam::new(
                other,
                format!("a [{other}] table in a config for model = \"{needed}\""),
            )));
        }
        match c.model {
            ModelKind::Gmm => {
                let gmm = c.gmm.as_ref().ok_or_else(|| {
                    self.invalid(InvalidParam::new(
                        "model",
                        "model = \"gmm\" needs a [gmm] table (at least n_components)",
                    ))
                })?;
                gmm.check().map_err(|e| self.invalid(e.within("gmm")))?;
                self.refuse_corpus()?;
                let d = &c.data;
                let vae_only = if d.binarize.is_some() {
                    Some("binarize")
                } else if d.test_rows.is_some() {
                    Some("test_rows")
                } else if d.test_path.is_some() {
                    Some("test_path")
                } else {
                    None
                };
                if let Some(key) = vae_only {
                    return Err(self.invalid(InvalidParam::new(
                        format!("data.{key}"),
                        "applies to model = \"vae\" (a mixture is fitted to all rows; evaluate held-out data \
                         with emvae eval --data)",
                    )));
                }
            }
            ModelKind::Text => self.check_text()?,
            ModelKind::Ppca | ModelKind::Fa => self.check_linear()?,
            ModelKind::Hmm => self.check_hmm()?,
            ModelKind::BernoulliMixture | ModelKind::MultinomialMixture => self.check_discrete()?,
            ModelKind::Vae => {
                let vae = c.vae.as_ref().ok_or_else(|| {
                    self.invalid(InvalidParam::new(
                        "model",
                        "model = \"vae\" needs a [vae] table",
                    ))
                })?;
                vae.check().map_err(|e| self.invalid(e.within("vae")))?;
                if c.precision == Some(Precision::F64) {
                    return Err(self.invalid(InvalidParam::new(
                        "precision",
                        "VAEs train in f32 (precision = \"f32\"); f64 is for exact EM",
                    )));
                }
            }
        }
        Ok(())
    }

    /// The model's table, which must be there.
    fn table<'a, T>(&self, t: &'a Option<T>, example: &str) -> CliResult<&'a T> {
        let name = self.config.model.name();
        t.as_ref().ok_or_else(|| {
            self.invalid(InvalidParam::new(
                "model",
                format!("model = \"{name}\" needs a [{name}] table ({example})"),
            ))
        })
    }

    /// Refuses `[data]` keys that do not apply to an exact model fitted to all rows of a file.
    fn refuse_data_keys(&self, keys: &[&str]) -> CliResult<()> {
        let d = &self.config.data;
        let set = |key: &str| match key {
            "binarize" => d.binarize.is_some(),
            "test_rows" => d.test_rows.is_some(),
            "test_path" => d.test_path.is_some(),
            _ => false,
        };
        if let Some(key) = keys.iter().find(|k| set(k)) {
            return Err(self.invalid(InvalidParam::new(
                format!("data.{key}"),
                format!(
                    "does not apply to model = \"{}\" (it is fitted to all rows; evaluate held-out data with \
                     emvae eval --data)",
                    self.config.model.name()
                ),
            )));
        }
        Ok(())
    }

    fn refuse_corpus(&self) -> CliResult<()> {
        if self.config.corpus.is_some() {
            return Err(self.invalid(InvalidParam::new(
                "corpus",
                format!(
                    "a [corpus] table applies to multinomial mixtures and categorical HMMs, not model = \"{}\"",
                    self.config.model.name()
                ),
            )));
        }
        Ok(())
    }

    /// A `[corpus]` needs a corpus: `data.path` or `[corpus.generated]`, not both, and no tabular keys.
    fn check_corpus(&self, corpus: &CorpusConfig) -> CliResult<()> {
        let d = &self.config.data;
        match (&d.path, &corpus.generated) {
            (None, None) => Err(self.invalid(InvalidParam::new(
                "data.path",
                "[corpus] needs a corpus: [data] path = \"corpus.txt\" (one sentence per line), or \
                 [corpus.generated]",
            ))),
            (Some(_), Some(_)) => Err(self.invalid(InvalidParam::new(
                "corpus.generated",
                "give either [data] path or [corpus.generated], not both",
            ))),
            _ if d.synthetic.is_some() || d.columns.is_some() || d.binarize.is_some() => Err(self
                .invalid(InvalidParam::new(
                    "corpus",
                    "[corpus] reads text: [data] synthetic, columns and binarize do not apply",
                ))),
            _ => Ok(()),
        }
    }

    fn check_hmm(&self) -> CliResult<()> {
        let c = &self.config;
        let p = self.table(&c.hmm, "at least n_states")?;
        p.check().map_err(|e| self.invalid(e.within("hmm")))?;
        if let Some(s) = &c.sequences {
            if s.lengths_path.is_some() && s.length.is_some() {
                return Err(self.invalid(InvalidParam::new(
                    "sequences.length",
                    "give either lengths_path or length, not both",
                )));
            }
            if s.length == Some(0) {
                return Err(self.invalid(InvalidParam::new(
                    "sequences.length",
                    "must be at least 1, got 0",
                )));
            }
            if s.n_symbols.is_some() && p.emission != Emission::Categorical {
                return Err(self.invalid(InvalidParam::new(
                    "sequences.n_symbols",
                    "applies to emission = \"categorical\"",
                )));
            }
        }
        match &c.corpus {
            Some(corpus) => {
                if p.emission != Emission::Categorical {
                    return Err(self.invalid(InvalidParam::new(
                        "hmm.emission",
                        "a [corpus] is read as words: set emission = \"categorical\"",
                    )));
                }
                if c.sequences.is_some() {
                    return Err(self.invalid(InvalidParam::new(
                        "sequences",
                        "a [corpus] is cut into sentences (one per line): remove [sequences]",
                    )));
                }
                self.check_corpus(corpus)?;
            }
            None => self.refuse_data_keys(&["binarize", "test_rows", "test_path"])?,
        }
        if c.precision == Some(Precision::F32) {
            return Err(self.invalid(InvalidParam::new(
                "precision",
                "HMMs are fitted in f64 on the host",
            )));
        }
        Ok(())
    }

    fn check_linear(&self) -> CliResult<()> {
        let c = &self.config;
        let (key, table, noise) = match c.model {
            ModelKind::Fa => ("fa", &c.fa, Noise::Diagonal),
            _ => ("ppca", &c.ppca, Noise::Isotropic),
        };
        let params = self.table(table, "at least n_components, the latent dimensions")?;
        // The model names the noise; a `noise` key may only agree with it.
        let written = self
            .text
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| t.get(key)?.as_table()?.get("noise").cloned())
            .is_some();
        if written && params.noise != noise {
            return Err(self.invalid(InvalidParam::new(
                format!("{key}.noise"),
                format!(
                    "model = \"{key}\" has {} noise; use model = \"{}\" for {} noise",
                    noise.name(),
                    if key == "fa" { "ppca" } else { "fa" },
                    params.noise.name()
                ),
            )));
        }
        params.check().map_err(|e| self.invalid(e.within(key)))?;
        self.refuse_data_keys(&["binarize", "test_rows", "test_path"])?;
        self.refuse_corpus()?;
        if c.precision == Some(Precision::F32) {
            return Err(self.invalid(InvalidParam::new(
                "precision",
                "pPCA and factor analysis are fitted in f64 on the host",
            )));
        }
        Ok(())
    }

    fn check_discrete(&self) -> CliResult<()> {
        let c = &self.config;
        match c.model {
            ModelKind::BernoulliMixture => {
                let p = self.table(&c.bernoulli_mixture, "at least n_components")?;
                p.check()
                    .map_err(|e| self.invalid(e.within("bernoulli_mixture")))?;
                self.refuse_data_keys(&["test_rows", "test_path"])?;
                if c.data.binarize.as_ref().is_some_and(|b| b.stochastic) {
                    return Err(self.invalid(InvalidParam::new(
                        "data.binarize.stochastic",
                        "a mixture is fitted to fixed data: binarise with a threshold",
                    )));
                }
                self.refuse_corpus()?;
            }
            _ => {
                let p = self.table(&c.multinomial_mixture, "at least n_components")?;
                p.check()
                    .map_err(|e| self.invalid(e.within("multinomial_mixture")))?;
                match &c.corpus {
                    None => self.refuse_data_keys(&["binarize", "test_rows", "test_path"])?,
                    Some(corpus) => self.check_corpus(corpus)?,
                }
            }
        }
        if c.precision == Some(Precision::F32) {
            return Err(self.invalid(InvalidParam::new(
                "precision",
                "discrete mixtures are fitted in f64 on the host",
            )));
        }
        Ok(())
    }

    pub fn precision(&self) -> Precision {
        self.config.precision.unwrap_or_default()
    }

    pub fn backend(&self) -> Backend {
        self.config.backend.unwrap_or_default()
    }

    fn check_text(&self) -> CliResult<()> {
        let c = &self.config;
        let text = c.text.as_ref().ok_or_else(|| {
            self.invalid(InvalidParam::new(
                "model",
                "model = \"text\" needs a [text] table",
            ))
        })?;
        text.check().map_err(|e| self.invalid(e.within("text")))?;
        let d = &c.data;
        match (&d.path, &text.generated) {
            (None, None) => {
                return Err(self.invalid(InvalidParam::new(
                    "data.path",
                    "a text model needs a corpus: [data] path = \"corpus.txt\" (one sentence per line), or \
                     [text.generated] for the generated corpus",
                )));
            }
            (Some(_), Some(_)) => {
                return Err(self.invalid(InvalidParam::new(
                    "text.generated",
                    "give either [data] path or [text.generated], not both",
                )));
            }
            _ => {}
        }
        let stray = [
            ("synthetic", d.synthetic.is_some()),
            ("binarize", d.binarize.is_some()),
            ("scale", d.scale.is_some()),
            ("columns", d.columns.is_some()),
            ("label_column", d.label_column.is_some()),
            ("labels_path", d.labels_path.is_some()),
        ]
        .into_iter()
        .find(|(_, set)| *set);
        if let Some((key, _)) = stray {
            return Err(self.invalid(InvalidParam::new(
                format!("data.{key}"),
                "applies to tabular data; a text corpus is one sentence per line (optionally label<TAB>sentence)",
            )));
        }
        if c.precision == Some(Precision::F64) {
            return Err(self.invalid(InvalidParam::new(
                "precision",
                "text models train in f32 (precision = \"f32\")",
            )));
        }
        Ok(())
    }

    /// The text-model settings.
    pub fn text(&self) -> &TextVaeConfig {
        self.config
            .text
            .as_ref()
            .expect("checked: model = text has [text]")
    }

    /// The VAE settings.
    pub fn vae(&self) -> &VaeConfig {
        self.config
            .vae
            .as_ref()
            .expect("checked: model = vae has [vae]")
    }

    /// pPCA or factor-analysis hyper-parameters with the run's seed and the model's noise.
    pub fn linear_params(&self) -> LinearGaussianParams {
        let (table, noise) = match self.config.model {
            ModelKind::Fa => (&self.config.fa, Noise::Diagonal),
            _ => (&self.config.ppca, Noise::Isotropic),
        };
        let mut p = table.clone().expect("checked: the model's table is there");
        p.noise = noise;
        p.seed = self.config.seed;
        p
    }

    /// The GMM hyper-parameters with the run's seed.
    pub fn gmm_params(&self) -> GmmParams {
        let mut p = self
            .config
            .gmm
            .clone()
            .expect("checked: model = gmm has [gmm]");
        p.seed = self.config.seed;
        p
    }

    /// The resolved config as TOML: every default filled in, paths absolute.
    pub fn resolved_toml(&self) -> CliResult<String> {
        let body = toml::to_string_pretty(&self.config)
            .map_err(|e| CliError::runtime(format!("cannot serialise the resolved config: {e}")))?;
        Ok(format!(
            "# Resolved by emvae from {} (defaults filled in, command-line overrides applied).\n{body}",
            self.text.path().display()
        ))
    }
}

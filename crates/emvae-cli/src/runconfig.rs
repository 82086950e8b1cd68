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
//! ```
//! Unknown keys are errors; every error names the file, line and key.

use std::path::{Path, PathBuf};

use emvae_core::config::{ConfigText, InvalidParam};
use emvae_core::data::DataConfig;
use emvae_core::tensor::Precision;
use emvae_em::gmm::GmmParams;
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
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Gmm => "gmm",
            ModelKind::Vae => "vae",
            ModelKind::Text => "text",
        }
    }
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
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            checkpoint_every: 1,
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
        if let Some(seed) = overrides.seed {
            config.seed = seed;
        }
        if let Some(data) = &overrides.data {
            let cwd = std::env::current_dir().unwrap_or_default();
            config.data.path = Some(cwd.join(data));
            config.data.synthetic = None;
        }
        if let Some(backend) = overrides.backend {
            config.backend = Some(backend);
        }
        config.precision = Some(config.precision.unwrap_or(match config.model {
            ModelKind::Gmm => Precision::F64,
            ModelKind::Vae | ModelKind::Text => Precision::F32,
        }));
        config.backend = Some(config.backend.unwrap_or_default());
        let loaded = Self { text, config };
        loaded.check()?;
        Ok(loaded)
    }

    /// Locates a semantic error in the file.
    pub fn invalid(&self, e: InvalidParam) -> CliError {
        self.text.invalid(e).into()
    }

    fn check(&self) -> CliResult<()> {
        let c = &self.config;
        if c.model != ModelKind::Text {
            c.data.check().map_err(|e| self.invalid(e.within("data")))?;
        }
        if c.run.checkpoint_every == 0 {
            return Err(self.invalid(InvalidParam::new(
                "run.checkpoint_every",
                "must be at least 1, got 0",
            )));
        }
        let present = [
            ("gmm", c.gmm.is_some()),
            ("vae", c.vae.is_some()),
            ("text", c.text.is_some()),
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

//! The run config target: the repository's configs edited line by line as TOML.

use std::path::{Path, PathBuf};

use super::mutate::{Mutator, Rng, Seed};
use super::{Case, Target, Verdict, write_scratch};
use crate::error::CliResult;
use crate::runconfig::{LoadedConfig, Overrides};

const CONFIGS: [&str; 12] = [
    include_str!("../../../../configs/gmm-diag.toml"),
    include_str!("../../../../configs/gmm-full.toml"),
    include_str!("../../../../configs/gmm-semisupervised.toml"),
    include_str!("../../../../configs/gmm-spherical.toml"),
    include_str!("../../../../configs/gmm-tied.toml"),
    include_str!("../../../../configs/text-vae-mr.toml"),
    include_str!("../../../../configs/text-vae-synthetic.toml"),
    include_str!("../../../../configs/vae-digits-plateau.toml"),
    include_str!("../../../../configs/vae-digits.toml"),
    include_str!("../../../../configs/vae-linear-ppca.toml"),
    include_str!("../../../../configs/vae-mnist.toml"),
    include_str!("../../../../configs/vae-synthetic.toml"),
];

/// Values written into TOML lines, beside those of the configs.
#[rustfmt::skip]
const TOML_VALUES: &[&str] = &[
    "0", "1", "-1", "2", "-0", "0.0", "-0.0", "1.5", "1e-320", "1e308", "1e999", "nan", "+nan",
    "-nan", "inf", "-inf", "18446744073709551615", "9223372036854775807", "-9223372036854775808",
    "9223372036854775808", "4294967296", "65536", "true", "false", "\"\"", "\"x\"", "\"auto\"",
    "\"full\"", "\"../x.csv\"", "\"/\"", "\"\\u0000\"", "'''x'''", "[]", "[[]]", "[0]", "[1, 2]",
    "[0, 0]", "[-1]", "[1e308, 1e308]", "[[1.0, 0.0], [0.0, 1.0]]", "[[1.0, 2.0], [2.0, 1.0]]",
    "[[[1.0]]]", "[[[1.0, 0.0], [0.0, 1.0]]]", "[nan]", "[inf, 1]", "[18446744073709551615, 2]",
    "[4, 0, 4]", "{}", "{ threshold = 0.5 }", "{ stochastic = true }", "{ a = 1 }", "1979-05-27",
];

#[rustfmt::skip]
const TOML_HEADERS: &[&str] = &[
    "[gmm]", "[vae]", "[text]", "[data]", "[run]", "[data.synthetic]", "[data.binarize]",
    "[vae.train]", "[vae.encoder]", "[vae.decoder]", "[vae.prior]", "[text.generated]",
    "[text.train]", "[[gmm]]", "[[data]]", "[x]", "[]", "[a.b.c]",
];

#[rustfmt::skip]
const TOML_KEYS: &[&str] = &[
    "model", "seed", "precision", "backend", "bogus", "n_components", "path", "test_rows",
    "test_path", "labels_path", "checkpoint_every", "sizes", "means_init", "covariances_init",
    "precisions_init", "weights_init", "label_column", "columns", "delimiter", "header", "format",
    "scale", "binarize", "covariance_type", "batch_size", "shards", "latent", "hidden", "epochs",
    "max_steps",
];

/// Lines, keys, values and table headers of the configs, to recombine.
struct TomlPool {
    lines: Vec<String>,
    keys: Vec<String>,
    values: Vec<String>,
    headers: Vec<String>,
}

impl TomlPool {
    fn new(texts: &[&str]) -> Self {
        let mut pool = Self {
            lines: Vec::new(),
            keys: TOML_KEYS.iter().map(|s| s.to_string()).collect(),
            values: TOML_VALUES.iter().map(|s| s.to_string()).collect(),
            headers: TOML_HEADERS.iter().map(|s| s.to_string()).collect(),
        };
        for text in texts {
            for line in text.lines() {
                let trimmed = line.trim();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                pool.lines.push(line.to_string());
                if trimmed.starts_with('[') {
                    pool.headers.push(trimmed.to_string());
                } else if let Some((k, v)) = trimmed.split_once('=') {
                    pool.keys.push(k.trim().to_string());
                    let v = v.split(" #").next().unwrap_or(v).trim();
                    pool.values.push(v.to_string());
                }
            }
        }
        pool
    }
}

/// One edit of a TOML text that knows its lines: a value or key replaced, a line inserted, deleted,
/// duplicated or moved, a table header inserted.
fn toml_edit(rng: &mut Rng, text: &[u8], pool: &TomlPool) -> Vec<u8> {
    let text = String::from_utf8_lossy(text);
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let assignments: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains('=') && !lines[i].trim_start().starts_with('#'))
        .collect();
    let at = rng.below(lines.len() + 1);
    match rng.below(9) {
        0..=2 => {
            let value = rng.pick(&pool.values).clone();
            if assignments.is_empty() {
                lines.insert(at, format!("{} = {value}", rng.pick(&pool.keys)));
            } else {
                let i = *rng.pick(&assignments);
                let key = lines[i].split('=').next().unwrap_or("").trim().to_string();
                lines[i] = format!("{key} = {value}");
            }
        }
        3 => {
            if !assignments.is_empty() {
                let i = *rng.pick(&assignments);
                let value = lines[i].split_once('=').map_or("", |(_, v)| v).to_string();
                lines[i] = format!("{} ={value}", rng.pick(&pool.keys));
            }
        }
        4 => {
            let line = match rng.below(2) {
                0 => rng.pick(&pool.lines).clone(),
                _ => format!("{} = {}", rng.pick(&pool.keys), rng.pick(&pool.values)),
            };
            lines.insert(at, line);
        }
        5 => {
            if !lines.is_empty() {
                lines.remove(rng.below(lines.len()));
            }
        }
        6 => {
            if !lines.is_empty() {
                let line = lines[rng.below(lines.len())].clone();
                lines.insert(at, line);
            }
        }
        7 => lines.insert(at, rng.pick(&pool.headers).clone()),
        _ => {
            if !lines.is_empty() {
                let line = lines.remove(rng.below(lines.len()));
                let to = rng.below(lines.len() + 1);
                lines.insert(to, line);
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out.into_bytes()
}

/// `LoadedConfig::load` (read, parse, check) on a config file, then the resolved TOML a run writes.
pub(super) struct ConfigTarget {
    path: PathBuf,
    mutator: Mutator,
    pool: TomlPool,
}

impl ConfigTarget {
    pub(super) fn new(scratch: &Path) -> Self {
        let mut seeds: Vec<Seed> = CONFIGS.iter().map(|t| Seed::text(*t)).collect();
        // Minimal configs of each model, and one with every [data] key.
        seeds.push(Seed::text(
            "model = \"gmm\"\n[data]\npath = \"x.csv\"\n[gmm]\nn_components = 2\n",
        ));
        seeds.push(Seed::text(
            "model = \"gmm\"\n[data]\npath = \"x.npy\"\nformat = \"npy\"\ndelimiter = \";\"\nheader = true\n\
             columns = [0, \"b\"]\nlabels_path = \"y.npy\"\nscale = 255.0\n[gmm]\nn_components = 2\n\
             covariance_type = \"tied\"\nweights_init = [0.5, 0.5]\nmeans_init = [[0.0], [1.0]]\n\
             covariances_init = [[1.0]]\n[run]\ncheckpoint_every = 2\n",
        ));
        seeds.push(Seed::text(
            "model = \"vae\"\n[data]\npath = \"x.csv\"\ntest_rows = 10\nbinarize = { threshold = 0.5 }\n\
             [vae.encoder]\nsizes = [4, 8, 2]\n[vae.decoder]\nsizes = [2, 8, 4]\n[vae.likelihood]\n\
             kind = \"bernoulli\"\n",
        ));
        seeds.push(Seed::text(
            "model = \"text\"\n[data]\npath = \"corpus.txt\"\n[text]\nlatent = 4\n",
        ));
        let pool = TomlPool::new(
            &seeds
                .iter()
                .map(|s| std::str::from_utf8(&s.bytes).unwrap_or(""))
                .collect::<Vec<_>>(),
        );
        Self {
            path: scratch.join("config.toml"),
            mutator: Mutator::new(seeds, false),
            pool,
        }
    }
}

impl Target for ConfigTarget {
    fn name(&self) -> &'static str {
        "config"
    }

    fn generate(&self, rng: &mut Rng) -> Case {
        let i = rng.below(self.mutator.seeds.len());
        let bytes = if rng.chance(65) {
            let mut text = self.mutator.seeds[i].bytes.clone();
            for _ in 0..1 + rng.below(4) {
                text = toml_edit(rng, &text, &self.pool);
            }
            if rng.chance(25) {
                self.mutator.mutate(rng, &mut text, &[]);
            }
            text
        } else {
            self.mutator.mutated(rng, i)
        };
        Case { bytes, variant: 0 }
    }

    fn run(&mut self, case: &Case) -> CliResult<Verdict> {
        write_scratch(&self.path, &case.bytes)?;
        Ok(LoadedConfig::load(&self.path, &Overrides::default())
            .and_then(|loaded| loaded.resolved_toml())
            .map(|_| ())
            .map_err(|e| e.to_string()))
    }

    fn describe(&self, _: usize) -> String {
        "LoadedConfig::load of a config file".into()
    }
}

//! Row-wise outputs (predictions, samples) as JSON lines or CSV, to standard output or a file written
//! atomically.

use std::io::Write;
use std::path::Path;

use crate::args::OutputFormat;
use crate::error::{CliError, CliResult};

/// Collects rows, then writes them all.
pub struct RowWriter {
    format: OutputFormat,
    text: String,
}

impl RowWriter {
    /// `header` names the CSV columns (ignored for JSON lines).
    pub fn new(format: OutputFormat, header: &[String]) -> Self {
        let mut text = String::new();
        if format == OutputFormat::Csv {
            text.push_str(&header.join(","));
            text.push('\n');
        }
        Self { format, text }
    }

    /// Adds a row: `json` for JSON lines, `cells` for CSV.
    pub fn row(&mut self, json: serde_json::Value, cells: impl IntoIterator<Item = String>) {
        match self.format {
            OutputFormat::Jsonl => {
                self.text.push_str(&json.to_string());
            }
            OutputFormat::Csv => {
                self.text
                    .push_str(&cells.into_iter().collect::<Vec<_>>().join(","));
            }
        }
        self.text.push('\n');
    }

    pub fn finish(self, path: Option<&Path>) -> CliResult<()> {
        match path {
            Some(p) => write_output(p, self.text.as_bytes()),
            None => {
                let mut out = std::io::stdout().lock();
                match out
                    .write_all(self.text.as_bytes())
                    .and_then(|_| out.flush())
                {
                    Ok(()) => Ok(()),
                    // A closed pipe (`| head`) is not an error of ours.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                    Err(e) => Err(CliError::runtime(format!(
                        "cannot write to standard output: {e}"
                    ))),
                }
            }
        }
    }
}

/// Files of a run directory that an output must never replace.
fn is_run_file(name: &str) -> bool {
    use emvae_core::run::RunDir;
    [
        RunDir::CONFIG,
        RunDir::METRICS,
        RunDir::SUMMARY,
        RunDir::LOG,
        "vocab.json",
    ]
    .contains(&name)
        || name.starts_with("checkpoint")
        || name.starts_with("model")
}

/// Checks that `path` can take an output file: its folder exists, it is not a directory, and it is
/// not one of a run directory's own files (predicting into `RUN/model.json` would destroy the run).
pub fn check_output(path: &Path) -> CliResult<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(CliError::user(format!(
            "--output {}: the folder {} does not exist: create it first, or choose another path",
            path.display(),
            folder.display()
        )));
    }
    if path.is_dir() {
        return Err(CliError::user(format!(
            "--output {} is a directory: name a file",
            path.display()
        )));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if folder.join(emvae_core::run::RunDir::CONFIG).is_file() && is_run_file(&name) {
        return Err(CliError::user(format!(
            "--output {} would replace the run's own {name} in {}: choose another file name",
            path.display(),
            folder.display()
        )));
    }
    Ok(())
}

/// Writes an output file atomically after [`check_output`].
pub fn write_output(path: &Path, bytes: &[u8]) -> CliResult<()> {
    check_output(path)?;
    emvae_core::run::write_atomic(path, bytes).map_err(CliError::from)
}

/// A float in full round-trip precision.
pub fn num(v: f64) -> String {
    format!("{v:?}")
}

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
            Some(p) => {
                emvae_core::run::write_atomic(p, self.text.as_bytes()).map_err(CliError::from)
            }
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

/// A float in full round-trip precision.
pub fn num(v: f64) -> String {
    format!("{v:?}")
}

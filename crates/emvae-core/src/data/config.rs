//! The `[data]` table of a config: where the data come from and how to read them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::csv_reader::{ColumnRef, CsvOptions, Delimiter, HeaderMode};
use super::synthetic::SyntheticMixture;
use super::{DataError, Dataset, Format, load, load_labels};
use crate::config::InvalidParam;

/// Where a data set comes from and how to read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Data file: CSV (or other delimited text), NumPy `.npy` or IDX, optionally gzipped. A relative
    /// path is relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub delimiter: Delimiter,
    #[serde(default)]
    pub header: HeaderMode,
    /// Feature columns (names or 0-based indices); all but the label column when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<ColumnRef>>,
    /// Column of known components / classes (partly labelled data: empty, `NA` or `-1` = unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_column: Option<ColumnRef>,
    /// A separate file of labels, one per row (for `.npy` and IDX data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_path: Option<PathBuf>,
    /// Generate the data instead of reading a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<SyntheticMixture>,
}

impl DataConfig {
    /// Validates the table; keys in errors are field names (place them under `data`).
    pub fn check(&self) -> Result<(), InvalidParam> {
        match (&self.path, &self.synthetic) {
            (None, None) => Err(InvalidParam::new(
                "path",
                "no data: give data.path (a CSV, .npy or IDX file) or a [data.synthetic] table",
            )),
            (Some(_), Some(_)) => Err(InvalidParam::new(
                "synthetic",
                "give data.path or [data.synthetic], not both",
            )),
            (None, Some(s)) => s.check().map_err(|e| e.within("synthetic")),
            (Some(_), None) => {
                if self.label_column.is_some() && self.labels_path.is_some() {
                    return Err(InvalidParam::new(
                        "labels_path",
                        "give label_column or labels_path, not both",
                    ));
                }
                Ok(())
            }
        }
    }

    /// The same configuration with relative paths made absolute against `base` (the config's folder).
    pub fn resolved(mut self, base: &Path) -> Self {
        let fix = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        self.path = self.path.map(fix);
        self.labels_path = self.labels_path.map(fix);
        self
    }

    pub fn csv_options(&self) -> CsvOptions {
        CsvOptions {
            delimiter: self.delimiter,
            header: self.header,
            columns: self.columns.clone(),
            label_column: self.label_column.clone(),
        }
    }

    /// Reads (or generates) the data set.
    pub fn load(&self) -> Result<Dataset, DataError> {
        if let Some(s) = &self.synthetic {
            return Ok(s.generate().data);
        }
        let path = self
            .path
            .as_deref()
            .ok_or_else(|| DataError::new(Path::new("<config>"), "no data path"))?;
        let mut data = load(path, self.format, &self.csv_options())?;
        if let Some(lp) = &self.labels_path {
            let labels = load_labels(lp, Format::Auto)?;
            if labels.len() != data.n_rows() {
                return Err(DataError::new(
                    lp,
                    format!(
                        "{} labels for {} rows of {}",
                        labels.len(),
                        data.n_rows(),
                        path.display()
                    ),
                ));
            }
            data.labels = Some(labels);
        }
        Ok(data)
    }
}

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
    /// Divide every value by this after reading (255 for bytes, 16 for the UCI digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// Binarise the (scaled) values: `{ threshold = 0.5 }` gives `x > threshold`; `{ stochastic = true }`
    /// draws each value as 1 with probability equal to it, anew every epoch (VAE data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binarize: Option<Binarize>,
    /// Held-out data, read with the same options as `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_path: Option<PathBuf>,
    /// Hold out the last `test_rows` rows of `path` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_rows: Option<usize>,
    /// Generate the data instead of reading a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<SyntheticMixture>,
}

/// Binarisation of values in [0, 1] (after `scale`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binarize {
    /// Fixed: 1 where the value exceeds this threshold, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Stochastic: 1 with probability equal to the value, redrawn every epoch (held-out data once).
    #[serde(default)]
    pub stochastic: bool,
    /// Seed of the stochastic draws (default: the run's seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
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
            (None, Some(s)) => {
                if self.test_rows == Some(0) {
                    return Err(InvalidParam::new("test_rows", "must be at least 1"));
                }
                s.check().map_err(|e| e.within("synthetic"))
            }
            (Some(_), None) => {
                if let Some(scale) = self.scale
                    && !(scale.is_finite() && scale > 0.0)
                {
                    return Err(InvalidParam::new(
                        "scale",
                        format!("must be a number > 0, got {scale}"),
                    ));
                }
                if let Some(b) = &self.binarize {
                    match (b.threshold, b.stochastic) {
                        (Some(_), true) | (None, false) => {
                            return Err(InvalidParam::new(
                                "binarize",
                                "give either threshold = <number> or stochastic = true",
                            ));
                        }
                        (Some(t), false) if !t.is_finite() => {
                            return Err(InvalidParam::new(
                                "binarize.threshold",
                                "must be a finite number",
                            ));
                        }
                        _ => {}
                    }
                }
                if self.test_path.is_some() && self.test_rows.is_some() {
                    return Err(InvalidParam::new(
                        "test_rows",
                        "give test_path or test_rows, not both",
                    ));
                }
                if self.test_rows == Some(0) {
                    return Err(InvalidParam::new("test_rows", "must be at least 1"));
                }
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
        self.test_path = self.test_path.map(fix);
        self
    }

    pub fn csv_options(&self) -> CsvOptions {
        CsvOptions {
            delimiter: self.delimiter,
            header: self.header,
            columns: self.columns.clone(),
            label_column: self.label_column.clone(),
            optional_label: false,
        }
    }

    /// Reads (or generates) the data set, scaled and (with a threshold) binarised. The held-out split,
    /// if any, is not removed: see [`DataConfig::load_split`].
    pub fn load(&self) -> Result<Dataset, DataError> {
        self.load_labels_if(false)
    }

    /// [`DataConfig::load`] for evaluating a trained model: a file without the label column is read
    /// unlabelled instead of failing.
    pub fn load_optional_labels(&self) -> Result<Dataset, DataError> {
        self.load_labels_if(true)
    }

    fn load_labels_if(&self, optional_label: bool) -> Result<Dataset, DataError> {
        if let Some(s) = &self.synthetic {
            let mut data = s.generate().data;
            self.transform(&mut data);
            return Ok(data);
        }
        let path = self
            .path
            .as_deref()
            .ok_or_else(|| DataError::new(Path::new("<config>"), "no data path"))?;
        let mut data = self.read(path, optional_label)?;
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

    /// Reads one file with these options, scaling and thresholding it.
    fn read(&self, path: &Path, optional_label: bool) -> Result<Dataset, DataError> {
        let csv = CsvOptions {
            optional_label,
            ..self.csv_options()
        };
        let mut data = load(path, self.format, &csv)?;
        self.transform(&mut data);
        Ok(data)
    }

    /// Scales and (with a threshold) binarises read or generated values.
    fn transform(&self, data: &mut Dataset) {
        if let Some(scale) = self.scale {
            data.x.values.iter_mut().for_each(|v| *v /= scale);
        }
        if let Some(Binarize {
            threshold: Some(t), ..
        }) = &self.binarize
        {
            data.x
                .values
                .iter_mut()
                .for_each(|v| *v = if *v > *t { 1.0 } else { 0.0 });
        }
    }

    /// The training data and the held-out data (`test_path`, or the last `test_rows` rows).
    pub fn load_split(&self) -> Result<(Dataset, Option<Dataset>), DataError> {
        let mut data = self.load()?;
        if let Some(p) = &self.test_path {
            let test = self.read(p, false)?;
            if test.n_cols() != data.n_cols() {
                return Err(DataError::new(
                    p,
                    format!(
                        "{} columns, the training data have {}",
                        test.n_cols(),
                        data.n_cols()
                    ),
                ));
            }
            return Ok((data, Some(test)));
        }
        match self.test_rows {
            None => Ok((data, None)),
            Some(t) if t >= data.n_rows() => Err(data.error(format!(
                "data.test_rows = {t} leaves no training rows ({} rows in all)",
                data.n_rows()
            ))),
            Some(t) => {
                let n = data.n_rows();
                let mut test = data.clone();
                test.x = data.x.slice_rows(n - t, n);
                test.labels = data.labels.as_ref().map(|l| l[n - t..].to_vec());
                test.row_lines = data.row_lines.as_ref().map(|l| l[n - t..].to_vec());
                data.x = data.x.slice_rows(0, n - t);
                data.labels = data.labels.map(|mut l| {
                    l.truncate(n - t);
                    l
                });
                data.row_lines = data.row_lines.map(|mut l| {
                    l.truncate(n - t);
                    l
                });
                Ok((data, Some(test)))
            }
        }
    }
}

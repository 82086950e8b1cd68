//! TOML configuration files whose errors say where: file, line, column and key.
//!
//! Parsing is two-staged, as in linfa: serde turns the text into *unchecked* parameters (unknown keys are
//! rejected by `#[serde(deny_unknown_fields)]`), then each model's `check()` turns them into valid ones,
//! returning an [`InvalidParam`] that names the offending key. [`ConfigText`] locates both kinds of error
//! in the file, so the user reads `configs/gmm.toml:7:16: gmm.tol: must be >= 0, got -1`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A configuration error, located in its file where possible.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key path, e.g. `gmm.covariance_type` or `gmm.means_init[1][0]`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// A parameter that parsed but is not valid, named by its key path (without the file's location yet).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct InvalidParam {
    pub key: String,
    pub message: String,
}

impl InvalidParam {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same error with its key placed under `prefix` (`n_components` -> `gmm.n_components`).
    pub fn within(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            self.key = format!("{prefix}.{}", self.key);
        }
        self
    }
}

/// The text of a config file, kept to locate errors in it.
#[derive(Debug, Clone)]
pub struct ConfigText {
    path: PathBuf,
    text: String,
}

impl ConfigText {
    /// Reads a config file. A missing or unreadable file is a [`ConfigError`] naming it.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read config file: {e}"),
        })?;
        Ok(Self::new(path, text))
    }

    /// A config held in memory; `path` is the name used in error messages.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deserialises the whole document into `T`, locating any error.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            let span = e.span();
            let key = span.clone().and_then(|s| self.key_at(s.start));
            let (line, column) = self.position(span);
            ConfigError {
                file: self.path.clone(),
                line,
                column,
                key,
                message: clean_message(e.message()),
            }
        })
    }

    /// Locates a semantic error by its key path (the value's position when the key is in the file).
    pub fn invalid(&self, err: InvalidParam) -> ConfigError {
        let (line, column) = self.position(self.span_of(&err.key));
        ConfigError {
            file: self.path.clone(),
            line,
            column,
            key: Some(err.key),
            message: err.message,
        }
    }

    /// 1-based line and column where `span` starts.
    fn position(&self, span: Option<Range<usize>>) -> (Option<usize>, Option<usize>) {
        match span {
            Some(s) => {
                let (l, c) = line_col(&self.text, s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        }
    }

    /// An error about the file as a whole or a key that is absent from it.
    pub fn error(&self, key: Option<&str>, message: impl Into<String>) -> ConfigError {
        match key {
            Some(k) => self.invalid(InvalidParam::new(k, message)),
            None => ConfigError {
                file: self.path.clone(),
                line: None,
                column: None,
                key: None,
                message: message.into(),
            },
        }
    }

    /// Span of the value at a dotted key path such as `gmm.means_init[1]`; the deepest part of the path
    /// that exists in the file when the full path does not.
    pub fn span_of(&self, key_path: &str) -> Option<Range<usize>> {
        let doc = DeTable::parse(&self.text).ok()?;
        let mut best: Option<Range<usize>> = None;
        let mut current: Option<&Spanned<DeValue>> = None;
        let mut table: Option<&DeTable> = Some(doc.get_ref());
        for part in split_key_path(key_path) {
            let next = match (&part, table, current) {
                (KeyPart::Field(name), Some(t), _) => t.get(name.as_str()),
                (KeyPart::Index(i), _, Some(v)) => v.get_ref().as_array().and_then(|a| a.get(*i)),
                _ => None,
            };
            let Some(v) = next else { break };
            best = Some(v.span());
            current = Some(v);
            table = v.get_ref().as_table();
        }
        best
    }

    /// Dotted key path of the innermost key or value containing byte `offset`.
    pub fn key_at(&self, offset: usize) -> Option<String> {
        let doc = DeTable::parse(&self.text).ok()?;
        find_in_table(doc.get_ref(), offset, "")
    }
}

enum KeyPart {
    Field(String),
    Index(usize),
}

fn split_key_path(path: &str) -> Vec<KeyPart> {
    let mut parts = Vec::new();
    for segment in path.split('.') {
        let mut rest = segment;
        if let Some(bracket) = rest.find('[') {
            parts.push(KeyPart::Field(rest[..bracket].to_string()));
            rest = &rest[bracket..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(end) = stripped.find(']') else { break };
                if let Ok(i) = stripped[..end].parse() {
                    parts.push(KeyPart::Index(i));
                }
                rest = &stripped[end + 1..];
            }
        } else {
            parts.push(KeyPart::Field(rest.to_string()));
        }
    }
    parts
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

/// The deepest key path whose key or value span contains `offset`. Tables are searched whatever their
/// own span, which for a `[table]` header covers only the header.
fn find_in_table(table: &DeTable, offset: usize, path: &str) -> Option<String> {
    for (key, value) in table.iter() {
        let here = if path.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{path}.{}", key.get_ref())
        };
        if let Some(found) = find_in_value(value.get_ref(), offset, &here) {
            return Some(found);
        }
        if contains(&key.span(), offset) || contains(&value.span(), offset) {
            return Some(here);
        }
    }
    None
}

fn find_in_value(value: &DeValue, offset: usize, path: &str) -> Option<String> {
    match value {
        DeValue::Table(t) => find_in_table(t, offset, path),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let here = format!("{path}[{i}]");
            find_in_value(item.get_ref(), offset, &here)
                .or_else(|| contains(&item.span(), offset).then_some(here))
        }),
        _ => None,
    }
}

/// 1-based (line, column) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

/// serde's messages for enums list variants as "expected one of `a`, `b`": keep them, drop the
/// trailing newline toml adds.
fn clean_message(message: &str) -> String {
    message.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: usize,
        #[serde(default)]
        v: Vec<Vec<f64>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Inner,
    }

    #[test]
    fn unknown_key_is_located() {
        let c = ConfigText::new("c.toml", "name = 'a'\n\n[inner]\nn = 3\nbogus = 1\n");
        let e = c.parse::<Outer>().unwrap_err();
        assert_eq!(e.line, Some(5));
        assert_eq!(e.key.as_deref(), Some("inner.bogus"));
        assert!(e.message.contains("unknown field `bogus`"), "{e}");
        assert!(
            e.to_string().starts_with("c.toml:5:1: key `inner.bogus`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_is_located() {
        let c = ConfigText::new("c.toml", "name = 'a'\n[inner]\nn = 'three'\n");
        let e = c.parse::<Outer>().unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("inner.n"));
    }

    #[test]
    fn semantic_error_is_located_by_key_path() {
        let c = ConfigText::new(
            "c.toml",
            "name = 'a'\n[inner]\nn = 3\nv = [[1.0, 2.0],\n  [3.0, 4.0]]\n",
        );
        c.parse::<Outer>().unwrap();
        let e = c.invalid(InvalidParam::new("v[1][0]", "bad").within("inner"));
        assert_eq!((e.line, e.column), (Some(5), Some(4)));
        let e = c.invalid(InvalidParam::new("inner.missing", "absent"));
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn syntax_error_is_located() {
        let c = ConfigText::new("c.toml", "name = 'a'\n[inner\n");
        let e = c.parse::<Outer>().unwrap_err();
        assert_eq!(e.line, Some(2));
    }
}

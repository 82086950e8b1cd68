//! Run directories: every file is written atomically (a temporary file in the same directory, flushed
//! and synced, then renamed over the target), so an interrupted run never leaves a half-written file and
//! a reader sees either the old content or the new.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Writing into a run directory failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct RunIoError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RunIoError + '_ {
    move |source| RunIoError {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: `path.tmp.<pid>` is written, synced and renamed onto `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunIoError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), RunIoError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| RunIoError {
        path: path.to_path_buf(),
        source: io::Error::other(e),
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// A run directory: `config.toml` (the resolved config), `metrics.jsonl`, the fitted model,
/// `summary.json`, checkpoints and `train.log`.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// File names inside a run directory.
    pub const CONFIG: &'static str = "config.toml";
    pub const METRICS: &'static str = "metrics.jsonl";
    pub const SUMMARY: &'static str = "summary.json";
    pub const LOG: &'static str = "train.log";

    /// Creates `root` (and parents) if needed.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self, RunIoError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        Ok(Self { root })
    }

    /// Opens an existing run directory without creating anything.
    pub fn open(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), RunIoError> {
        write_atomic(&self.path(name), bytes)
    }

    pub fn write_json<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), RunIoError> {
        write_json_atomic(&self.path(name), value)
    }
}

/// `metrics.jsonl`: one JSON object per line (an EM iteration or an epoch). The whole file is rewritten
/// atomically on every [`MetricsLog::flush`], so it always ends with a complete line; runs log at most a
/// few thousand records, so the rewrite is cheap.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    text: String,
}

impl MetricsLog {
    /// Starts an empty log at `path` (nothing is written until the first flush).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            text: String::new(),
        }
    }

    /// Continues the log at `path`, keeping its first `keep` records (those a checkpoint covers).
    pub fn resume(path: PathBuf, keep: usize) -> Result<Self, RunIoError> {
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut kept = String::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()).take(keep) {
            kept.push_str(line);
            kept.push('\n');
        }
        Ok(Self { path, text: kept })
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.text.lines().count()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Appends one record (written at the next flush).
    pub fn push<T: Serialize>(&mut self, record: &T) {
        // Serialising plain structs of numbers and strings cannot fail.
        let line = serde_json::to_string(record).expect("metrics record serialises");
        self.text.push_str(&line);
        self.text.push('\n');
    }

    /// Writes the whole log atomically.
    pub fn flush(&self) -> Result<(), RunIoError> {
        write_atomic(&self.path, self.text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporaries() {
        let dir = std::env::temp_dir().join(format!("emvae-run-test-{}", std::process::id()));
        let run = RunDir::create(&dir).unwrap();
        run.write("a.txt", b"first").unwrap();
        run.write("a.txt", b"second").unwrap();
        assert_eq!(fs::read_to_string(run.path("a.txt")).unwrap(), "second");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["a.txt".to_string()]);

        let mut log = MetricsLog::new(run.path(RunDir::METRICS));
        log.push(&serde_json::json!({"iteration": 1}));
        log.push(&serde_json::json!({"iteration": 2}));
        log.flush().unwrap();
        let resumed = MetricsLog::resume(run.path(RunDir::METRICS), 1).unwrap();
        assert_eq!(resumed.len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}

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

/// `value` as pretty JSON ending in a newline (what `path` will hold, named in the error).
fn json_text<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<String, RunIoError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| RunIoError {
        path: path.to_path_buf(),
        source: io::Error::other(e),
    })?;
    text.push('\n');
    Ok(text)
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), RunIoError> {
    write_atomic(path, json_text(path, value)?.as_bytes())
}

/// A run directory: `config.toml` (the resolved config), `metrics.jsonl`, the fitted model,
/// `summary.json`, checkpoints and `train.log`.
///
/// A run that replaces another ([`RunDir::replace`]) moves the previous run aside to the sibling
/// `.NAME.previous` and deletes it only once the new run has written a durable file (a checkpoint or a
/// model: names beginning with `checkpoint` or `model`). Until then [`RunDir::restore_previous`]
/// puts the previous run back, and [`RunDir::recover`] does so after a process was killed.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
    /// The previous run moved aside, while this run has no durable file yet.
    previous: std::sync::Arc<std::sync::Mutex<Option<PathBuf>>>,
}

/// Whether writing `name` makes a run resumable or usable (so a replaced run may go).
fn is_durable(name: &str) -> bool {
    name.starts_with("checkpoint") || name.starts_with("model")
}

/// The sibling `.NAME.SUFFIX` of `root`.
fn sibling(root: &Path, suffix: &str) -> PathBuf {
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    root.with_file_name(format!(".{name}.{suffix}"))
}

impl RunDir {
    /// File names inside a run directory.
    pub const CONFIG: &'static str = "config.toml";
    pub const METRICS: &'static str = "metrics.jsonl";
    pub const SUMMARY: &'static str = "summary.json";
    pub const LOG: &'static str = "train.log";
    /// Checksums of the model files (see [`RunDir::read_verified`]).
    pub const CHECKSUMS: &'static str = "checksums.json";

    /// Creates `root` (and parents) if needed.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self, RunIoError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        Ok(Self::open(root))
    }

    /// Opens an existing run directory without creating anything.
    pub fn open(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            previous: Default::default(),
        }
    }

    /// Starts a run in `self`'s directory in place of the run it holds: the previous run is moved to
    /// `.NAME.previous` (replacing a stale one) and an empty directory takes its place. The previous run
    /// is deleted when this one writes its first checkpoint or model.
    pub fn replace(&self) -> Result<(), RunIoError> {
        if self.root.exists() {
            let aside = sibling(&self.root, "previous");
            if aside.exists() {
                fs::remove_dir_all(&aside).map_err(io_err(&aside))?;
            }
            fs::rename(&self.root, &aside).map_err(io_err(&self.root))?;
            *self.previous.lock().unwrap_or_else(|e| e.into_inner()) = Some(aside);
        }
        fs::create_dir_all(&self.root).map_err(io_err(&self.root))
    }

    /// After a failure: if the previous run is still set aside, this attempt moves to the sibling
    /// `.NAME.failed` (its log says why) and the previous run returns. Returns the attempt's new place.
    pub fn restore_previous(&self) -> Result<Option<PathBuf>, RunIoError> {
        let Some(aside) = self
            .previous
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Ok(None);
        };
        let failed = sibling(&self.root, "failed");
        if failed.exists() {
            fs::remove_dir_all(&failed).map_err(io_err(&failed))?;
        }
        fs::rename(&self.root, &failed).map_err(io_err(&self.root))?;
        fs::rename(&aside, &self.root).map_err(io_err(&aside))?;
        Ok(Some(failed))
    }

    /// Repairs what a killed replacing run left: a previous run still set aside comes back if the run
    /// in `root` never wrote a durable file, and is deleted otherwise. Returns what was done.
    pub fn recover(root: &Path) -> Result<Option<String>, RunIoError> {
        let aside = sibling(root, "previous");
        if !aside.is_dir() {
            return Ok(None);
        }
        let durable = fs::read_dir(root)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| is_durable(&e.file_name().to_string_lossy()))
            })
            .unwrap_or(false);
        if durable {
            fs::remove_dir_all(&aside).map_err(io_err(&aside))?;
            return Ok(None);
        }
        let failed = sibling(root, "failed");
        if root.exists() {
            if failed.exists() {
                fs::remove_dir_all(&failed).map_err(io_err(&failed))?;
            }
            fs::rename(root, &failed).map_err(io_err(root))?;
        }
        fs::rename(&aside, root).map_err(io_err(&aside))?;
        Ok(Some(format!(
            "restored the previous run in {}: the run that was replacing it stopped before its first \
             checkpoint (what it left is in {})",
            root.display(),
            failed.display()
        )))
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
        write_atomic(&self.path(name), bytes)?;
        self.written(name, bytes)
    }

    pub fn write_json<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), RunIoError> {
        self.write(name, json_text(&self.path(name), value)?.as_bytes())
    }

    /// The file `name` of the run, checked against the checksum recorded when the run wrote it (model
    /// files: names beginning with `model`). A file without a recorded checksum (written by an earlier
    /// emvae) is returned as it is.
    pub fn read_verified(&self, name: &str) -> Result<Vec<u8>, ReadError> {
        let path = self.path(name);
        let bytes = fs::read(&path).map_err(|source| ReadError::Io {
            path: path.clone(),
            source,
        })?;
        self.verify(name, &bytes)?;
        Ok(bytes)
    }

    /// Checks `bytes`, read from the run's file `name`, against the recorded checksum (if any).
    pub fn verify(&self, name: &str, bytes: &[u8]) -> Result<(), ReadError> {
        match self.checksums().get(name) {
            Some(expected) if *expected != format!("{:016x}", crate::hash::fnv1a64(bytes)) => {
                Err(ReadError::Checksum {
                    path: self.path(name),
                })
            }
            _ => Ok(()),
        }
    }

    /// `checksums.json`: FNV-1a 64 of each model file the run wrote.
    fn checksums(&self) -> std::collections::BTreeMap<String, String> {
        fs::read(self.path(Self::CHECKSUMS))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// A file is on disk: a model file's checksum is recorded, and once a durable file exists the run
    /// this one replaced may go.
    fn written(&self, name: &str, bytes: &[u8]) -> Result<(), RunIoError> {
        if !is_durable(name) {
            return Ok(());
        }
        if name.starts_with("model") {
            let mut sums = self.checksums();
            sums.insert(
                name.to_string(),
                format!("{:016x}", crate::hash::fnv1a64(bytes)),
            );
            write_json_atomic(&self.path(Self::CHECKSUMS), &sums)?;
        }
        let aside = self
            .previous
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(aside) = aside {
            let _ = fs::remove_dir_all(aside);
        }
        Ok(())
    }
}

/// Reading a run's file failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path}: the file differs from what the run wrote (its checksum in checksums.json does not \
         match): it was edited or damaged; restore it, or train the run again"
    )]
    Checksum { path: PathBuf },
}

/// A lock on a run directory held by a live process: the sibling file `.NAME.lock` holding the owner's
/// process id (and, on Linux, its start time, so a reused id is not mistaken for the owner). A lock
/// whose owner is gone (killed) is taken over. Released when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

/// Why a run directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{root} is in use by another emvae process (pid {pid}, lock file {lock}): wait for it to finish, \
         or stop it; delete the lock file only if no such process runs"
    )]
    Busy {
        root: PathBuf,
        pid: u32,
        lock: PathBuf,
    },
    #[error(transparent)]
    Io(#[from] RunIoError),
}

/// This process's identity in a lock file.
fn owner_of(pid: u32) -> Option<String> {
    // Field 22 of /proc/PID/stat (after the parenthesised command name) is the start time in ticks.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19).map(str::to_string)
}

/// Whether the owner recorded as `pid` (with start time `start`, if known) still runs.
fn owner_alive(pid: u32, start: Option<&str>) -> bool {
    if !Path::new("/proc/self/stat").exists() {
        // No procfs: assume the owner lives (the message says how to clear a stale lock).
        return true;
    }
    match (owner_of(pid), start) {
        (None, _) => false,
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
    }
}

impl RunLock {
    /// Locks the run directory `root` (which need not exist yet).
    pub fn acquire(root: &Path) -> Result<Self, LockError> {
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let path = sibling(root, "lock");
        let pid = std::process::id();
        let me = format!("{pid} {}\n", owner_of(pid).unwrap_or_default());
        for _ in 0..3 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(me.as_bytes()).map_err(io_err(&path))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let text = fs::read_to_string(&path).unwrap_or_default();
                    let mut fields = text.split_whitespace();
                    let owner = fields.next().and_then(|p| p.parse::<u32>().ok());
                    let start = fields.next();
                    match owner {
                        Some(owner) if owner_alive(owner, start) => {
                            return Err(LockError::Busy {
                                root: root.to_path_buf(),
                                pid: owner,
                                lock: path,
                            });
                        }
                        // A stale (or unreadable) lock: the owner is gone; take it over.
                        _ => {
                            let _ = fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(io_err(&path)(e).into()),
            }
        }
        Err(io_err(&path)(io::Error::other("the lock file keeps reappearing")).into())
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
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

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("emvae-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    /// A replacing run that fails before its first checkpoint gives the previous run back untouched; one
    /// that writes a checkpoint makes the previous run go.
    #[test]
    fn replaced_run_returns_until_the_new_one_is_durable() {
        let base = scratch("replace");
        let root = base.join("run");
        let old = RunDir::create(&root).unwrap();
        old.write("model.json", b"old model").unwrap();
        old.write(RunDir::LOG, b"old log").unwrap();

        let new = RunDir::open(&root);
        new.replace().unwrap();
        assert!(!new.exists("model.json"), "the new run starts empty");
        new.write(RunDir::LOG, b"new log: failed").unwrap();
        new.write(RunDir::CONFIG, b"config").unwrap();
        let failed = new.restore_previous().unwrap().expect("restored");
        assert_eq!(read(&root.join("model.json")), "old model");
        assert_eq!(read(&root.join(RunDir::LOG)), "old log");
        assert_eq!(read(&failed.join(RunDir::LOG)), "new log: failed");

        let newer = RunDir::open(&root);
        newer.replace().unwrap();
        newer.write("checkpoint.bin", b"ck").unwrap();
        assert!(
            newer.restore_previous().unwrap().is_none(),
            "nothing to restore"
        );
        assert!(
            !sibling(&root, "previous").exists(),
            "the previous run went"
        );
        assert_eq!(read(&root.join("checkpoint.bin")), "ck");
        fs::remove_dir_all(&base).unwrap();
    }

    /// What a killed replacing run leaves is repaired on the next open.
    #[test]
    fn recover_after_a_kill() {
        let base = scratch("recover");
        let root = base.join("run");
        RunDir::create(&root)
            .unwrap()
            .write("model.json", b"old")
            .unwrap();
        let new = RunDir::open(&root);
        new.replace().unwrap();
        new.write(RunDir::CONFIG, b"partial").unwrap();
        std::mem::forget(new); // killed: nothing more happens
        let message = RunDir::recover(&root).unwrap().expect("repaired");
        assert!(message.contains("restored the previous run"), "{message}");
        assert_eq!(read(&root.join("model.json")), "old");
        assert!(
            RunDir::recover(&root).unwrap().is_none(),
            "nothing left to do"
        );

        // Killed after its first checkpoint: the new run stays and the old one goes.
        let new = RunDir::open(&root);
        new.replace().unwrap();
        fs::write(root.join("checkpoint.json"), b"new").unwrap();
        assert!(RunDir::recover(&root).unwrap().is_none());
        assert!(!sibling(&root, "previous").exists());
        assert_eq!(read(&root.join("checkpoint.json")), "new");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_live_lock_refuses_and_a_stale_one_is_taken_over() {
        let base = scratch("lock");
        let root = base.join("run");
        let held = RunLock::acquire(&root).unwrap();
        match RunLock::acquire(&root) {
            Err(LockError::Busy { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected a busy lock, got {other:?}"),
        }
        drop(held);
        assert!(!sibling(&root, "lock").exists(), "released on drop");

        if Path::new("/proc/self/stat").exists() {
            // A process that has exited: its lock is stale.
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let dead = child.id();
            child.wait().unwrap();
            fs::write(sibling(&root, "lock"), format!("{dead} 1\n")).unwrap();
            let taken = RunLock::acquire(&root).expect("a stale lock is taken over");
            let text = read(&sibling(&root, "lock"));
            assert!(text.starts_with(&std::process::id().to_string()), "{text}");
            drop(taken);
        }
        fs::remove_dir_all(&base).unwrap();
    }
}

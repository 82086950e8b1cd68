//! Running the `emvae` binary from tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system's temporary folder, removed on drop. (Written here rather than
/// taken from the `tempfile` crate, whose dependencies' features would differ between `cargo test` and
/// `cargo run` and make each rebuild burn.)
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tempdir() -> TempDir {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "emvae-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let path = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&path).expect("a temporary directory");
    TempDir(path)
}

pub struct Out {
    pub code: i32,
    #[allow(dead_code)] // not every test binary reads it
    pub stdout: String,
    pub stderr: String,
}

/// Runs `emvae args...` in `dir`, without the caller's RUST_LOG.
pub fn emvae(dir: &Path, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_emvae"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("the emvae binary runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts a usage or input error: exit 2, no panic, and every `needles` in the message.
#[allow(dead_code)] // not every test binary checks errors
pub fn assert_user_error(out: &Out, what: &str, needles: &[&str]) {
    assert_eq!(out.code, 2, "{what}: exit {} ({})", out.code, out.stderr);
    assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "{what}: `{n}` not in: {}",
            out.stderr
        );
    }
}

/// The JSON objects of a command's JSON-lines output.
#[allow(dead_code)] // not every test binary reads JSON lines
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

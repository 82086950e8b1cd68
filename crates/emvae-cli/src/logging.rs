//! `tracing` set-up: stderr (level from `-v` / `-q`, or `RUST_LOG`), plus a log file in the run
//! directory once one exists. Lines printed while a progress bar is drawn go above it.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use indicatif::ProgressBar;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The progress bar currently drawn, if any (log lines suspend it while they print).
static PROGRESS: Mutex<Option<ProgressBar>> = Mutex::new(None);
/// The run directory's log file, once opened.
static LOG_FILE: OnceLock<Arc<Mutex<Option<File>>>> = OnceLock::new();

pub fn set_progress(bar: Option<ProgressBar>) {
    if let Ok(mut p) = PROGRESS.lock() {
        *p = bar;
    }
}

#[derive(Clone, Copy)]
struct Stderr;

struct StderrLine(Vec<u8>);

impl Write for StderrLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for StderrLine {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        let print = || {
            let _ = io::stderr().write_all(&bytes);
        };
        match PROGRESS.lock().ok().and_then(|p| p.clone()) {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = StderrLine;
    fn make_writer(&'a self) -> Self::Writer {
        StderrLine(Vec::new())
    }
}

#[derive(Clone)]
struct FileWriter(Arc<Mutex<Option<File>>>);

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.lock() {
            Ok(mut f) => match f.as_mut() {
                Some(file) => file.write(buf),
                None => Ok(buf.len()),
            },
            Err(_) => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.0.lock() {
            Ok(mut f) => f.as_mut().map_or(Ok(()), Write::flush),
            Err(_) => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for FileWriter {
    type Writer = FileWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs the global subscriber. `verbosity`: -1 quiet (warnings), 0 info, 1 debug, 2+ trace.
pub fn init(verbosity: i8) {
    let level = match verbosity {
        i8::MIN..=-1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let stderr_filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,emvae={level},emvae_cli={level},emvae_em={level},emvae_vae={level},emvae_core={level},emvae_text={level},emvae_plot={level}")));
    let file_level = if verbosity > 0 { level } else { "info" };
    let file_filter = EnvFilter::new(format!(
        "warn,emvae_cli={file_level},emvae_em={file_level},emvae_vae={file_level},emvae_core={file_level},emvae_text={file_level},emvae_plot={file_level}"
    ));
    let file = LOG_FILE.get_or_init(|| Arc::new(Mutex::new(None))).clone();
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(Stderr)
                .with_ansi(io::stderr().is_terminal())
                .with_target(false)
                .without_time()
                .with_filter(stderr_filter),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(FileWriter(file))
                .with_ansi(false)
                .with_target(false)
                .with_filter(file_filter),
        )
        .try_init();
}

/// Starts appending log lines to `path` (the run directory's `train.log`).
pub fn log_to_file(path: &Path) -> io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if let Some(slot) = LOG_FILE.get()
        && let Ok(mut f) = slot.lock()
    {
        *f = Some(file);
    }
    Ok(())
}

/// Appends `line` to the run's log file only (the error that ended a run, which the terminal shows once
/// already).
pub fn append_to_file(line: &str) {
    if let Some(slot) = LOG_FILE.get()
        && let Ok(mut f) = slot.lock()
        && let Some(file) = f.as_mut()
    {
        let _ = writeln!(file, "{line}");
    }
}

use tracing_subscriber::Layer as _;

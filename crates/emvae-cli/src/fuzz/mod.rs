//! `emvae bench fuzz`: random and mutated inputs fed to every loader of user-controlled bytes: the run
//! config, the CSV, NPY and IDX readers (in memory, and through files, gzipped or not), the GMM model and
//! checkpoint files, VAE checkpoints (with their optimiser state and model record) and the text
//! vocabulary. The rule it holds them to: bad input gives an error, never a panic, a hang or an
//! allocation sized by a length the file merely claims.
//!
//! Inputs come from a deterministic xorshift generator seeded by `--seed` and the case number: valid
//! files of each format (built here, or the repository's configs), edited by bit flips, byte
//! replacement, deletion, duplication and insertion of ranges and of interesting tokens, truncation,
//! splicing of two files, large integers written over length and size fields, and edits that know the
//! format (TOML lines and values, JSON values, NPY and IDX headers, checkpoint parts reassembled with
//! their checksum recomputed so that the checks behind it are reached); plus fully random inputs. An
//! input a loader accepts is then used as a command would use it (rows read, a model scored and
//! sampled, a resumed run stepped), so that what a loader lets through is tested too.
//!
//! Each case runs under `catch_unwind` with the panic hook silenced; a watchdog ends the process if
//! one case runs longer than [`HANG_LIMIT`], and a case that raises the process's peak memory by more
//! than [`MEMORY_LIMIT`] counts as an unbounded allocation. The first offending input of a target is
//! written to `fuzz-failure-TARGET.bin`.

mod config;
mod data;
mod gmm;
mod json;
mod mutate;
mod vae;
mod vocab;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::args::BenchFuzzArgs;
use crate::error::{CliError, CliResult};

use config::ConfigTarget;
use data::{DataFormat, DataTarget};
use gmm::{GmmCheckpointTarget, GmmModelTarget};
use mutate::Rng;
use vae::VaeCheckpointTarget;
use vocab::VocabTarget;

/// Every target, in the order they run.
#[rustfmt::skip]
pub const TARGETS: [&str; 8] = [
    "config", "csv", "npy", "idx", "gmm-model", "gmm-checkpoint", "vae-checkpoint", "vocab",
];

/// A case running longer than this is a hang: the watchdog ends the process.
const HANG_LIMIT: Duration = Duration::from_secs(10);
/// Growth of the peak resident memory (or of the peak address space, 8 times this) in one case that
/// counts as an allocation sized by an unchecked length.
const MEMORY_LIMIT: u64 = 512 << 20;
/// Largest input generated.
const MAX_LEN: usize = 1 << 20;

/// `emvae bench fuzz`: one JSON line per target; an error (exit code 1) naming the first offending
/// input of every target that panicked, hung or allocated without bound.
pub fn run(args: &BenchFuzzArgs) -> CliResult<()> {
    if args.cases == 0 {
        return Err(CliError::user("bench fuzz needs --cases >= 1"));
    }
    let mut names: Vec<&'static str> = Vec::new();
    for t in &args.target {
        let name = TARGETS.iter().find(|n| **n == t.as_str()).ok_or_else(|| {
            CliError::user(format!(
                "--target {t}: unknown target; expected one of {}",
                TARGETS.join(", ")
            ))
        })?;
        if !names.contains(name) {
            names.push(*name);
        }
    }
    if names.is_empty() {
        names = TARGETS.to_vec();
    }
    let scratch = Scratch::new()?;
    let watchdog = Watchdog::start();
    let mut failures = Vec::new();
    for name in names {
        let mut target = build(name, scratch.path())?;
        let (line, failure) = fuzz_target(target.as_mut(), args, &watchdog)?;
        println!("{line}");
        failures.extend(failure);
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::runtime(failures.join("\n")))
    }
}

fn build(name: &str, scratch: &Path) -> CliResult<Box<dyn Target>> {
    Ok(match name {
        "config" => Box::new(ConfigTarget::new(scratch)),
        "csv" => Box::new(DataTarget::new(DataFormat::Csv, scratch)),
        "npy" => Box::new(DataTarget::new(DataFormat::Npy, scratch)),
        "idx" => Box::new(DataTarget::new(DataFormat::Idx, scratch)),
        "gmm-model" => Box::new(GmmModelTarget::new()?),
        "gmm-checkpoint" => Box::new(GmmCheckpointTarget::new()?),
        "vae-checkpoint" => Box::new(VaeCheckpointTarget::new()?),
        "vocab" => Box::new(VocabTarget::new()),
        other => return Err(CliError::runtime(format!("no fuzz target {other}"))),
    })
}

/// Runs `args.cases` cases of `target`: its JSON line, and the failure message if any case panicked,
/// hung or allocated without bound.
fn fuzz_target(
    target: &mut dyn Target,
    args: &BenchFuzzArgs,
    watchdog: &Watchdog,
) -> CliResult<(Value, Option<String>)> {
    let name = target.name();
    let base = args.seed ^ emvae_core::hash::fnv1a64(name.as_bytes());
    let (mut accepted, mut errors, mut panics, mut hangs, mut allocations) = (0u64, 0u64, 0, 0, 0);
    let mut max_case = Duration::ZERO;
    let mut first: Option<String> = None;
    // Every place a panic came from, with its count.
    let mut sites: Vec<(String, usize)> = Vec::new();
    let mut memory = peak_memory();
    let start = Instant::now();
    let quiet = QuietPanics::install();
    for i in 0..args.cases {
        let mut rng = Rng::new(base.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        let case = target.generate(&mut rng);
        watchdog.arm(name, &case.bytes, &target.describe(case.variant));
        let t0 = Instant::now();
        let result = panic::catch_unwind(AssertUnwindSafe(|| target.run(&case)));
        let elapsed = t0.elapsed();
        watchdog.disarm();
        max_case = max_case.max(elapsed);
        let mut failure = None;
        match result {
            Ok(Ok(Ok(()))) => accepted += 1,
            Ok(Ok(Err(_))) => errors += 1,
            Ok(Err(harness)) => return Err(harness),
            Err(_) => {
                panics += 1;
                let (site, message) = quiet.last();
                match sites.iter_mut().find(|(s, _)| *s == site) {
                    Some((_, n)) => *n += 1,
                    None => sites.push((site, 1)),
                }
                failure = Some(format!("panicked: {message}"));
            }
        }
        if elapsed > HANG_LIMIT {
            hangs += 1;
            failure.get_or_insert_with(|| format!("ran {:.1} s (a hang)", elapsed.as_secs_f64()));
        }
        let now = peak_memory();
        if let (Some(before), Some(after)) = (memory, now) {
            let resident = after.0.saturating_sub(before.0);
            let address_space = after.1.saturating_sub(before.1);
            if resident > MEMORY_LIMIT || address_space > 8 * MEMORY_LIMIT {
                allocations += 1;
                failure.get_or_insert_with(|| {
                    format!(
                        "raised peak memory by {} MiB resident, {} MiB of address space (an allocation \
                         sized by an unchecked length)",
                        resident >> 20,
                        address_space >> 20
                    )
                });
            }
        }
        memory = now.or(memory);
        if let Some(what) = failure
            && first.is_none()
        {
            let file = failure_file(name);
            let saved = match std::fs::write(&file, &case.bytes) {
                Ok(()) => format!("the input is in {}", file.display()),
                Err(e) => format!("cannot write the input to {}: {e}", file.display()),
            };
            first = Some(format!(
                "case {i} ({}) {what}; {saved}",
                target.describe(case.variant)
            ));
        }
    }
    drop(quiet);
    let seconds = start.elapsed().as_secs_f64();
    let line = json!({
        "bench": "fuzz",
        "target": name,
        "cases": args.cases,
        "panics": panics,
        "hangs": hangs,
        "allocations": allocations,
        "errors": errors,
        "accepted": accepted,
        "max_case_ms": (max_case.as_secs_f64() * 1e6).round() / 1e3,
        "seconds": (seconds * 1e3).round() / 1e3,
        "seed": args.seed,
        "peak_rss_mb": peak_memory().map(|m| m.0 >> 20),
    });
    let failure = first.map(|f| {
        let sites: Vec<String> = sites.iter().map(|(s, n)| format!("{s} ({n})")).collect();
        format!(
            "fuzz target {name}: {panics} panics, {hangs} hangs, {allocations} unbounded allocations in {} \
             cases; first: {f}{}",
            args.cases,
            if sites.is_empty() {
                String::new()
            } else {
                format!("; panics at {}", sites.join(", "))
            }
        )
    });
    Ok((line, failure))
}

fn failure_file(target: &str) -> PathBuf {
    PathBuf::from(format!("fuzz-failure-{target}.bin"))
}

/// `(peak resident, peak address space)` of this process in bytes, where the system says (Linux).
fn peak_memory() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let kb: u64 = line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb << 10)
    };
    Some((field("VmHWM:")?, field("VmPeak:")?))
}

/// What one input is fed to, and whether the loader accepted it.
type Verdict = Result<(), String>;

/// One generated input: its bytes, and which entry point (or options) of the target reads them.
struct Case {
    bytes: Vec<u8>,
    variant: usize,
}

trait Target {
    fn name(&self) -> &'static str;
    /// A new input.
    fn generate(&self, rng: &mut Rng) -> Case;
    /// Feeds `case` to the loader (and uses what it accepts). The outer error is the harness's own
    /// failure (a scratch file that cannot be written).
    fn run(&mut self, case: &Case) -> CliResult<Verdict>;
    /// What variant `variant` feeds the bytes to, for messages.
    fn describe(&self, variant: usize) -> String;
}

/// Silences the panic hook while alive (restoring the previous one after), keeping the last panic's
/// message for the report.
struct QuietPanics {
    previous: Option<PanicHook>,
}

type PanicHook = Box<dyn Fn(&panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// The last panic: where, and the whole message.
static LAST_PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);

impl QuietPanics {
    fn install() -> Self {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(|info| {
            if let Ok(mut slot) = LAST_PANIC.lock() {
                let site = info
                    .location()
                    .map_or_else(|| "?".into(), |l| format!("{}:{}", l.file(), l.line()));
                *slot = Some((site, info.to_string().replace('\n', " ")));
            }
        }));
        Self {
            previous: Some(previous),
        }
    }

    /// Where the last panic happened, and its message.
    fn last(&self) -> (String, String) {
        LAST_PANIC
            .lock()
            .ok()
            .and_then(|mut m| m.take())
            .unwrap_or_else(|| ("?".into(), "(no message)".into()))
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            panic::set_hook(previous);
        }
    }
}

/// Ends the process (exit code 1) when a case runs longer than [`HANG_LIMIT`], after writing its input
/// to `fuzz-failure-TARGET.bin`.
struct Watchdog {
    state: Arc<WatchState>,
}

struct WatchState {
    origin: Instant,
    /// Milliseconds since `origin` at which the running case started, plus one; 0 when none runs.
    started: AtomicU64,
    /// The running case: target, input, what reads it.
    case: Mutex<(String, Vec<u8>, String)>,
}

impl Watchdog {
    fn start() -> Self {
        let state = Arc::new(WatchState {
            origin: Instant::now(),
            started: AtomicU64::new(0),
            case: Mutex::new((String::new(), Vec::new(), String::new())),
        });
        let watched = Arc::clone(&state);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let started = watched.started.load(Ordering::Acquire);
                let now = watched.origin.elapsed().as_millis() as u64;
                if started == 0 || now.saturating_sub(started - 1) <= HANG_LIMIT.as_millis() as u64
                {
                    continue;
                }
                let (target, bytes, what) = match watched.case.lock() {
                    Ok(case) => case.clone(),
                    Err(poisoned) => poisoned.into_inner().clone(),
                };
                let file = failure_file(&target);
                let saved = match std::fs::write(&file, &bytes) {
                    Ok(()) => format!("the input is in {}", file.display()),
                    Err(e) => format!("cannot write the input to {}: {e}", file.display()),
                };
                eprintln!(
                    "error: fuzz target {target}: a case ({what}) has run longer than {} s (a hang); {saved}",
                    HANG_LIMIT.as_secs()
                );
                std::process::exit(1);
            }
        });
        Self { state }
    }

    fn arm(&self, target: &str, bytes: &[u8], what: &str) {
        if let Ok(mut case) = self.state.case.lock() {
            case.0.clear();
            case.0.push_str(target);
            case.1.clear();
            case.1.extend_from_slice(bytes);
            case.2.clear();
            case.2.push_str(what);
        }
        let now = self.state.origin.elapsed().as_millis() as u64;
        self.state.started.store(now + 1, Ordering::Release);
    }

    fn disarm(&self) {
        self.state.started.store(0, Ordering::Release);
    }
}

/// A folder for the inputs of path-based loaders, removed when done.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> CliResult<Self> {
        let path = std::env::temp_dir().join(format!("emvae-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| {
            CliError::runtime(format!("fuzz: cannot create {}: {e}", path.display()))
        })?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a case's file. The old one is removed first: ext4 flushes a file truncated and rewritten in
/// place when it is closed, which costs a millisecond or two per case.
fn write_scratch(path: &Path, bytes: &[u8]) -> CliResult<()> {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes)
        .map_err(|e| CliError::runtime(format!("fuzz: cannot write {}: {e}", path.display())))
}

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

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use emvae_core::data::synthetic::SyntheticMixture;
use emvae_core::data::{
    self, ColumnRef, CsvOptions, Dataset, Delimiter, Format, HeaderMode, Matrix,
};
use emvae_core::tensor::{Compute, Precision};
use emvae_em::gmm::{
    CovarianceType, EmObserver, GaussianMixture, GaussianMixtureJson, GmmCheckpoint, GmmParams,
    GmmValidParams, IterationRecord,
};
use emvae_text::vocab::Vocab;
use emvae_vae::adam::Adam;
use emvae_vae::data::{Binarization, VaeData};
use emvae_vae::train::{Trainer, load_model};
use emvae_vae::{Vae, VaeConfig};
use serde_json::{Value, json};

use crate::args::BenchFuzzArgs;
use crate::error::{CliError, CliResult};
use crate::runconfig::{LoadedConfig, Overrides};

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
    let base = args.seed ^ fnv1a(name.as_bytes());
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

// ---------------------------------------------------------------------------------------------------
// Random inputs.

/// xorshift64* seeded through splitmix64.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Numbers that break parsers and size computations.
#[rustfmt::skip]
const NUMBERS: &[&str] = &[
    "0", "-0", "1", "-1", "2", "3", "0.5", "-0.0", "1e999", "-1e999", "1e-999", "nan", "NaN",
    "-nan", "inf", "-inf", "+inf", "18446744073709551615", "18446744073709551616",
    "9223372036854775807", "9223372036854775808", "-9223372036854775808", "4294967295",
    "4294967296", "65535", "65536", "1e308", "5e-324", "99999999999999999999999999999",
    "1.7976931348623157e308", "0x10", "1_0", "+1", ".5", "5.", "1e", "--1",
];

/// Tokens of the text formats (TOML, JSON, CSV, the NPY header), and bytes that are not UTF-8.
#[rustfmt::skip]
const TOKENS: &[&[u8]] = &[
    b"[", b"]", b"{", b"}", b"[[", b"]]", b"[]", b"{}", b"[[]]", b"(", b")", b"()", b"\"", b"'",
    b"''", b"\"\"", b"=", b"\n", b"\r\n", b"\r", b",", b";", b":", b"#", b"\t", b" ", b"|", b".",
    b"\\", b"\\u0000", b"\\ud800", b"\xFF", b"\x00", b"\xC3", b"\xE9", b"\xC3\xA9",
    b"\xF0\x9D\x84\x9E", b"\xE2\x80\xA8", b"true", b"false", b"True", b"False", b"null",
    b"1979-05-27T07:32:00Z", b"'descr'", b"'shape'", b"'fortran_order'", b"\"format\"",
    b"\"tokens\"", b"<pad>", b"<unk>",
];

/// Openings of nested values.
const NESTING: &[&[u8]] = &[b"[", b"{", b"(", b"[[", b"{\"a\":", b"{a=", b"[{", b"a=["];

/// Single bytes worth writing.
#[rustfmt::skip]
const BYTES: &[u8] = &[
    0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, b'0', b'1', b'9', b'-', b'+', b'.', b'e', b'E', b',',
    b'\n', b'\r', b'"', b'\'', b'[', b']', b'{', b'}', b'(', b')', b'=', b' ', b'\t', b'#', b':',
    b'\\',
];

/// Integers written over length, size and dimension fields.
#[rustfmt::skip]
const BIG: &[u64] = &[
    0, 1, 2, 3, 4, 7, 8, 16, 255, 256, 0x7FFF, 0xFFFF, 0x1_0000, 0x7FFF_FFFF, 0x8000_0000,
    0xFFFF_FFFF, 1 << 32, (1 << 32) + 1, 1 << 40, 1 << 48, 1 << 56, 1 << 62, i64::MAX as u64,
    1 << 63, u64::MAX - 7, u64::MAX - 1, u64::MAX,
];

const PRINTABLE: &[u8] = b"abcxyz0123456789 ,.;:=-+eE[]{}()\"'#\n\t_<>|/";

/// A valid file of a format and the offsets of its length and size fields.
#[derive(Clone)]
struct Seed {
    bytes: Vec<u8>,
    hot: Vec<usize>,
}

impl Seed {
    fn text(s: impl Into<String>) -> Self {
        Self {
            bytes: s.into().into_bytes(),
            hot: Vec::new(),
        }
    }
}

/// Edits of bytes, shared by all targets.
struct Mutator {
    seeds: Vec<Seed>,
    /// Binary formats: integers written over fields more often.
    binary: bool,
}

impl Mutator {
    fn new(seeds: Vec<Seed>, binary: bool) -> Self {
        Self { seeds, binary }
    }

    /// Seed `i` edited (one input in twenty fully random instead).
    fn mutated(&self, rng: &mut Rng, i: usize) -> Vec<u8> {
        if rng.chance(5) {
            return random_bytes(rng);
        }
        let seed = &self.seeds[i];
        let mut bytes = seed.bytes.clone();
        self.mutate(rng, &mut bytes, &seed.hot);
        bytes
    }

    /// A random seed, edited.
    fn input(&self, rng: &mut Rng) -> (Vec<u8>, usize) {
        let i = rng.below(self.seeds.len());
        (self.mutated(rng, i), i)
    }

    /// One to eight edits of `bytes`.
    fn mutate(&self, rng: &mut Rng, bytes: &mut Vec<u8>, hot: &[usize]) {
        let n = 1 + if rng.chance(70) {
            rng.below(3)
        } else {
            rng.below(8)
        };
        for _ in 0..n {
            self.edit(rng, bytes, hot);
            bytes.truncate(MAX_LEN);
        }
    }

    fn edit(&self, rng: &mut Rng, b: &mut Vec<u8>, hot: &[usize]) {
        let op = if self.binary && rng.chance(30) {
            10
        } else {
            rng.below(13)
        };
        match op {
            0 => {
                if !b.is_empty() {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
            1 => {
                if !b.is_empty() {
                    let i = rng.below(b.len());
                    b[i] = if rng.chance(50) {
                        *rng.pick(BYTES)
                    } else {
                        rng.next() as u8
                    };
                }
            }
            2 => {
                let (s, e) = span(rng, b.len());
                b.drain(s..e);
            }
            3 => {
                let (s, e) = span(rng, b.len());
                let chunk = b[s..e].to_vec();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, chunk);
            }
            4 => {
                // A range repeated: long lines, many rows, many columns.
                let (s, e) = span(rng, b.len());
                let chunk = b[s..e].to_vec();
                let most = if rng.chance(90) { 16 } else { 4096 };
                let times = 1 + rng.below(most);
                let mut repeated = Vec::new();
                for _ in 0..times {
                    if repeated.len() + chunk.len() + b.len() > MAX_LEN {
                        break;
                    }
                    repeated.extend_from_slice(&chunk);
                }
                b.splice(e..e, repeated);
            }
            5 => {
                let at = rng.below(b.len() + 1);
                let n = 1 + rng.below(16);
                let fresh: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(at..at, fresh);
            }
            6 if rng.chance(3) => {
                // Deep nesting: parsers that recurse without a limit overflow the stack.
                let at = rng.below(b.len() + 1);
                let open = *rng.pick(NESTING);
                let depth = 1 + rng.below(100_000);
                let nested: Vec<u8> = open.repeat(depth).into_iter().take(MAX_LEN).collect();
                b.splice(at..at, nested);
            }
            6 => {
                let at = rng.below(b.len() + 1);
                let token: &[u8] = if rng.chance(40) {
                    rng.pick(NUMBERS).as_bytes()
                } else {
                    rng.pick::<&[u8]>(TOKENS)
                };
                b.splice(at..at, token.iter().copied());
            }
            7 => replace_word(rng, b),
            8 => b.truncate(rng.below(b.len() + 1)),
            9 => {
                let other = &self.seeds[rng.below(self.seeds.len())].bytes;
                let cut = rng.below(b.len() + 1);
                let from = rng.below(other.len() + 1);
                b.truncate(cut);
                b.extend_from_slice(&other[from..]);
            }
            10 => write_integer(rng, b, hot),
            11 => replace_number(rng, b),
            _ => {
                // A range moved elsewhere.
                let (s, e) = span(rng, b.len());
                let chunk: Vec<u8> = b.drain(s..e).collect();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, chunk);
            }
        }
    }
}

/// Fully random input: any bytes, or printable text with tokens.
fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(4) {
        0 => rng.below(16),
        1 | 2 => rng.below(256),
        _ => rng.below(4096),
    };
    if rng.chance(50) {
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        if rng.chance(15) {
            out.extend_from_slice(rng.pick::<&[u8]>(TOKENS));
        } else if rng.chance(5) {
            out.extend_from_slice(rng.pick(NUMBERS).as_bytes());
        } else {
            out.push(*rng.pick(PRINTABLE));
        }
    }
    out
}

/// A non-empty range of `0..len`, most often short (empty when `len` is 0).
fn span(rng: &mut Rng, len: usize) -> (usize, usize) {
    if len == 0 {
        return (0, 0);
    }
    let max = *rng.pick(&[1, 4, 16, 64, 1024]);
    let n = 1 + rng.below(max.min(len));
    let s = rng.below(len - n + 1);
    (s, s + n)
}

/// Writes an interesting integer (1 to 8 bytes, either byte order) at a length field, in the header,
/// or anywhere; past the end, the input grows to hold it.
fn write_integer(rng: &mut Rng, b: &mut Vec<u8>, hot: &[usize]) {
    let width = *rng.pick(&[1usize, 2, 4, 4, 8, 8]);
    let value = match rng.below(10) {
        0..=6 => *rng.pick(BIG),
        7 => (b.len() as u64)
            .wrapping_add(rng.below(5) as u64)
            .wrapping_sub(2),
        8 => rng.next(),
        _ => rng.next() % 1024,
    };
    let mut field = value.to_le_bytes()[..width].to_vec();
    if rng.chance(40) {
        field.reverse();
    }
    let at = match rng.below(10) {
        0..=4 if !hot.is_empty() => *rng.pick(hot),
        0..=6 => rng.below(b.len().min(32) + 1),
        _ => rng.below(b.len() + 1),
    };
    if at + width > b.len() {
        b.resize(at + width, 0);
    }
    b[at..at + width].copy_from_slice(&field);
}

/// Replaces a word (a run of letters, digits and `_.+-`) by a token or a number.
fn replace_word(rng: &mut Rng, b: &mut Vec<u8>) {
    let runs = runs_of(b, |c| c.is_ascii_alphanumeric() || b"_.+-".contains(&c));
    let token: Vec<u8> = if rng.chance(50) {
        rng.pick(NUMBERS).as_bytes().to_vec()
    } else {
        rng.pick(TOKENS).to_vec()
    };
    if runs.is_empty() {
        b.extend_from_slice(&token);
    } else {
        let (s, e) = *rng.pick(&runs);
        b.splice(s..e, token);
    }
}

/// Replaces a number (a run of digits with its sign, point and exponent) by an interesting one.
fn replace_number(rng: &mut Rng, b: &mut Vec<u8>) {
    let runs: Vec<(usize, usize)> = runs_of(b, |c| c.is_ascii_digit() || b"+-.eE".contains(&c))
        .into_iter()
        .filter(|&(s, e)| b[s..e].iter().any(u8::is_ascii_digit))
        .collect();
    let number = rng.pick(NUMBERS).as_bytes().to_vec();
    if runs.is_empty() {
        let at = rng.below(b.len() + 1);
        b.splice(at..at, number);
    } else {
        let (s, e) = *rng.pick(&runs);
        b.splice(s..e, number);
    }
}

/// Maximal runs of bytes satisfying `f`, as ranges.
fn runs_of(b: &[u8], f: impl Fn(u8) -> bool) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, &c) in b.iter().enumerate() {
        match (f(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, b.len()));
    }
    runs
}

// ---------------------------------------------------------------------------------------------------
// JSON edits.

/// JSON pointers of every node of `v`.
fn json_paths(v: &Value, at: &mut String, out: &mut Vec<String>) {
    out.push(at.clone());
    let len = at.len();
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push('/');
                at.push_str(&i.to_string());
                json_paths(item, at, out);
                at.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                at.push('/');
                at.push_str(&k.replace('~', "~0").replace('/', "~1"));
                json_paths(item, at, out);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

fn json_value(rng: &mut Rng) -> Value {
    match rng.below(22) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(1),
        3 => json!(u64::MAX),
        4 => json!(i64::MIN),
        5 => json!(1e308),
        6 => json!(-1e308),
        7 => json!(5e-324),
        8 => json!(0.5),
        9 => json!(-0.0),
        10 => json!(""),
        11 => json!("x"),
        12 => Value::Null,
        13 => json!(true),
        14 => json!([]),
        15 => json!([[]]),
        16 => json!({}),
        17 => json!(2),
        18 => json!(1u64 << 32),
        19 => json!([1.0, 0.0]),
        20 => json!(usize::MAX as f64),
        _ => json!(4294967295u64),
    }
}

/// One edit of a JSON document: a value replaced (by an interesting one or another node), a number
/// nudged, an array shortened, lengthened or emptied, a key removed, added or renamed, a string
/// changed, a node wrapped in or taken out of an array.
fn mutate_json(rng: &mut Rng, v: &mut Value) {
    let mut paths = Vec::new();
    json_paths(v, &mut String::new(), &mut paths);
    let path = rng.pick(&paths).clone();
    let donor = v.pointer(rng.pick(&paths).as_str()).cloned();
    let Some(node) = v.pointer_mut(&path) else {
        return;
    };
    match rng.below(9) {
        0 | 1 => *node = json_value(rng),
        2 => {
            if let Some(d) = donor {
                *node = d;
            }
        }
        3 => {
            if let Some(u) = node.as_u64() {
                let nudged = match rng.below(5) {
                    0 => u.wrapping_add(1),
                    1 => u.saturating_sub(1),
                    2 => u.saturating_mul(2),
                    3 => u64::MAX - u,
                    _ => u.saturating_mul(1 << 20),
                };
                *node = json!(nudged);
            } else if let Some(x) = node.as_f64() {
                let nudged = match rng.below(5) {
                    0 => -x,
                    1 => x + 1.0,
                    2 => x * 1e300,
                    3 => x * 1e-300,
                    _ => x.round(),
                };
                *node = json!(nudged);
            } else {
                *node = json_value(rng);
            }
        }
        4 | 5 => match node {
            Value::Array(items) if !items.is_empty() => {
                let i = rng.below(items.len());
                match rng.below(6) {
                    0 => {
                        items.remove(i);
                    }
                    1 => {
                        let copy = items[i].clone();
                        items.insert(i, copy);
                    }
                    2 => items.clear(),
                    3 => items.truncate(1),
                    4 => {
                        let copy = items[i].clone();
                        let times = 1 + rng.below(300);
                        items.extend(std::iter::repeat_n(copy, times));
                    }
                    _ => {
                        let j = rng.below(items.len());
                        items.swap(i, j);
                    }
                }
            }
            Value::Object(map) if !map.is_empty() => {
                let keys: Vec<String> = map.keys().cloned().collect();
                let key = rng.pick(&keys).clone();
                match rng.below(3) {
                    0 => {
                        map.remove(&key);
                    }
                    1 => {
                        map.insert("bogus".into(), json_value(rng));
                    }
                    _ => {
                        if let Some(value) = map.remove(&key) {
                            let other = rng.pick(&keys).clone();
                            map.insert(other, value);
                        }
                    }
                }
            }
            _ => *node = json_value(rng),
        },
        6 => match node {
            Value::String(s) => match rng.below(5) {
                0 => s.clear(),
                1 => s.push('x'),
                2 => *s = s.repeat(1 + rng.below(64)),
                3 => s.insert(0, 'é'),
                _ => *s = format!("{s} {s}"),
            },
            _ => *node = json!(rng.pick(NUMBERS).to_string()),
        },
        7 => *node = Value::Array(vec![node.take()]),
        _ => {
            if let Value::Array(items) = node
                && let Some(first) = items.first().cloned()
            {
                *node = first;
            }
        }
    }
}

/// Replaces a node of `v` by the node at the same place in another seed (a model of another
/// covariance type or size, another run's state): each part valid, the whole inconsistent.
fn graft(rng: &mut Rng, v: &mut Value, mutator: &Mutator) {
    let other = &mutator.seeds[rng.below(mutator.seeds.len())].bytes;
    let Ok(other) = serde_json::from_slice::<Value>(other) else {
        return;
    };
    let mut paths = Vec::new();
    json_paths(v, &mut String::new(), &mut paths);
    let path = rng.pick(&paths);
    if let (Some(node), Some(donor)) = (v.pointer_mut(path), other.pointer(path)) {
        *node = donor.clone();
    }
}

/// A JSON seed edited: half the time as a document (then perhaps as bytes too), else as bytes.
fn json_input(rng: &mut Rng, mutator: &Mutator, i: usize) -> Vec<u8> {
    let seed = &mutator.seeds[i];
    if rng.chance(55)
        && let Ok(mut v) = serde_json::from_slice::<Value>(&seed.bytes)
    {
        for _ in 0..1 + rng.below(3) {
            if rng.chance(25) {
                graft(rng, &mut v, mutator);
            } else {
                mutate_json(rng, &mut v);
            }
        }
        let mut out = if rng.chance(30) {
            serde_json::to_vec_pretty(&v)
        } else {
            serde_json::to_vec(&v)
        }
        .unwrap_or_default();
        if rng.chance(20) {
            mutator.mutate(rng, &mut out, &[]);
        }
        return out;
    }
    mutator.mutated(rng, i)
}

// ---------------------------------------------------------------------------------------------------
// The run config.

const CONFIGS: [&str; 12] = [
    include_str!("../../../configs/gmm-diag.toml"),
    include_str!("../../../configs/gmm-full.toml"),
    include_str!("../../../configs/gmm-semisupervised.toml"),
    include_str!("../../../configs/gmm-spherical.toml"),
    include_str!("../../../configs/gmm-tied.toml"),
    include_str!("../../../configs/text-vae-mr.toml"),
    include_str!("../../../configs/text-vae-synthetic.toml"),
    include_str!("../../../configs/vae-digits-plateau.toml"),
    include_str!("../../../configs/vae-digits.toml"),
    include_str!("../../../configs/vae-linear-ppca.toml"),
    include_str!("../../../configs/vae-mnist.toml"),
    include_str!("../../../configs/vae-synthetic.toml"),
];

/// Values written into TOML lines, beside those of the configs.
#[rustfmt::skip]
const TOML_VALUES: &[&str] = &[
    "0", "1", "-1", "2", "-0", "0.0", "-0.0", "1.5", "1e-320", "1e308", "1e999", "nan", "+nan",
    "-nan", "inf", "-inf", "18446744073709551615", "9223372036854775807", "-9223372036854775808",
    "9223372036854775808", "4294967296", "65536", "true", "false", "\"\"", "\"x\"", "\"auto\"",
    "\"full\"", "\"../x.csv\"", "\"/\"", "\"\\u0000\"", "'''x'''", "[]", "[[]]", "[0]", "[1, 2]",
    "[0, 0]", "[-1]", "[1e308, 1e308]", "[[1.0, 0.0], [0.0, 1.0]]", "[[1.0, 2.0], [2.0, 1.0]]",
    "[[[1.0]]]", "[[[1.0, 0.0], [0.0, 1.0]]]", "[nan]", "[inf, 1]", "[18446744073709551615, 2]",
    "[4, 0, 4]", "{}", "{ threshold = 0.5 }", "{ stochastic = true }", "{ a = 1 }", "1979-05-27",
];

#[rustfmt::skip]
const TOML_HEADERS: &[&str] = &[
    "[gmm]", "[vae]", "[text]", "[data]", "[run]", "[data.synthetic]", "[data.binarize]",
    "[vae.train]", "[vae.encoder]", "[vae.decoder]", "[vae.prior]", "[text.generated]",
    "[text.train]", "[[gmm]]", "[[data]]", "[x]", "[]", "[a.b.c]",
];

#[rustfmt::skip]
const TOML_KEYS: &[&str] = &[
    "model", "seed", "precision", "backend", "bogus", "n_components", "path", "test_rows",
    "test_path", "labels_path", "checkpoint_every", "sizes", "means_init", "covariances_init",
    "precisions_init", "weights_init", "label_column", "columns", "delimiter", "header", "format",
    "scale", "binarize", "covariance_type", "batch_size", "shards", "latent", "hidden", "epochs",
    "max_steps",
];

/// Lines, keys, values and table headers of the configs, to recombine.
struct TomlPool {
    lines: Vec<String>,
    keys: Vec<String>,
    values: Vec<String>,
    headers: Vec<String>,
}

impl TomlPool {
    fn new(texts: &[&str]) -> Self {
        let mut pool = Self {
            lines: Vec::new(),
            keys: TOML_KEYS.iter().map(|s| s.to_string()).collect(),
            values: TOML_VALUES.iter().map(|s| s.to_string()).collect(),
            headers: TOML_HEADERS.iter().map(|s| s.to_string()).collect(),
        };
        for text in texts {
            for line in text.lines() {
                let trimmed = line.trim();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                pool.lines.push(line.to_string());
                if trimmed.starts_with('[') {
                    pool.headers.push(trimmed.to_string());
                } else if let Some((k, v)) = trimmed.split_once('=') {
                    pool.keys.push(k.trim().to_string());
                    let v = v.split(" #").next().unwrap_or(v).trim();
                    pool.values.push(v.to_string());
                }
            }
        }
        pool
    }
}

/// One edit of a TOML text that knows its lines: a value or key replaced, a line inserted, deleted,
/// duplicated or moved, a table header inserted.
fn toml_edit(rng: &mut Rng, text: &[u8], pool: &TomlPool) -> Vec<u8> {
    let text = String::from_utf8_lossy(text);
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let assignments: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains('=') && !lines[i].trim_start().starts_with('#'))
        .collect();
    let at = rng.below(lines.len() + 1);
    match rng.below(9) {
        0..=2 => {
            let value = rng.pick(&pool.values).clone();
            if assignments.is_empty() {
                lines.insert(at, format!("{} = {value}", rng.pick(&pool.keys)));
            } else {
                let i = *rng.pick(&assignments);
                let key = lines[i].split('=').next().unwrap_or("").trim().to_string();
                lines[i] = format!("{key} = {value}");
            }
        }
        3 => {
            if !assignments.is_empty() {
                let i = *rng.pick(&assignments);
                let value = lines[i].split_once('=').map_or("", |(_, v)| v).to_string();
                lines[i] = format!("{} ={value}", rng.pick(&pool.keys));
            }
        }
        4 => {
            let line = match rng.below(2) {
                0 => rng.pick(&pool.lines).clone(),
                _ => format!("{} = {}", rng.pick(&pool.keys), rng.pick(&pool.values)),
            };
            lines.insert(at, line);
        }
        5 => {
            if !lines.is_empty() {
                lines.remove(rng.below(lines.len()));
            }
        }
        6 => {
            if !lines.is_empty() {
                let line = lines[rng.below(lines.len())].clone();
                lines.insert(at, line);
            }
        }
        7 => lines.insert(at, rng.pick(&pool.headers).clone()),
        _ => {
            if !lines.is_empty() {
                let line = lines.remove(rng.below(lines.len()));
                let to = rng.below(lines.len() + 1);
                lines.insert(to, line);
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out.into_bytes()
}

/// `LoadedConfig::load` (read, parse, check) on a config file, then the resolved TOML a run writes.
struct ConfigTarget {
    path: PathBuf,
    mutator: Mutator,
    pool: TomlPool,
}

impl ConfigTarget {
    fn new(scratch: &Path) -> Self {
        let mut seeds: Vec<Seed> = CONFIGS.iter().map(|t| Seed::text(*t)).collect();
        // Minimal configs of each model, and one with every [data] key.
        seeds.push(Seed::text(
            "model = \"gmm\"\n[data]\npath = \"x.csv\"\n[gmm]\nn_components = 2\n",
        ));
        seeds.push(Seed::text(
            "model = \"gmm\"\n[data]\npath = \"x.npy\"\nformat = \"npy\"\ndelimiter = \";\"\nheader = true\n\
             columns = [0, \"b\"]\nlabels_path = \"y.npy\"\nscale = 255.0\n[gmm]\nn_components = 2\n\
             covariance_type = \"tied\"\nweights_init = [0.5, 0.5]\nmeans_init = [[0.0], [1.0]]\n\
             covariances_init = [[1.0]]\n[run]\ncheckpoint_every = 2\n",
        ));
        seeds.push(Seed::text(
            "model = \"vae\"\n[data]\npath = \"x.csv\"\ntest_rows = 10\nbinarize = { threshold = 0.5 }\n\
             [vae.encoder]\nsizes = [4, 8, 2]\n[vae.decoder]\nsizes = [2, 8, 4]\n[vae.likelihood]\n\
             kind = \"bernoulli\"\n",
        ));
        seeds.push(Seed::text(
            "model = \"text\"\n[data]\npath = \"corpus.txt\"\n[text]\nlatent = 4\n",
        ));
        let pool = TomlPool::new(
            &seeds
                .iter()
                .map(|s| std::str::from_utf8(&s.bytes).unwrap_or(""))
                .collect::<Vec<_>>(),
        );
        Self {
            path: scratch.join("config.toml"),
            mutator: Mutator::new(seeds, false),
            pool,
        }
    }
}

impl Target for ConfigTarget {
    fn name(&self) -> &'static str {
        "config"
    }

    fn generate(&self, rng: &mut Rng) -> Case {
        let i = rng.below(self.mutator.seeds.len());
        let bytes = if rng.chance(65) {
            let mut text = self.mutator.seeds[i].bytes.clone();
            for _ in 0..1 + rng.below(4) {
                text = toml_edit(rng, &text, &self.pool);
            }
            if rng.chance(25) {
                self.mutator.mutate(rng, &mut text, &[]);
            }
            text
        } else {
            self.mutator.mutated(rng, i)
        };
        Case { bytes, variant: 0 }
    }

    fn run(&mut self, case: &Case) -> CliResult<Verdict> {
        write_scratch(&self.path, &case.bytes)?;
        Ok(LoadedConfig::load(&self.path, &Overrides::default())
            .and_then(|loaded| loaded.resolved_toml())
            .map(|_| ())
            .map_err(|e| e.to_string()))
    }

    fn describe(&self, _: usize) -> String {
        "LoadedConfig::load of a config file".into()
    }
}

// ---------------------------------------------------------------------------------------------------
// Data files.

#[derive(Clone, Copy, PartialEq)]
enum DataFormat {
    Csv,
    Npy,
    Idx,
}

/// The CSV, NPY and IDX readers: in memory, through `data::load` on a file (gzipped or not), and (NPY,
/// IDX) as a label file.
struct DataTarget {
    format: DataFormat,
    mutator: Mutator,
    /// The file of the path-based variants (its name announces the format).
    path: PathBuf,
}

/// Variants of the CSV target: the reader's options.
const CSV_VARIANTS: usize = 10;

fn csv_options(variant: usize) -> CsvOptions {
    let mut o = CsvOptions::default();
    match variant {
        1 => o.header = HeaderMode::Present,
        2 => o.header = HeaderMode::Absent,
        3 => o.label_column = Some(ColumnRef::Index(0)),
        4 => o.label_column = Some(ColumnRef::Name("label".into())),
        5 => {
            o.header = HeaderMode::Present;
            o.columns = Some(vec![ColumnRef::Index(0), ColumnRef::Name("y".into())]);
        }
        6 => {
            o.delimiter = Delimiter::Whitespace;
            o.label_column = Some(ColumnRef::Index(2));
        }
        7 => o.delimiter = Delimiter::Char(b';'),
        8 => {
            o.label_column = Some(ColumnRef::Name("label".into()));
            o.optional_label = true;
        }
        _ => {}
    }
    o
}

impl DataTarget {
    fn new(format: DataFormat, scratch: &Path) -> Self {
        let (seeds, binary, name) = match format {
            DataFormat::Csv => (csv_seeds(), false, "data.csv"),
            DataFormat::Npy => (npy_seeds(), true, "data.npy"),
            DataFormat::Idx => (idx_seeds(), true, "data-idx3-ubyte"),
        };
        Self {
            format,
            mutator: Mutator::new(seeds, binary),
            path: scratch.join(name),
        }
    }

    /// Whether `variant` reads through a file (whose bytes may be gzipped).
    fn through_file(&self, variant: usize) -> bool {
        match self.format {
            DataFormat::Csv => variant == CSV_VARIANTS - 1,
            _ => variant > 0,
        }
    }
}

impl Target for DataTarget {
    fn name(&self) -> &'static str {
        match self.format {
            DataFormat::Csv => "csv",
            DataFormat::Npy => "npy",
            DataFormat::Idx => "idx",
        }
    }

    fn generate(&self, rng: &mut Rng) -> Case {
        let variant = match self.format {
            DataFormat::Csv => rng.below(CSV_VARIANTS),
            _ => [0, 0, 0, 0, 1, 1, 2][rng.below(7)],
        };
        let structured = rng.chance(if self.format == DataFormat::Csv {
            25
        } else {
            35
        });
        let mut bytes = match (structured, self.format) {
            (true, DataFormat::Csv) => csv_structured(rng),
            (true, DataFormat::Npy) => npy_structured(rng),
            (true, DataFormat::Idx) => idx_structured(rng),
            (false, _) => self.mutator.input(rng).0,
        };
        if structured && rng.chance(30) {
            self.mutator.mutate(rng, &mut bytes, &[]);
        }
        if self.through_file(variant) && rng.chance(50) {
            bytes = gzip_stored(&bytes);
            if rng.chance(25) {
                let hot = [4, 10, bytes.len().saturating_sub(4)];
                self.mutator.mutate(rng, &mut bytes, &hot);
            }
        }
        Case { bytes, variant }
    }

    fn run(&mut self, case: &Case) -> CliResult<Verdict> {
        let name = Path::new("fuzz-input");
        let matrix = if self.through_file(case.variant) {
            write_scratch(&self.path, &case.bytes)?;
            let labels = self.format != DataFormat::Csv && case.variant == 2;
            if labels {
                return Ok(data::load_labels(&self.path, Format::Auto)
                    .map(|l| {
                        std::hint::black_box(l.iter().flatten().sum::<usize>());
                    })
                    .map_err(|e| e.to_string()));
            }
            data::load(&self.path, Format::Auto, &CsvOptions::default()).map(|d| d.x)
        } else {
            match self.format {
                DataFormat::Csv => data::read_csv(name, &case.bytes, &csv_options(case.variant))
                    .map(|d| {
                        use_dataset(&d);
                        d.x
                    }),
                DataFormat::Npy => data::read_npy(name, &case.bytes),
                DataFormat::Idx => data::read_idx(name, &case.bytes),
            }
        };
        Ok(matrix.map(|m| use_matrix(&m)).map_err(|e| e.to_string()))
    }

    fn describe(&self, variant: usize) -> String {
        match (self.format, variant) {
            (DataFormat::Csv, v) if v == CSV_VARIANTS - 1 => {
                "data::load of a .csv file, gzipped or not".into()
            }
            (DataFormat::Csv, v) => format!("read_csv with {:?}", csv_options(v)),
            (f, 0) => format!(
                "read_{} in memory",
                if f == DataFormat::Npy { "npy" } else { "idx" }
            ),
            (_, 1) => format!(
                "data::load of {}, gzipped or not",
                self.path.file_name().unwrap_or_default().to_string_lossy()
            ),
            _ => format!(
                "data::load_labels of {}, gzipped or not",
                self.path.file_name().unwrap_or_default().to_string_lossy()
            ),
        }
    }
}

/// Reads every row of an accepted matrix, as a command would.
fn use_matrix(m: &Matrix) {
    let mut sum = 0.0;
    for r in m.rows() {
        sum += r.iter().sum::<f64>();
    }
    if m.n_rows > 0 {
        sum += m.row(m.n_rows - 1).iter().sum::<f64>();
    }
    std::hint::black_box(sum);
}

fn use_dataset(d: &Dataset) {
    if let Some(labels) = &d.labels {
        std::hint::black_box(labels.len() == d.n_rows());
    }
    if let Some(i) = d.n_rows().checked_sub(1) {
        std::hint::black_box(d.row_error(i, "x"));
    }
}

fn csv_seeds() -> Vec<Seed> {
    [
        "x,y,label\n1,2,0\n3,4,1\n5.5,-6e-3,\n",
        "a,b\n1,2\n3,4\n",
        "1 2 3\n4 5 6\n",
        "# comment\n1\t2\n3\t4\n\n",
        "a;b;c\n1;2;3\n4;5;6\n",
        "\"a\",\"b\"\n\"1\",\"2\"\n\"3\",\"4\"\n",
        "x,label,y\r\n0.5,NA,1\r\n1.5,?,2\r\n2.5,-1,3\r\n",
        "1e5|2E-3\n-0|+7\n",
        "label\n0\n1\n2\n",
        "x,y\n1,2\n3\n",
        "x y label\n1 2 0\n3 4 1\n",
        "\u{feff}x,y\n1,2\n",
    ]
    .into_iter()
    .map(Seed::text)
    .collect()
}

/// A generated delimited file: a header or not, rows of numbers and odd cells; now and then very wide
/// (tens of thousands of uniquely named columns).
fn csv_structured(rng: &mut Rng) -> Vec<u8> {
    const CELLS: &[&str] = &[
        "1",
        "-2.5",
        "1e5",
        "0",
        "nan",
        "inf",
        "",
        "NA",
        "?",
        "x",
        "1e999",
        "-0",
        "-1",
        "3",
        "0.5",
        "18446744073709551615",
        "4294967296",
        "\"1\"",
        "\"a,b\"",
        " 7 ",
    ];
    const NAMES: &[&str] = &["x", "y", "label", "", "a b", "\"q\"", "é"];
    let wide = rng.chance(1);
    let cols = if wide {
        rng.range(1_000, 150_000)
    } else {
        rng.range(1, 12)
    };
    let rows = if wide {
        rng.range(1, 2)
    } else {
        rng.range(0, 6)
    };
    let delimiter = *rng.pick(&[",", ",", "\t", ";", "|", " ", "  "]);
    let newline = if rng.chance(20) { "\r\n" } else { "\n" };
    let mut out = String::new();
    if rng.chance(60) {
        let names: Vec<String> = (0..cols)
            .map(|i| match rng.below(10) {
                0 if !wide => rng.pick(NAMES).to_string(),
                _ => format!("c{i}"),
            })
            .collect();
        out.push_str(&names.join(delimiter));
        out.push_str(newline);
    }
    for _ in 0..rows {
        let n = if rng.chance(90) {
            cols
        } else {
            rng.range(1, cols + 1)
        };
        let cells: Vec<String> = (0..n)
            .map(|_| match rng.below(4) {
                0 => rng.pick(CELLS).to_string(),
                _ => format!("{}", (rng.next() % 1000) as f64 / 8.0 - 50.0),
            })
            .collect();
        out.push_str(&cells.join(delimiter));
        out.push_str(newline);
    }
    out.into_bytes()
}

/// A version-`version` `.npy` file.
fn npy_file(descr: &str, shape: &str, fortran: bool, data: &[u8], version: u8) -> Seed {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    let preamble = if version == 1 { 10 } else { 12 };
    while (preamble + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY".to_vec();
    bytes.extend_from_slice(&[version, 0]);
    if version == 1 {
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    bytes.extend_from_slice(header.as_bytes());
    // The shape's numbers, where large dimensions are written.
    let shape_at = bytes
        .windows(8)
        .position(|w| w == b"'shape':")
        .map_or(preamble, |p| p + 10);
    bytes.extend_from_slice(data);
    Seed {
        bytes,
        hot: vec![6, 8, shape_at],
    }
}

fn npy_seeds() -> Vec<Seed> {
    let f8: Vec<u8> = (1..=6).flat_map(|v| (v as f64).to_le_bytes()).collect();
    let f4: Vec<u8> = [0.5f32, -1.0, 2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let i4: Vec<u8> = [1i32, -2, 3, 4]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    vec![
        npy_file("<f8", "(2, 3)", false, &f8, 1),
        npy_file("<f4", "(3,)", false, &f4, 1),
        npy_file("|u1", "(2, 2, 2)", false, &[0, 1, 2, 3, 4, 5, 6, 255], 1),
        npy_file(">i4", "(2, 2)", true, &i4, 1),
        npy_file("<i8", "(1, 1)", false, &7i64.to_le_bytes(), 2),
        npy_file("|b1", "(4,)", false, &[0, 1, 1, 0], 3),
        npy_file("<u2", "(2, 1)", false, &[1, 0, 2, 0], 1),
        npy_file("<f8", "()", false, &2.5f64.to_le_bytes(), 1),
        npy_file("<f8", "(3, 2)", true, &f8, 1),
    ]
}

/// A generated `.npy` file: any dtype (numeric, not, not ASCII), any shape (huge, zero, not numbers),
/// any version and header length, data of the size the header implies or not.
fn npy_structured(rng: &mut Rng) -> Vec<u8> {
    #[rustfmt::skip]
    const DESCRS: &[&str] = &[
        "<f8", "<f4", ">f8", ">f4", "|u1", "|i1", "<i2", ">i2", "<i4", "<i8", "<u2", "<u4", "<u8",
        "|b1", "=f8", "<f2", "<c8", "<U8", "|O", "f8", "<f", "<", "", "é8", "<é", "\u{e9}",
        "<f18446744073709551615", "<f0", "<i16", "<u1\u{301}", ">é4",
    ];
    let descr = *rng.pick(DESCRS);
    let ndim = rng.below(5);
    let dims: Vec<String> = (0..ndim)
        .map(|_| match rng.below(6) {
            0..=2 => rng.below(5).to_string(),
            3 | 4 => rng.pick(BIG).to_string(),
            _ => rng
                .pick(&["-1", "18446744073709551616", "1.5", "x", "", " 2", "1e3"])
                .to_string(),
        })
        .collect();
    let shape = match ndim {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let fortran = *rng.pick(&["False", "True", "0", "", "Tru"]);
    let header = match rng.below(6) {
        0 => format!("{{'shape': {shape}, 'descr': '{descr}', 'fortran_order': {fortran}}}"),
        1 => format!("{{'descr': '{descr}', 'shape': {shape}}}"),
        2 => format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}"),
        _ => format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}"),
    };
    let version = *rng.pick(&[1u8, 1, 1, 2, 3, 0, 4]);
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    let len = if rng.chance(85) {
        header.len() as u64
    } else {
        *rng.pick(BIG)
    };
    if version == 1 || (version != 2 && version != 3 && rng.chance(50)) {
        out.extend_from_slice(&(len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(len as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    let elem: usize = descr
        .trim_start_matches(['<', '>', '|', '='])
        .get(1..)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let count = dims
        .iter()
        .map(|d| d.trim().parse::<usize>().unwrap_or(1))
        .try_fold(1usize, |a, d| a.checked_mul(d))
        .filter(|&c| c.saturating_mul(elem) <= 4096);
    let size = match count {
        Some(c) if rng.chance(80) => {
            (c * elem.min(16)).saturating_add_signed(rng.below(3) as isize - 1)
        }
        _ => rng.below(64),
    };
    out.extend((0..size).map(|_| rng.next() as u8));
    out
}

fn idx_file(code: u8, dims: &[u32], data: &[u8]) -> Seed {
    let mut bytes = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    Seed {
        bytes,
        hot: vec![2, 3, 4, 8, 12, 16],
    }
}

fn idx_seeds() -> Vec<Seed> {
    let f4: Vec<u8> = [0.5f32, 1.5].iter().flat_map(|v| v.to_be_bytes()).collect();
    vec![
        idx_file(0x08, &[2, 2], &[0, 1, 2, 3]),
        idx_file(0x08, &[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 255]),
        idx_file(0x08, &[3], &[1, 2, 3]),
        idx_file(0x09, &[2], &[0xFF, 5]),
        idx_file(0x0B, &[2], &[0, 1, 0xFF, 0xFE]),
        idx_file(0x0C, &[1, 2], &[0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF]),
        idx_file(0x0D, &[2], &f4),
        idx_file(0x0E, &[1], &1.25f64.to_be_bytes()),
    ]
}

/// A generated IDX file: any type code, rank and dimensions (zero, huge), data of the implied size or
/// not.
fn idx_structured(rng: &mut Rng) -> Vec<u8> {
    let code = *rng.pick(&[0x08u8, 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x0A, 0xFF]);
    let ndim = *rng.pick(&[1usize, 1, 2, 2, 3, 4, 0, 5, 255]);
    let dims: Vec<u32> = (0..ndim.min(8))
        .map(|_| match rng.below(5) {
            0..=2 => rng.below(5) as u32,
            _ => *rng.pick(BIG) as u32,
        })
        .collect();
    let mut out = vec![0, 0, code, ndim as u8];
    for d in &dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    let elem = match code {
        0x0B => 2,
        0x0C | 0x0D => 4,
        0x0E => 8,
        _ => 1,
    };
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d as usize))
        .filter(|&c| c <= 4096);
    let size = match count {
        Some(c) if rng.chance(80) => (c * elem).saturating_add_signed(rng.below(3) as isize - 1),
        _ => rng.below(64),
    };
    out.extend((0..size).map(|_| rng.next() as u8));
    out
}

/// `data` as a gzip member of stored (uncompressed) deflate blocks.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    if data.is_empty() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    let mut blocks = data.chunks(0xFFFF).peekable();
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

// ---------------------------------------------------------------------------------------------------
// Gaussian mixtures.

/// Small data for the mixture targets: 30 rows, 2 features, some rows labelled.
fn gmm_data() -> Dataset {
    SyntheticMixture {
        n_samples: 30,
        n_features: 2,
        n_components: 2,
        separation: 4.0,
        label_fraction: 0.3,
        seed: 1,
    }
    .generate()
    .data
}

fn host_compute() -> Compute {
    Compute::new(Device::flex(), Precision::F64)
}

fn fit_error(e: impl std::fmt::Display) -> CliError {
    CliError::runtime(format!("fuzz: cannot build the mixture seeds: {e}"))
}

/// model.json: `GaussianMixtureJson` then `GaussianMixture::try_from`; an accepted model scores rows,
/// predicts and samples.
struct GmmModelTarget {
    mutator: Mutator,
    compute: Compute,
}

impl GmmModelTarget {
    fn new() -> CliResult<Self> {
        let data = gmm_data();
        let compute = host_compute();
        let mut seeds = Vec::new();
        for c in CovarianceType::ALL {
            for k in [2, 3] {
                let model = GmmParams::new(k)
                    .covariance_type(c)
                    .max_iter(10)
                    .check()
                    .map_err(fit_error)?
                    .fit(&data, &compute)
                    .map_err(fit_error)?;
                let json = serde_json::to_vec_pretty(&GaussianMixtureJson::from(&model))
                    .map_err(fit_error)?;
                seeds.push(Seed {
                    bytes: json,
                    hot: Vec::new(),
                });
            }
        }
        Ok(Self {
            mutator: Mutator::new(seeds, false),
            compute,
        })
    }
}

impl Target for GmmModelTarget {
    fn name(&self) -> &'static str {
        "gmm-model"
    }

    fn generate(&self, rng: &mut Rng) -> Case {
        let i = rng.below(self.mutator.seeds.len());
        Case {
            bytes: json_input(rng, &self.mutator, i),
            variant: 0,
        }
    }

    fn run(&mut self, case: &Case) -> CliResult<Verdict> {
        let json: GaussianMixtureJson = match serde_json::from_slice(&case.bytes) {
            Ok(j) => j,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let model = match GaussianMixture::try_from(json) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e.to_string())),
        };
        // Used as eval, predict and sample use it (their errors are not the loader's).
        let d = model.n_features();
        let x = Matrix::new(
            3,
            d,
            (0..3 * d).map(|i| (i % 7) as f64 * 0.5 - 1.5).collect(),
        );
        let _ = std::hint::black_box(model.score(&x, &self.compute));
        let _ = std::hint::black_box(model.predict(&x, &self.compute));
        let _ = std::hint::black_box(model.sample(4, 0));
        std::hint::black_box(model.warnings(&x));
        Ok(Ok(()))
    }

    fn describe(&self, _: usize) -> String {
        "GaussianMixture::try_from of a model.json, then score, predict and sample".into()
    }
}

/// Keeps every checkpoint of a fit, as the file `train` writes.
struct Capture(Vec<Vec<u8>>);

impl EmObserver for Capture {
    fn on_iteration(
        &mut self,
        _: &IterationRecord,
        checkpoint: &GmmCheckpoint,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.push(serde_json::to_vec_pretty(checkpoint)?);
        Ok(())
    }
}

/// checkpoint.json: `GmmCheckpoint` then the fit resumed from it (`fit_with`), as `train --resume`.
struct GmmCheckpointTarget {
    mutator: Mutator,
    /// The hyper-parameters each seed was written with (by seed index).
    params: Vec<GmmValidParams>,
    seed_params: Vec<usize>,
    data: Dataset,
    compute: Compute,
}

impl GmmCheckpointTarget {
    fn new() -> CliResult<Self> {
        let data = gmm_data();
        let compute = host_compute();
        let (mut seeds, mut params, mut seed_params) = (Vec::new(), Vec::new(), Vec::new());
        for (c, k) in CovarianceType::ALL
            .into_iter()
            .flat_map(|c| [(c, 2), (c, 3)])
        {
            let valid = GmmParams::new(k)
                .covariance_type(c)
                .tol(0.0)
                .max_iter(3)
                .n_init(2)
                .check()
                .map_err(fit_error)?;
            let mut capture = Capture(Vec::new());
            valid
                .fit_with(&data, &compute, &mut capture, None)
                .map_err(fit_error)?;
            for bytes in capture.0 {
                seeds.push(Seed {
                    bytes,
                    hot: Vec::new(),
                });
                seed_params.push(params.len());
            }
            params.push(valid);
        }
        Ok(Self {
            mutator: Mutator::new(seeds, false),
            params,
            seed_params,
            data,
            compute,
        })
    }
}

impl Target for GmmCheckpointTarget {
    fn name(&self) -> &'static str {
        "gmm-checkpoint"
    }

    fn generate(&self, rng: &mut Rng) -> Case {
        let i = rng.below(self.mutator.seeds.len());
        Case {
            bytes: json_input(rng, &self.mutator, i),
            variant: self.seed_params[i],
        }
    }

    fn run(&mut self, case: &Case) -> CliResult<Verdict> {
        let checkpoint: GmmCheckpoint = match serde_json::from_slice(&case.bytes) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let params = &self.params[case.variant];
        Ok(params
            .fit_with(&self.data, &self.compute, &mut (), Some(checkpoint))
            .map(|model| {
                std::hint::black_box(model.warnings(&self.data.x));
            })
            .map_err(|e| e.to_string()))
    }

    fn describe(&self, variant: usize) -> String {
        let p = &self.params[variant];
        format!(
            "fit_with resuming a {}-component {} mixture from a checkpoint.json",
            p.n_components(),
            p.covariance_type()
        )
    }
}

// ---------------------------------------------------------------------------------------------------
// VAE checkpoints.

/// The checkpoint's checksum (FNV-1a over 8-byte words, then the remaining bytes), as `train` writes it.
fn container_checksum(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        h ^= u64::from_le_bytes(word);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    for &b in words.remainder() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes.get(at..at.checked_add(8)?)?);
    Some(u64::from_le_bytes(word))
}

/// The three parts (state, model, optimiser) of a checkpoint: tag, then each part after its u64
/// length, then the checksum.
fn container_parts(bytes: &[u8]) -> Option<[Vec<u8>; 3]> {
    let mut at = 8;
    let mut parts = Vec::new();
    for _ in 0..3 {
        let len = read_u64(bytes, at)? as usize;
        at += 8;
        parts.push(bytes.get(at..at.checked_add(len)?)?.to_vec());
        at += len;
    }
    parts.try_into().ok()
}

/// Offsets of the Adam state's count, presence bytes, update counts and lengths.
fn adam_fields(bytes: &[u8]) -> Vec<usize> {
    let mut hot = vec![8];
    let count = read_u64(bytes, 8).unwrap_or(0);
    let mut at = 16;
    for _ in 0..count.min(64) {
        hot.push(at);
        if bytes.get(at) != Some(&1) {
            at += 1;
            continue;
        }
        hot.extend([at + 1, at + 9]);
        let len = read_u64(bytes, at + 9).unwrap_or(0) as usize;
        at += 17 + 8 * len;
    }
    hot
}

/// Tag, parts with `lengths` (their own unless edited) and the checksum of all that.
fn assemble(tag: &[u8], parts: &[Vec<u8>; 3], lengths: [u64; 3]) -> Vec<u8> {
    let mut out = tag.to_vec();
    for (part, len) in parts.iter().zip(lengths) {
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(part);
    }
    let sum = container_checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// `Trainer::resume` on checkpoint bytes (a resumed run then takes a step), `Adam::from_bytes` on
/// optimiser states and `load_model` on model records, for an amortized and a non-amortized tiny VAE.
struct VaeCheckpointTarget {
    configs: Vec<VaeConfig>,
    data: VaeData,
    device: Device,
    /// Trained models by config: what optimiser states are restored for.
    models: Vec<Vae>,
    /// Config of each checkpoint seed.
    seed_config: Vec<usize>,
    containers: Mutator,
    metas: Mutator,
    records: Mutator,
    optimisers: Mutator,
}

const VAE_CONFIG: &str = "[encoder]\nsizes = [4, 8, 2]\n[decoder]\nsizes = [2, 8, 4]\n[likelihood]\n\
                          kind = \"bernoulli\"\n[train]\nbatch_size = 4\nepochs = 3\n[eval]\nevery = 1000\n\
                          iw_samples = 2\nfinal_iw_samples = 2\n";

impl VaeCheckpointTarget {
    fn new() -> CliResult<Self> {
        let fail = |e: &dyn std::fmt::Display| {
            CliError::runtime(format!("fuzz: cannot build the VAE checkpoint seeds: {e}"))
        };
        let configs: Vec<VaeConfig> = [
            VAE_CONFIG.to_string(),
            format!("{VAE_CONFIG}[estep]\nstrategy = \"non_amortized\"\n"),
        ]
        .iter()
        .map(|t| toml::from_str(t).map_err(|e| fail(&e)))
        .collect::<CliResult<_>>()?;
        let values: Vec<f64> = (0..48).map(|i| ((i * 7) % 3 == 0) as u8 as f64).collect();
        let data = VaeData::new(&Matrix::new(12, 4, values), Binarization::None);
        let device = Device::flex().autodiff();
        let (mut containers, mut metas, mut records, mut optimisers) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut models, mut seed_config) = (Vec::new(), Vec::new());
        for (c, config) in configs.iter().enumerate() {
            let mut trainer = Trainer::new(config.clone(), 0, device.clone(), data.clone(), None)
                .map_err(|e| fail(&e))?;
            for steps in [0, 2, 1] {
                trainer.run(&mut (), Some(steps)).map_err(|e| fail(&e))?;
                let bytes = trainer.checkpoint_bytes().map_err(|e| fail(&e))?;
                let [meta, record, optimiser] = container_parts(&bytes)
                    .ok_or_else(|| fail(&"a checkpoint without three parts"))?;
                let lengths = [meta.len(), record.len()];
                let hot = vec![8, 16 + lengths[0], 24 + lengths[0] + lengths[1]];
                containers.push(Seed { bytes, hot });
                metas.push(Seed::text(String::from_utf8_lossy(&meta)));
                records.push(Seed {
                    bytes: record,
                    hot: vec![0, 4, 6],
                });
                optimisers.push(Seed {
                    hot: adam_fields(&optimiser),
                    bytes: optimiser,
                });
                seed_config.push(c);
            }
            models.push(trainer.model.clone());
        }
        Ok(Self {
            configs,
            data,
            device,
            models,
            seed_config,
            containers: Mutator::new(containers, true),
            metas: Mutator::new(metas, false),
            records: Mutator::new(records, true),
            optimisers: Mutator::new(optimisers, true),
        })
    }

    /// Checkpoint bytes from seed `k`: parts edited and reassembled with their checksum (so that the
    /// checks behind it are reached), or the whole file edited, its checksum recomputed or not.
    fn checkpoint(&self, rng: &mut Rng, k: usize) -> Vec<u8> {
        let seed = &self.containers.seeds[k].bytes;
        let tag = &seed[..8];
        if rng.chance(30) {
            let mut bytes = self.containers.mutated(rng, k);
            if rng.chance(60) && bytes.len() >= 8 {
                let n = bytes.len() - 8;
                let sum = container_checksum(&bytes[..n]);
                bytes[n..].copy_from_slice(&sum.to_le_bytes());
            }
            return bytes;
        }
        let mut parts = [
            self.metas.seeds[k].bytes.clone(),
            self.records.seeds[k].bytes.clone(),
            self.optimisers.seeds[k].bytes.clone(),
        ];
        for _ in 0..1 + rng.below(2) {
            match rng.below(5) {
                0..=2 => parts[0] = json_input(rng, &self.metas, k),
                3 => parts[1] = self.records.mutated(rng, k),
                _ => parts[2] = self.optimisers.mutated(rng, k),
            }
        }
        if rng.chance(10) {
            let other = rng.below(self.containers.seeds.len());
            let p = rng.below(3);
            parts[p] = [&self.metas, &self.records, &self.optimisers][p].seeds[other]
                .bytes
                .clone();
        }
        let mut lengths = parts.each_ref().map(|p| p.len() as u64);
        if rng.chance(10) {
            lengths[rng.below(3)] = *rng.pick(BIG);
        }
        assemble(tag, &parts, lengths)
    }
}

impl Target for VaeCheckpointTarget {
    fn name(&self) -> &'static str {
        "vae-checkpoint"
    }

    fn generate(&self, rng: &mut Rng) -> Case {
        let k = rng.below(self.containers.seeds.len());
        let entry = match rng.below(10) {
            0..=5 => 0,
            6 | 7 => 1,
            _ => 2,
        };
        let bytes = match entry {
            0 => self.checkpoint(rng, k),
            1 => self.optimisers.mutated(rng, k),
            _ => self.records.mutated(rng, k),
        };
        Case {
            bytes,
            variant: entry * 2 + self.seed_config[k],
        }
    }

    fn run(&mut self, case: &Case) -> CliResult<Verdict> {
        let config = &self.configs[case.variant % 2];
        Ok(match case.variant / 2 {
            0 => Trainer::resume(
                config.clone(),
                0,
                self.device.clone(),
                self.data.clone(),
                None,
                &case.bytes,
            )
            .map_err(|e| e.to_string())
            .map(|mut trainer| {
                // A resumed run continues: one step (its errors, such as a divergence, are not the
                // loader's).
                let _ = trainer.run(&mut (), Some(1));
            }),
            1 => Adam::from_bytes(&config.train, &case.bytes, &self.models[case.variant % 2])
                .map(|_| ()),
            _ => load_model(Vae::new(config, 0, &self.device), &case.bytes)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        })
    }

    fn describe(&self, variant: usize) -> String {
        let strategy = if variant.is_multiple_of(2) {
            "amortized"
        } else {
            "non-amortized"
        };
        match variant / 2 {
            0 => format!("Trainer::resume of an {strategy} VAE's checkpoint, then one step"),
            1 => format!("Adam::from_bytes for an {strategy} VAE"),
            _ => "load_model of a VAE's model record".into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The vocabulary.

/// The vocabulary file's checksum of its tokens (FNV-1a over each token and a 0xFF byte).
fn vocab_checksum(tokens: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in tokens {
        for &b in t.as_bytes().iter().chain(&[0xFF]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("fnv1a64:{h:016x}")
}

/// `Vocab::from_json_bytes` on vocab.json files; an accepted vocabulary encodes and decodes.
struct VocabTarget {
    mutator: Mutator,
}

impl VocabTarget {
    fn new() -> Self {
        let corpora: [&[&str]; 3] = [
            &["the cat sat", "a dog ran fast", "the dog sat"],
            &["é ü 𝄞 naïve", "<unk> x y z", "x x y"],
            &["one"],
        ];
        let seeds = corpora
            .iter()
            .map(|lines| {
                let sentences: Vec<Vec<String>> = lines
                    .iter()
                    .map(|l| l.split_whitespace().map(String::from).collect())
                    .collect();
                Seed {
                    bytes: Vocab::build(&sentences, None, 1).to_json_bytes(),
                    hot: Vec::new(),
                }
            })
            .collect();
        Self {
            mutator: Mutator::new(seeds, false),
        }
    }
}

impl Target for VocabTarget {
    fn name(&self) -> &'static str {
        "vocab"
    }

    fn generate(&self, rng: &mut Rng) -> Case {
        let i = rng.below(self.mutator.seeds.len());
        let mut bytes = json_input(rng, &self.mutator, i);
        // Most edited files get a checksum that matches their tokens, so the checks behind it run.
        if rng.chance(70)
            && let Ok(mut v) = serde_json::from_slice::<Value>(&bytes)
            && let Some(tokens) = v.get("tokens").and_then(Value::as_array)
            && let Some(tokens) = tokens
                .iter()
                .map(|t| t.as_str().map(String::from))
                .collect::<Option<Vec<String>>>()
        {
            v["checksum"] = json!(vocab_checksum(&tokens));
            bytes = serde_json::to_vec(&v).unwrap_or(bytes);
        }
        Case { bytes, variant: 0 }
    }

    fn run(&mut self, case: &Case) -> CliResult<Verdict> {
        Ok(Vocab::from_json_bytes(&case.bytes)
            .map(|v| {
                let words: Vec<String> = ["the", "x", "<eos>", "zzz"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let (ids, _) = v.encode(&words);
                std::hint::black_box(v.decode(&ids));
                std::hint::black_box(v.decode(&[0, 1, 2, 4, 99, u32::MAX]));
            })
            .map_err(|e| e.to_string()))
    }

    fn describe(&self, _: usize) -> String {
        "Vocab::from_json_bytes of a vocab.json".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_gzip_is_read_back() {
        let dir = Scratch::new().unwrap();
        let path = dir.path().join("x.csv.gz");
        std::fs::write(&path, gzip_stored(b"a,b\n1,2\n")).unwrap();
        let d = data::load(&path, Format::Auto, &CsvOptions::default()).unwrap();
        assert_eq!(d.x.values, vec![1.0, 2.0]);
    }

    #[test]
    fn inputs_are_deterministic() {
        let t = DataTarget::new(DataFormat::Npy, Path::new("."));
        let a = t.generate(&mut Rng::new(5)).bytes;
        assert_eq!(a, t.generate(&mut Rng::new(5)).bytes);
    }
}

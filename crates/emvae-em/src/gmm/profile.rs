//! Where an EM iteration's time goes: opt-in timers around the phases of the host E-step.
//!
//! Off by default (one relaxed atomic load per tile). When on, each thread adds the wall time it spends
//! in each phase of a tile, so the phase figures are thread-seconds (summed over threads), and the
//! pass figure is the E-step pass's own wall time. `emvae bench gmm --phases` reports them per iteration.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// The timed phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Building a tile's features `phi(x)`.
    Features,
    /// `Phi W`: the log-joint probabilities (and components computed exactly, labels).
    LogJoint,
    /// Max, `exp`, sum, `ln`, scale: the responsibilities.
    Normalise,
    /// `Phi^T R`: the M-step's statistics.
    Moments,
    /// The whole E-step pass, wall time (not thread-seconds).
    Pass,
}

const PHASES: usize = 5;

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; PHASES] = [const { AtomicU64::new(0) }; PHASES];
static PASSES: AtomicU64 = AtomicU64::new(0);

/// Turns the timers on or off (process-wide).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Seconds per phase since the last [`take`], and the number of E-step passes they cover.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseSeconds {
    pub features: f64,
    pub log_joint: f64,
    pub normalise: f64,
    pub moments: f64,
    pub pass: f64,
    pub passes: u64,
}

/// The accumulated times, reset to zero.
pub fn take() -> PhaseSeconds {
    let s = |p: Phase| NANOS[p as usize].swap(0, Ordering::Relaxed) as f64 * 1e-9;
    PhaseSeconds {
        features: s(Phase::Features),
        log_joint: s(Phase::LogJoint),
        normalise: s(Phase::Normalise),
        moments: s(Phase::Moments),
        pass: s(Phase::Pass),
        passes: PASSES.swap(0, Ordering::Relaxed),
    }
}

/// Times consecutive phases on one thread; does nothing while the timers are off.
pub(crate) struct Stopwatch(Option<Instant>);

impl Stopwatch {
    pub fn start() -> Self {
        Self(ENABLED.load(Ordering::Relaxed).then(Instant::now))
    }

    /// Charges the time since the start or the last lap to `phase`.
    pub fn lap(&mut self, phase: Phase) {
        if let Some(last) = &mut self.0 {
            let now = Instant::now();
            NANOS[phase as usize].fetch_add((now - *last).as_nanos() as u64, Ordering::Relaxed);
            if phase == Phase::Pass {
                PASSES.fetch_add(1, Ordering::Relaxed);
            }
            *last = now;
        }
    }
}

//! Settings of online EM: the `[gmm.online]` table of a config.

use emvae_core::config::InvalidParam;
use serde::{Deserialize, Serialize};

fn default_batch_size() -> usize {
    10_000
}
fn default_step_exponent() -> f64 {
    0.6
}
fn default_step_offset() -> f64 {
    2.0
}
fn default_burn_in() -> usize {
    10
}
fn default_epochs() -> usize {
    1
}

/// How online EM walks through a stream and weighs its mini-batches.
///
/// Batch `t` (1-based, counted over all epochs) moves the running statistics by the step
/// `gamma_t = (t + step_offset)^(-step_exponent)`; during the first `burn_in` batches the statistics are
/// instead the plain average per row of the batches seen, and the parameters stay at their
/// initialisation. `step_exponent` in `(0.5, 1]` makes `sum gamma_t` diverge and `sum gamma_t^2`
/// converge (Robbins-Monro), which Cappé and Moulines (2009) need for convergence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineParams {
    /// Rows per mini-batch (the last batch of a pass may hold fewer).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// `alpha` of `gamma_t = (t + t0)^(-alpha)`, in `(0.5, 1]`.
    #[serde(default = "default_step_exponent")]
    pub step_exponent: f64,
    /// `t0` of `gamma_t = (t + t0)^(-alpha)`, `>= 0`: larger values damp the first steps.
    #[serde(default = "default_step_offset")]
    pub step_offset: f64,
    /// Batches whose statistics are averaged under the initial parameters before the first M-step.
    #[serde(default = "default_burn_in")]
    pub burn_in: usize,
    /// Passes over the stream.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Stop after this many batches (over all epochs), even mid-pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batches: Option<usize>,
}

impl Default for OnlineParams {
    fn default() -> Self {
        Self {
            batch_size: default_batch_size(),
            step_exponent: default_step_exponent(),
            step_offset: default_step_offset(),
            burn_in: default_burn_in(),
            epochs: default_epochs(),
            max_batches: None,
        }
    }
}

impl OnlineParams {
    /// Validates the settings; keys in errors are field names.
    pub fn check(&self) -> Result<(), InvalidParam> {
        let bad = |key: &str, msg: String| Err(InvalidParam::new(key, msg));
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1, got 0".into());
        }
        let alpha = self.step_exponent;
        if !(alpha > 0.5 && alpha <= 1.0) {
            return bad(
                "step_exponent",
                format!(
                    "must be in (0.5, 1], got {alpha}: steps (t + t0)^-alpha must shrink slowly enough to \
                     reach every part of the stream and fast enough to average out its noise"
                ),
            );
        }
        if !(self.step_offset.is_finite() && self.step_offset >= 0.0) {
            return bad(
                "step_offset",
                format!("must be a finite number >= 0, got {}", self.step_offset),
            );
        }
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1, got 0".into());
        }
        if self.max_batches == Some(0) {
            return bad("max_batches", "must be at least 1 when given, got 0".into());
        }
        Ok(())
    }

    /// The step `gamma_t` of batch `t` (1-based) of `rows` rows, `rows_seen` rows read in all (this
    /// batch's included). The first batch sets the statistics (`gamma_1 = 1`: there is nothing yet to
    /// average with); burn-in batches average per row (`rows / rows_seen`).
    pub fn step_size(&self, t: usize, rows: usize, rows_seen: usize) -> f64 {
        if t <= 1 {
            1.0
        } else if t <= self.burn_in {
            rows as f64 / rows_seen as f64
        } else {
            (t as f64 + self.step_offset).powf(-self.step_exponent)
        }
    }

    /// Whether the parameters take an M-step after batch `t`: from the end of the burn-in on.
    pub fn updates_after(&self, t: usize) -> bool {
        t >= self.burn_in.max(1)
    }
}

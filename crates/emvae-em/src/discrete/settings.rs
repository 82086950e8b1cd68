//! Hyper-parameters both discrete mixtures share, and their checks.

use emvae_core::config::InvalidParam;
use serde::{Deserialize, Serialize};

use crate::driver::{Acceleration, EmSettings};

/// How the responsibilities are initialised before the first M-step (scikit-learn's `init_params`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DiscreteInit {
    /// Responsibilities drawn uniformly at random, normalised per row.
    #[serde(rename = "random")]
    Random,
    /// `k` distinct rows drawn at random; each owns one component (the other rows own none until the
    /// first E-step). The components start as smoothed copies of those rows, which separates them far
    /// better than random responsibilities do in many dimensions.
    #[default]
    #[serde(rename = "random_from_data")]
    RandomFromData,
}

pub(crate) fn default_tol() -> f64 {
    1e-3
}
pub(crate) fn default_max_iter() -> usize {
    100
}
pub(crate) fn default_one() -> usize {
    1
}

/// The checked hyper-parameters of either mixture.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Common {
    pub n_components: usize,
    pub max_iter: usize,
    pub tol: f64,
    pub n_init: usize,
    pub init: DiscreteInit,
    /// Pseudo-count added to every count of the component distributions.
    pub alpha: f64,
    /// Pseudo-count added to every component's count in the mixing weights.
    pub alpha_weights: f64,
    pub seed: u64,
}

impl Common {
    /// Checks what does not depend on the data; errors name the key.
    pub fn check(self) -> Result<Self, InvalidParam> {
        let bad = |key: &str, msg: String| Err(InvalidParam::new(key, msg));
        for (key, v) in [
            ("n_components", self.n_components),
            ("max_iter", self.max_iter),
            ("n_init", self.n_init),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1, got 0".into());
            }
        }
        for (key, v) in [
            ("tol", self.tol),
            ("alpha", self.alpha),
            ("alpha_weights", self.alpha_weights),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(key, format!("must be a finite number >= 0, got {v}"));
            }
        }
        Ok(self)
    }

    pub fn settings(&self) -> EmSettings {
        EmSettings {
            max_iter: self.max_iter,
            tol: self.tol,
            n_init: self.n_init,
            acceleration: Acceleration::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An edit of a valid value and what the error must say.
    type Edit = (fn(&mut Common), &'static str);

    fn common() -> Common {
        Common {
            n_components: 2,
            max_iter: 10,
            tol: 1e-3,
            n_init: 1,
            init: DiscreteInit::Random,
            alpha: 0.0,
            alpha_weights: 0.0,
            seed: 0,
        }
    }

    #[test]
    fn check_names_the_bad_key() {
        assert!(common().check().is_ok());
        let cases: [Edit; 7] = [
            (|c| c.n_components = 0, "n_components"),
            (|c| c.max_iter = 0, "max_iter"),
            (|c| c.n_init = 0, "n_init"),
            (|c| c.tol = -1.0, "tol"),
            (|c| c.alpha = f64::NAN, "alpha"),
            (|c| c.alpha = -0.5, "alpha"),
            (|c| c.alpha_weights = f64::INFINITY, "alpha_weights"),
        ];
        for (edit, key) in cases {
            let mut c = common();
            edit(&mut c);
            assert_eq!(c.check().unwrap_err().key, key);
        }
    }
}

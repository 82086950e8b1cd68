//! Mixtures of multivariate Bernoullis, for binary rows such as binarised digits.
//!
//! ```text
//! p(x) = sum_j pi_j prod_a theta_ja^x_a (1 - theta_ja)^(1 - x_a),    x in {0, 1}^d
//! ```
//! [`BernoulliMixtureParams`] (unchecked) `.check()` gives [`BernoulliValidParams`], whose `fit` returns
//! a [`BernoulliMixture`]. Any value other than 0 or 1 is an error naming its row and column.

mod fit;
mod model;
mod parameters;

pub use crate::discrete::params::{BernoulliMixtureParams, BernoulliValidParams};
pub use fit::{BernoulliCheckpoint, CHECKPOINT_FORMAT};
pub use model::{BernoulliMixture, BernoulliMixtureJson, MODEL_FORMAT};
pub use parameters::{BernoulliParameters, BernoulliParametersJson};

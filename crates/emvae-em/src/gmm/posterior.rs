//! What the E-step hands the M-step.

use burn::tensor::Tensor;

use super::estep::EStepWeights;

/// The expected sufficient statistics of an E-step, and the responsibilities behind them for the
/// M-step's exact recomputation of components that lose accuracy in the feature form (rare: it needs
/// a component far from the data's mean relative to its spread).
pub(crate) struct Posterior {
    /// `G = R^T phi(X)`, `[k, F]` row-major (see [`super::workspace`]).
    pub moments: Vec<f64>,
    pub resp: Responsibilities,
}

pub(crate) enum Responsibilities {
    /// Per chunk on the device, `[c, k]` (the tensor path).
    Tensors(Vec<Tensor<2>>),
    /// On the host, `[n, k]` row-major (given, as at initialisation).
    Rows(Vec<f64>),
    /// Not kept: recomputed from the E-step's weights when needed (the host path, which would
    /// otherwise write `n k` values per iteration for a rare use).
    Recompute(EStepWeights),
}

//! What the fused cells share: their initialisation draws, the step-by-step view of a sequence, the
//! padding mask, and `tanh` through one sigmoid.

use burn::tensor::{Device, Tensor, TensorData, activation};
use emvae_core::rng::Rng;
use rand::Rng as _;

/// `n` draws from `U(-bound, bound)`.
pub(super) fn uniform(n: usize, bound: f64, rng: &mut Rng) -> Vec<f32> {
    (0..n)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect()
}

/// Splits `xp: [B, T, G]` into `T` tensors `[B, G]`, one per step.
///
/// Under autodiff the gradient of a slice is a zero tensor of the sliced tensor's full size with the
/// slice's gradient written in, and the `T` gradients are then summed: slicing `T` steps straight out of
/// `[B, T, G]` moves `O(T^2 B G)` memory in the backward pass. Halving recursively keeps it at
/// `O(T log T B G)`.
pub(super) fn split_steps(xp: Tensor<3>) -> Vec<Tensor<2>> {
    fn go(xp: Tensor<3>, out: &mut Vec<Tensor<2>>) {
        let [b, t, g] = xp.dims();
        if t == 1 {
            out.push(xp.reshape([b, g]));
        } else if t > 1 {
            let half = t / 2;
            go(xp.clone().narrow(1, 0, half), out);
            go(xp.narrow(1, half, t - half), out);
        }
    }
    let mut out = Vec::with_capacity(xp.dims()[1]);
    go(xp, &mut out);
    out
}

/// Whether a cell should multiply each step's input inside the step (`[x_t, h, 1] [W_ih; W_hh; b]`, one
/// matmul per step) rather than project the whole sequence at once (`X W_ih + b`, then `h W_hh` per step).
///
/// Both give the same values; they differ in cost under autodiff. Projecting first splits `[B, T, G]`
/// (`G = 4H` or `3H`) into steps, which costs about `2 log2(T) B T G` floats of zero-filled gradient
/// buffers (see [`split_steps`]); multiplying per step splits `x: [B, T, F]` instead (`2 log2(T) B T F`)
/// but adds an `[F, G]` weight gradient at every step (about `3 T F G` floats moved). Per step wins when
/// `3 F < 2 B log2(T)`: measured on flex, it was faster for (B, T, F) = (32, 50, 32), (32, 22, 64),
/// (64, 22, 128) and (128, 22, 288), slower for (32, 22, 128) and (32, 22, 288).
pub(super) fn project_per_step(batch: usize, len: usize, d_in: usize) -> bool {
    3.0 * (d_in as f64) < 2.0 * (batch as f64) * (len as f64).log2()
}

/// The per-step columns `[B, 1]` of a float 0/1 mask `[B, T]`.
pub(super) fn mask_steps(mask: &Tensor<2>) -> Vec<Tensor<2>> {
    let [b, t] = mask.dims();
    (0..t)
        .map(|k| mask.clone().slice([0..b, k..k + 1]))
        .collect()
}

/// `old + m (new - old)`: `new` where `m = 1`, `old` where `m = 0` (`m: [B, 1]`).
pub(super) fn blend(m: &Tensor<2>, new: Tensor<2>, old: Tensor<2>) -> Tensor<2> {
    old.clone() + m.clone() * (new - old)
}

/// Stacks per-step outputs `[B, H]` into `[B, T, H]` and zeroes masked positions.
pub(super) fn collect_outputs(
    outs: Vec<Tensor<2>>,
    batch: usize,
    hidden: usize,
    mask: Option<Tensor<2>>,
    device: &Device,
) -> Tensor<3> {
    if outs.is_empty() {
        return Tensor::zeros([batch, 0, hidden], device);
    }
    let out: Tensor<3> = Tensor::stack(outs, 1);
    match mask {
        Some(m) => out * m.unsqueeze_dim::<3>(2),
        None => out,
    }
}

/// `[1, G]`: 1 in every column except 2 in block `block` (of width `hidden`).
///
/// Multiplying a gate's pre-activation by 2 lets one sigmoid serve for `tanh`, through
/// `tanh(a) = 2 σ(2a) - 1`: flex evaluates `tanh` about 3 times slower than `σ`, and under autodiff
/// both are evaluated again in the backward pass (whose `tanh` rule also takes 4 more passes).
pub(super) fn doubled_block(
    gates: usize,
    hidden: usize,
    block: usize,
    device: &Device,
) -> Tensor<2> {
    let scale: Vec<f32> = (0..gates * hidden)
        .map(|j| if j / hidden == block { 2.0 } else { 1.0 })
        .collect();
    Tensor::from_data(TensorData::new(scale, [1, gates * hidden]), device)
}

/// `tanh(a) = 2 σ(2a) - 1`, given `s = σ(2a)`.
pub(super) fn tanh_from_sigmoid(s: Tensor<2>) -> Tensor<2> {
    s.mul_scalar(2.0).sub_scalar(1.0)
}

/// `tanh(x) = 2 σ(2x) - 1` (see [`doubled_block`] for why not `x.tanh()`).
pub(super) fn tanh_via_sigmoid(x: Tensor<2>) -> Tensor<2> {
    tanh_from_sigmoid(activation::sigmoid(x.mul_scalar(2.0)))
}

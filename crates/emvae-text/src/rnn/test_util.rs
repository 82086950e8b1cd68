//! Helpers of the recurrent cells' tests: random tensors on flex with autodiff, relative errors, and
//! burn's own gates built from the fused weights.

use burn::module::Param;
use burn::nn::{GateController, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use emvae_core::rng::Rng;

use super::steps::uniform;

pub(crate) const B: usize = 3;
pub(crate) const T: usize = 5;
pub(crate) const F: usize = 4;
pub(crate) const H: usize = 6;
pub(crate) const TOL: f32 = 1e-4;

pub(crate) fn dev() -> Device {
    Device::flex().autodiff()
}

pub(crate) fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().expect("f32 tensor")
}

/// A tensor of `U(-1, 1)` draws.
pub(crate) fn rand_t<const D: usize>(shape: [usize; D], rng: &mut Rng) -> Tensor<D> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(uniform(n, 1.0, rng), shape), &dev())
}

/// A fresh leaf with `t`'s values that requires a gradient.
pub(crate) fn leaf<const D: usize>(t: &Tensor<D>) -> Tensor<D> {
    Tensor::from_data(t.to_data(), &dev()).require_grad()
}

/// `max |a - b| / max |b|`.
pub(crate) fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0, f32::max).max(1e-12);
    diff / scale
}

pub(crate) fn assert_close<const D: usize>(what: &str, a: Tensor<D>, b: Tensor<D>) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let e = rel_err(&host(a), &host(b));
    assert!(e < TOL, "{what}: relative error {e}");
}

pub(crate) fn grad<const D: usize>(t: &Tensor<D>, grads: &burn::tensor::Gradients) -> Tensor<D> {
    t.grad(grads).expect("a gradient")
}

/// A burn `Linear` holding a copy of `w` (and `b`), a new leaf.
pub(crate) fn linear_of(w: Tensor<2>, b: Tensor<1>) -> Linear {
    Linear {
        weight: Param::from_data(w.to_data(), &dev()),
        bias: Some(Param::from_data(b.to_data(), &dev())),
    }
}

pub(crate) fn gate(
    w_ih: &Tensor<2>,
    w_hh: &Tensor<2>,
    b_ih: &Tensor<1>,
    b_hh: &Tensor<1>,
    k: usize,
) -> GateController {
    GateController {
        input_transform: linear_of(
            w_ih.clone().narrow(1, k * H, H),
            b_ih.clone().narrow(0, k * H, H),
        ),
        hidden_transform: linear_of(
            w_hh.clone().narrow(1, k * H, H),
            b_hh.clone().narrow(0, k * H, H),
        ),
    }
}

/// Gradients of a gate's four tensors: (w_ih cols, w_hh cols, b_ih part, b_hh part).
pub(crate) fn gate_grads(
    g: &GateController,
    grads: &burn::tensor::Gradients,
) -> (Tensor<2>, Tensor<2>, Tensor<1>, Tensor<1>) {
    let bias = |l: &Linear| grad(&l.bias.as_ref().expect("bias").val(), grads);
    (
        grad(&g.input_transform.weight.val(), grads),
        grad(&g.hidden_transform.weight.val(), grads),
        bias(&g.input_transform),
        bias(&g.hidden_transform),
    )
}

//! Networks: multilayer perceptrons with weights initialised on the host, so that a seed gives the same
//! network on every backend.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData, activation};
use emvae_core::rng::Rng;
use rand::Rng as _;

use crate::config::Activation;

impl Activation {
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu => activation::relu(x),
            Activation::Tanh => activation::tanh(x),
            Activation::Elu => activation::elu(x, 1.0),
            Activation::Softplus => activation::softplus(x, 1.0),
            Activation::Sigmoid => activation::sigmoid(x),
            Activation::Gelu => activation::gelu(x),
            Activation::LeakyRelu => activation::leaky_relu(x, 0.01),
            Activation::Linear => x,
        }
    }
}

/// A trainable parameter holding host `values` of `shape`.
pub fn param<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Param<Tensor<D>> {
    Param::from_data(TensorData::new(values, shape), device)
}

/// A linear layer `y = x W + b` (`W: [d_in, d_out]`) with PyTorch's default initialisation,
/// `W, b ~ U(-1/sqrt(d_in), 1/sqrt(d_in))`.
pub fn linear(d_in: usize, d_out: usize, rng: &mut Rng, device: &Device) -> Linear {
    let bound = 1.0 / (d_in as f64).sqrt();
    let mut draw = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect()
    };
    let weight = draw(d_in * d_out);
    let bias = draw(d_out);
    Linear {
        weight: param(weight, [d_in, d_out], device),
        bias: Some(param(bias, [d_out], device)),
    }
}

/// Affine layers with an activation after each: `sizes = [input, hidden...]` gives
/// `sizes.len() - 1` layers (none when `sizes` has one entry: the identity).
#[derive(Module, Debug)]
pub struct Mlp {
    pub layers: Vec<Linear>,
    #[module(skip)]
    pub activation: Activation,
}

impl Mlp {
    pub fn new(sizes: &[usize], activation: Activation, rng: &mut Rng, device: &Device) -> Self {
        let layers = sizes
            .windows(2)
            .map(|w| linear(w[0], w[1], rng, device))
            .collect();
        Self { layers, activation }
    }

    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        for layer in &self.layers {
            x = self.activation.apply(layer.forward(x));
        }
        x
    }
}

//! The bridge between host data and burn tensors, and log-space reductions.

use burn::tensor::{DType, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Floating-point type of a model's tensors, chosen at run time.
///
/// f64 is what parity with reference implementations is measured in; f32 is faster and what GPUs
/// support. Host-side bookkeeping (Cholesky factors, metrics) is always f64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    #[default]
    F64,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F64 => DType::F64,
        }
    }

    /// Whether tensors of this precision can be computed with on `device`.
    pub fn supported_on(self, device: &Device) -> bool {
        device.supports_dtype(self.dtype())
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        })
    }
}

/// Where and in what precision a model computes. Chosen once, at the edge (the CLI), and passed down:
/// nothing below the CLI names a backend.
#[derive(Debug, Clone)]
pub struct Compute {
    pub device: Device,
    pub precision: Precision,
    /// Whether the device's tensors live in host memory (a CPU backend), so that a model may run its
    /// own host kernels on the same data instead of composing tensor operations. Said by the edge,
    /// which knows the backend.
    pub host_memory: bool,
}

impl Compute {
    pub fn new(device: Device, precision: Precision) -> Self {
        Self {
            device,
            precision,
            host_memory: false,
        }
    }

    /// The same, on a device whose tensors live in host memory.
    pub fn in_host_memory(mut self) -> Self {
        self.host_memory = true;
        self
    }

    /// A tensor of `shape` holding row-major `values` on this device and precision.
    pub fn tensor<const D: usize>(&self, values: Vec<f64>, shape: [usize; D]) -> Tensor<D> {
        tensor_from_vec(values, shape, &self.device, self.precision)
    }

    /// Machine epsilon of the working precision.
    pub fn eps(&self) -> f64 {
        match self.precision {
            Precision::F32 => f32::EPSILON as f64,
            Precision::F64 => f64::EPSILON,
        }
    }
}

/// A tensor of `shape` holding row-major `values`, on `device` in `precision`.
pub fn tensor_from_vec<const D: usize>(
    values: Vec<f64>,
    shape: [usize; D],
    device: &Device,
    precision: Precision,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), (device, precision.dtype()))
}

/// The tensor's values, row-major, as f64 (converted from its dtype).
pub fn tensor_to_vec<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .try_into_vec_as::<f64>()
        .expect("float tensors convert to f64")
}

/// `log sum_j exp(x_j)` along `dim` (kept, with size 1), computed stably as
/// `m + log sum_j exp(x_j - m)` with `m = max_j x_j`.
///
/// Entries equal to `-inf` contribute nothing; a slice that is entirely `-inf` gives `-inf`.
pub fn log_sum_exp<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let max = x.clone().max_dim(dim);
    // Where the max is -inf (an all -inf slice), shift by 0 instead so no NaN appears.
    let shift = max.clone().mask_fill(max.clone().is_inf(), 0.0);
    let sum = (x - shift.clone()).exp().sum_dim(dim);
    sum.log() + shift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_is_stable() {
        let device = Device::flex();
        let x = tensor_from_vec(
            vec![1000.0, 1000.0, -1000.0, 0.0, f64::NEG_INFINITY, 2.0],
            [3, 2],
            &device,
            Precision::F64,
        );
        let l = tensor_to_vec(log_sum_exp(x, 1));
        assert!((l[0] - (1000.0 + 2f64.ln())).abs() < 1e-12);
        assert!((l[1] - 0.0).abs() < 1e-12);
        assert!((l[2] - 2.0).abs() < 1e-12);
    }

    #[test]
    fn round_trip_f32_and_f64() {
        let device = Device::flex();
        for p in [Precision::F32, Precision::F64] {
            let t = tensor_from_vec(vec![0.5, -1.25, 3.0, 4.0], [2, 2], &device, p);
            assert_eq!(t.dtype(), p.dtype());
            assert_eq!(tensor_to_vec(t), vec![0.5, -1.25, 3.0, 4.0]);
        }
    }
}

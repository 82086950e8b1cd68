//! The one place that names burn backends: `--backend` / `backend =` turn into a [`Device`].

use burn::tensor::Device;
use emvae_core::tensor::{Compute, Precision};
use emvae_text::lstm_kernel::{HostKernels, lstm_sequence};
use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// A compute backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's pure-Rust CPU backend (burn-flex): the default, fastest on emvae's models (see README).
    #[default]
    Flex,
    /// burn's ndarray CPU backend (deprecated upstream in burn 0.22, kept selectable).
    Ndarray,
    /// GPU through wgpu (needs a build with `--features wgpu`).
    Wgpu,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
        }
    }

    /// The device and precision to compute in, or why they cannot be had (a backend without f64,
    /// such as wgpu's WGSL shaders, is told to use f32).
    pub fn compute(self, precision: Precision) -> Result<Compute, CliError> {
        let device = self.device()?;
        if !precision.supported_on(&device) {
            return Err(CliError::user(format!(
                "the {self} backend does not support precision = \"{precision}\" on this machine: use f32 \
                 (`precision = \"f32\"` in the config, or --precision f32)"
            )));
        }
        let compute = Compute::new(device, precision);
        Ok(if self.host_memory() {
            compute.in_host_memory()
        } else {
            compute
        })
    }

    /// Values one evaluation of a decoder may hold (`DiagnoseOptions::values_per_evaluation`): the
    /// default (about 128 MB of f32) on the CPU; 2^29 (2 GiB of f32, under Vulkan's usual 4 GiB binding
    /// limit) on a GPU, where a small chunk is a launch-bound one: the IW-500 scoring of the PTB test
    /// split did not finish in 287 s on an H200 with the default, and took 94-102 s with 2^29.
    pub fn eval_values(self) -> usize {
        match self {
            Backend::Flex | Backend::Ndarray => emvae_vae::diagnostics::EVAL_VALUES,
            Backend::Wgpu => 1 << 29,
        }
    }

    /// Whether the backend's tensors live in host memory (its models may run host loops on them).
    pub fn host_memory(self) -> bool {
        matches!(self, Backend::Flex | Backend::Ndarray)
    }

    /// The text models' kernels for this backend's tensors, where they live in host memory.
    pub fn text_kernels(self) -> Option<HostKernels> {
        match self {
            Backend::Flex => Some(HostKernels {
                lstm: lstm_sequence::<burn::backend::Flex>,
            }),
            #[allow(deprecated)]
            Backend::Ndarray => Some(HostKernels {
                lstm: lstm_sequence::<burn::backend::NdArray>,
            }),
            Backend::Wgpu => None,
        }
    }

    /// The device, or why this binary cannot provide it.
    pub fn device(self) -> Result<Device, CliError> {
        match self {
            Backend::Flex => Ok(Device::flex()),
            #[allow(deprecated)]
            Backend::Ndarray => Ok(Device::ndarray()),
            Backend::Wgpu => wgpu_device(),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The default wgpu adapter, probed with a small computation: burn panics on first use where wgpu finds
/// no adapter, and that is turned into an error that says what to install.
#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, CliError> {
    use burn::tensor::Tensor;
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(|| {
        let device = Device::wgpu(burn::tensor::DeviceKind::default());
        let sum: f32 = Tensor::<1>::from_floats([1.0, 2.0], &device)
            .sum()
            .into_scalar();
        (device, sum)
    });
    std::panic::set_hook(quiet);
    match probe {
        Ok((device, sum)) if sum == 3.0 => Ok(device),
        Ok((_, sum)) => Err(CliError::runtime(format!(
            "the wgpu adapter computed 1 + 2 = {sum}: its driver is broken; use --backend flex"
        ))),
        Err(_) => Err(CliError::user(
            "wgpu found no usable GPU adapter (Vulkan, Metal or DX12): install the GPU's driver \
             (on Linux, the vendor's Vulkan driver, or mesa-vulkan-drivers for the software one), \
             or use --backend flex",
        )),
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, CliError> {
    Err(CliError::user(
        "this emvae binary was built without the wgpu backend: rebuild with `cargo build --release --features wgpu` \
         (or use --backend flex)",
    ))
}

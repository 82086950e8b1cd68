//! The one place that names burn backends: `--backend` / `backend =` turn into a [`Device`].

use burn::tensor::Device;
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

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, CliError> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::default()))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, CliError> {
    Err(CliError::user(
        "this emvae binary was built without the wgpu backend: rebuild with `cargo build --release --features wgpu` \
         (or use --backend flex)",
    ))
}

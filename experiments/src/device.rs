//! The compute device a command runs on — `--device cpu|gpu|gpu:N` on the command line, `device =
//! "..."` in training configs and study files — and the one place a backend is opened for it:
//! [`with_backend!`] opens the device once and runs generic code (written against
//! [`sim::Backend`], bound by [`Engine`]) on the CPU backend or on `host-gpu`'s wgpu backend,
//! whose convolution algorithm [`GPU_CONV_ENV`] may set.
//!
//! The device is how a result is computed, not what it is: it never enters a run's identity (a
//! training run may be resumed on another device), a study's plan or a results record.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A backend the experiments layer can hold: the engine's ops ([`sim::Backend`]), cheap to clone
/// (the CPU backend is a unit, the GPU one shares its device) and `'static`, so a model on it can
/// be a `Box<dyn Classifier>`.
pub trait Engine: sim::Backend + Clone + 'static {}

impl<B: sim::Backend + Clone + 'static> Engine for B {}

/// Where the dynamics run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU backend (`sim::Cpu`), the reference.
    #[default]
    Cpu,
    /// A GPU through wgpu (Vulkan): adapter `N` in wgpu's order with discrete GPUs first, or the
    /// first adapter when `None`.
    Gpu(Option<usize>),
}

/// What `--device` accepts, for help texts and errors.
pub const DEVICE_VALUES: &str = "cpu, gpu (the first adapter, discrete GPUs first) or gpu:N";

/// The environment variable that sets the GPU backend's convolution algorithm
/// ([`host_gpu::ConvAlgo`]: `auto`, the default, `direct`, `winograd2` or `winograd4`). How a
/// result is computed, like the device: it never enters a run's identity or a record.
pub const GPU_CONV_ENV: &str = "EPSIM_GPU_CONV";

/// The GPU convolution algorithm from the value of [`GPU_CONV_ENV`] (`None` when unset), or an
/// error naming the variable, the value and what is accepted.
pub fn gpu_conv(value: Option<std::ffi::OsString>) -> anyhow::Result<Option<host_gpu::ConvAlgo>> {
    let Some(v) = value else { return Ok(None) };
    let v = v
        .into_string()
        .map_err(|v| anyhow::anyhow!("{GPU_CONV_ENV}={v:?}: not UTF-8"))?;
    v.parse()
        .map(Some)
        .map_err(|e: String| anyhow::anyhow!("{GPU_CONV_ENV}: {e}"))
}

impl FromStr for Device {
    type Err = String;

    /// `cpu`, `gpu` or `gpu:N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("unknown device {s:?}: expected {DEVICE_VALUES}");
        match s {
            "cpu" => Ok(Device::Cpu),
            "gpu" => Ok(Device::Gpu(None)),
            _ => {
                let n = s.strip_prefix("gpu:").ok_or_else(bad)?;
                n.parse::<usize>()
                    .map(|n| Device::Gpu(Some(n)))
                    .map_err(|_| format!("{}; N is an adapter number (0, 1, ...)", bad()))
            }
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Gpu(None) => write!(f, "gpu"),
            Device::Gpu(Some(n)) => write!(f, "gpu:{n}"),
        }
    }
}

impl Serialize for Device {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An opened backend; [`with_backend!`] runs code on whichever it is.
pub enum Opened {
    /// The CPU backend.
    Cpu(sim::Cpu),
    /// A GPU.
    Gpu(host_gpu::Gpu),
}

impl Device {
    /// The device a command runs on: the command line's, else the file's (config, study), else
    /// the CPU.
    pub fn pick(flag: Option<Device>, file: Option<Device>) -> Device {
        flag.or(file).unwrap_or_default()
    }

    /// Open the backend. A GPU is named once on stderr (with a warning when it is a software
    /// driver) and runs its convolutions as [`GPU_CONV_ENV`] says (a bad value is an error);
    /// no adapter, or no adapter `N`, is an error naming what was found and how to install a
    /// driver.
    pub fn open(self) -> anyhow::Result<Opened> {
        match self {
            Device::Cpu => {
                tracing::debug!("device: cpu");
                Ok(Opened::Cpu(sim::Cpu))
            }
            Device::Gpu(n) => {
                let conv = gpu_conv(std::env::var_os(GPU_CONV_ENV))?;
                let gpu = host_gpu::Gpu::new(n).map_err(|e| {
                    let msg = e.to_string();
                    if msg.starts_with("--device") {
                        anyhow::anyhow!(msg)
                    } else {
                        anyhow::anyhow!("--device {self}: {msg}")
                    }
                })?;
                tracing::info!("device {self}: {}", gpu.adapter_name());
                if gpu.is_software() {
                    tracing::warn!(
                        "{}: a software Vulkan driver (such as Mesa's lavapipe): correct but \
                         slow; for tests only",
                        gpu.adapter_name()
                    );
                }
                let gpu = match conv {
                    Some(algo) => {
                        tracing::info!("{GPU_CONV_ENV}={algo}: GPU convolutions as {algo:?}");
                        gpu.with_conv_algo(algo)
                    }
                    None => gpu,
                };
                Ok(Opened::Gpu(gpu))
            }
        }
    }
}

/// Open `device` ([`Device::open`], `?` on its error) and evaluate `body` with `be` bound to the
/// backend (`&B` for an [`Engine`] `B`): `with_backend!(device, be => run(be, &args))`. The body
/// is compiled once per backend; this is the only place the experiments layer names one.
#[macro_export]
macro_rules! with_backend {
    ($device:expr, $be:ident => $body:expr) => {
        match $crate::device::Device::open($device)? {
            $crate::device::Opened::Cpu(backend) => {
                let $be = &backend;
                $body
            }
            $crate::device::Opened::Gpu(backend) => {
                let $be = &backend;
                $body
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_print_and_round_trip_through_serde() {
        for (s, d) in [
            ("cpu", Device::Cpu),
            ("gpu", Device::Gpu(None)),
            ("gpu:0", Device::Gpu(Some(0))),
            ("gpu:12", Device::Gpu(Some(12))),
        ] {
            assert_eq!(s.parse::<Device>().unwrap(), d);
            assert_eq!(d.to_string(), s);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Device>(&json).unwrap(), d);
        }
        for bad in ["", "CPU", "gpu:", "gpu:x", "gpu:-1", "cuda", "gpu0", "pcm"] {
            let e = bad.parse::<Device>().unwrap_err();
            assert!(
                e.contains("expected cpu, gpu") && e.contains(&format!("{bad:?}")),
                "{e}"
            );
        }
        assert!(
            "gpu:x"
                .parse::<Device>()
                .unwrap_err()
                .contains("adapter number")
        );
        assert!(serde_json::from_str::<Device>("\"tpu\"").is_err());
        assert_eq!(Device::pick(None, None), Device::Cpu);
        assert_eq!(
            Device::pick(Some(Device::Cpu), Some(Device::Gpu(None))),
            Device::Cpu
        );
        assert_eq!(
            Device::pick(None, Some(Device::Gpu(Some(1)))),
            Device::Gpu(Some(1))
        );
    }

    #[test]
    fn the_gpu_convolution_algorithm_comes_from_its_variable() {
        use host_gpu::ConvAlgo;
        assert_eq!(gpu_conv(None).unwrap(), None);
        for (v, a) in [("auto", ConvAlgo::Auto), ("direct", ConvAlgo::Direct)] {
            assert_eq!(gpu_conv(Some(v.into())).unwrap(), Some(a));
        }
        let e = gpu_conv(Some("fast".into())).unwrap_err().to_string();
        assert!(
            e.contains(GPU_CONV_ENV) && e.contains("\"fast\"") && e.contains("winograd4"),
            "{e}"
        );
    }
}

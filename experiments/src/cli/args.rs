//! Argument groups shared by several commands (flattened with `#[command(flatten)]`): a model
//! file, a substrate (`--substrate`, `--set`, `--tile`), a device's overrides and tiles, what an
//! evaluation runs on (`attack`, `robustness`); what the global `--device` says; and the
//! dataset-spec help.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use crate::classifier::substrate::{SubstrateSpec, parse_tile};
use crate::device::Device;
use crate::study::target::Target;

/// Help text on dataset specs, shown after `--help` of the commands that read datasets.
pub const DATA_SPEC_HELP: &str = "\
DATASET SPECS
  KIND:PATH[:SPLIT]             cifar10:/data/cifar-10-batches-bin:test
                                cifar100:/data/cifar-100-binary.tar.gz
                                mnist:/data/mnist:train
                                folder:/data/cifar10-jpeg.zip:test
  cifar10c:DIR[:CORRUPTION[:SEVERITY]]
                                cifar10c:/data/CIFAR-10-C:fog:3
  fashion-mnist[:DIR][:SPLIT]   DIR defaults to $EPSIM_FASHION_MNIST_DIR, else
                                /usr/share/datasets/fashion-mnist
                                (apt-get install -y dataset-fashion-mnist)
  PATH[:SPLIT]                  kind detected from the path

  KIND: cifar10, cifar100 (official binary: one .bin file, the extracted directory or the
        .tar.gz), fashion-mnist (alias fmnist), mnist (directory of the four IDX files, raw or
        .gz), folder (directory or zip of SPLIT/CLASS/*.jpg|png; classes sorted by name unless a
        batches.meta.txt or classes.txt gives the order).
        cifar10c, cifar100c: the released CIFAR-10-C / CIFAR-100-C files (or `epsim corrupt
        --format npy` output): DIR/<corruption>.npy (uint8, 5 severities x N images, NHWC) and
        DIR/labels.npy; CORRUPTION is a file stem, SEVERITY 1..5 (all five stacked without it);
        without CORRUPTION, `epsim data info` lists the files and other commands name them.
  SPLIT: train or test (folders: any split folder name); without it every split found is loaded.
  Detection: IDX files -> mnist (fashion-mnist if the path says \"fashion\"); data_batch_*.bin,
        test_batch.bin or cifar-10-batches-bin/ -> cifar10; train.bin, test.bin or
        cifar-100-binary/ -> cifar100; labels.npy -> cifar10c; other directories and zips ->
        folder; .tar.gz -> cifar100 if its name contains 100, else cifar10; other files -> CIFAR
        binary by record size.";

/// Parse a count that must be ≥ 1 (`--subset`, `--batch-size`): 0 is refused at parse time.
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be ≥ 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A model file.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model file: an epsim checkpoint (safetensors with the spec in metadata; EP or baseline), or
    /// a PyTorch state dict saved with safetensors plus --spec.
    #[arg(long, value_name = "SAFETENSORS")]
    pub model: PathBuf,
    /// Model spec (TOML or JSON) for files without one.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
}

/// The images an evaluation runs on.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Dataset spec (see `epsim data info --help`); without a split the test split is used.
    #[arg(id = "data", long = "data", value_name = "SPEC")]
    pub spec: String,
    /// Use only the first N images (class-balanced).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub subset: Option<usize>,
}

/// Where a suite-running command writes: results.jsonl, its markdown report and plots.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output directory (default: ./robustness for `robustness`, ./sweep for `sweep`):
    /// results.jsonl (appended), the markdown report (report.md, sweep.md) and the plots.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

impl OutputArgs {
    /// The output directory, `default` when none was given.
    pub fn dir_or(&self, default: &str) -> PathBuf {
        self.out_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(default))
    }
}

/// Device preset overrides and the physical array size.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Preset overrides, e.g. --set read_noise_scale=0.5,t_inference=3600 (nonideality_scale=s
    /// scales every non-ideality; neuron.kind=spiking,neuron.window=32 makes the neurons
    /// rate-coded integrate-and-fire ones).
    #[arg(long, value_delimiter = ',', value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Physical array size ROWSxCOLS.
    #[arg(long, default_value = "512x512", value_name = "RxC")]
    pub tile: String,
}

/// How an EP model's free phase settles (issue 19): plain iteration of T steps (the default),
/// or to a tolerance, each image leaving the batch once its state stops moving.
#[derive(Debug, Clone, Default, Args)]
pub struct SettleFlags {
    /// Settling method: `plain` (fixed steps, or to --tol) or `anderson` (Anderson acceleration
    /// of the fixed-point iteration, needs --tol). An attack's gradient goes through the steps
    /// each image's prediction took (a --t-attack other than T_predict: plain T_attack steps).
    #[arg(long, value_name = "plain|anderson", default_value = "plain")]
    pub settle: String,
    /// Stop each image at the first step that changes none of its neurons by --tol or more (max
    /// abs; states lie in [0, 1]); finished images leave the batch. E.g. 1e-3.
    #[arg(long, value_name = "TOL")]
    pub tol: Option<f32>,
    /// Most steps with --tol (default: the steps of plain iteration, --steps / --t-predict / T1).
    #[arg(long, value_name = "N", requires = "tol")]
    pub max_steps: Option<usize>,
}

impl SettleFlags {
    /// The checked settle.
    pub fn settle(&self) -> Result<ep::Settle> {
        Ok(ep::Settle::from_flags(
            &self.settle,
            self.tol,
            self.max_steps,
        )?)
    }
}

/// The substrate a model is realized on.
#[derive(Debug, Clone, Args)]
pub struct SubstrateArgs {
    /// Substrate: digital, or netlist:<preset|preset.toml|netlist.json> (the model compiled and
    /// realized on simulated hardware, programmed from --seed; stochastic substrates: attacks
    /// average --eot gradients per step).
    #[arg(long, default_value = "digital", value_name = "SUBSTRATE")]
    pub substrate: String,
    /// Overrides and tiles of netlist substrates.
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl SubstrateArgs {
    /// The checked substrate.
    pub fn spec(&self) -> Result<SubstrateSpec> {
        SubstrateSpec::parse(&self.substrate, &self.device.set, &self.device.tile)
    }
}

impl DeviceArgs {
    /// The checked tile size.
    pub fn tile_size(&self) -> Result<sim::netlist::TileSize> {
        parse_tile(&self.tile)
    }
}

/// What is evaluated: a model on a substrate, on a dataset (shared by `attack` and `robustness`).
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The images.
    #[command(flatten)]
    pub data: DataArgs,
    /// Free-phase steps for predictions (default: the model's T1).
    #[arg(long, value_name = "T")]
    pub t_predict: Option<usize>,
    /// Free-phase steps the gradient is taken through (default: = T_predict, the honest choice).
    #[arg(long, value_name = "T")]
    pub t_attack: Option<usize>,
    /// How predictions settle.
    #[command(flatten)]
    pub settle: SettleFlags,
    /// Batch size.
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    pub batch_size: usize,
    /// The substrate.
    #[command(flatten)]
    pub substrate: SubstrateArgs,
    /// Gradients averaged per attack step on stochastic substrates (EOT); default 1 on digital,
    /// 10 on netlist substrates.
    #[arg(long, value_name = "N")]
    pub eot: Option<usize>,
}

impl TargetArgs {
    /// The library's [`Target`], its substrate checked.
    pub fn target(&self) -> Result<Target> {
        Ok(Target {
            model: self.model.model.clone(),
            spec: self.model.spec.clone(),
            data: self.data.spec.clone(),
            t_predict: self.t_predict,
            t_attack: self.t_attack,
            settle: self.settle.settle()?,
            subset: self.data.subset,
            batch_size: self.batch_size,
            substrate: self.substrate.spec()?,
            eot: self.eot,
        })
    }
}

/// What the global `--device` says: the compute device, or — on `compile`, `export` and `sweep`,
/// whose `--device` named the device preset before `--preset` existed — a preset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceFlag {
    /// `cpu`, `gpu` or `gpu:N` (none given: the file's device, else the CPU).
    pub compute: Option<Device>,
    /// Any other value, where a preset is accepted.
    pub preset: Option<String>,
}

impl DeviceFlag {
    /// Read `--device VALUE`; `takes_preset`: the command has a device preset.
    pub fn parse(value: Option<&str>, takes_preset: bool) -> Result<Self> {
        let Some(v) = value else {
            return Ok(DeviceFlag::default());
        };
        match v.parse::<Device>() {
            Ok(d) => Ok(DeviceFlag {
                compute: Some(d),
                preset: None,
            }),
            Err(_) if takes_preset => Ok(DeviceFlag {
                compute: None,
                preset: Some(v.to_string()),
            }),
            Err(e) => bail!(
                "--device: {e} (a device preset goes in --substrate netlist:<preset>, or --preset \
                 on compile, export and sweep)"
            ),
        }
    }

    /// The compute device (the CPU unless one was given).
    pub fn device(&self) -> Device {
        self.compute.unwrap_or_default()
    }

    /// The device preset: `--preset`, or `--device <preset>`; not both.
    pub fn preset(&self, preset: Option<&str>) -> Result<Option<String>> {
        match (preset, &self.preset) {
            (Some(p), Some(d)) => {
                bail!("--preset {p} and --device {d}: give the device preset once (--preset)")
            }
            (p, d) => Ok(p.map(str::to_string).or_else(|| d.clone())),
        }
    }
}

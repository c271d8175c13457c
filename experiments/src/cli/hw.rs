//! `epsim netlist check`, `epsim compile` and `epsim export`: the hardware commands of the CLI.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use sim::netlist::Netlist;

use super::args::{DeviceArgs, ModelArgs};
use crate::classifier::load::load_host_model;
use crate::classifier::substrate::{compile_model, load_preset};
use crate::device::Device;
use crate::files::write_atomic;

/// `epsim netlist ...`
#[derive(Debug, Subcommand)]
pub enum NetlistCommand {
    /// Validate a netlist file: structure, shapes, references, parameter ranges, tensors, device
    /// entries and whether the EP dynamics can realize it. Errors name the file and the JSON path.
    Check(CheckArgs),
}

/// Arguments of `epsim netlist check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Netlist JSON file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Also program the devices (realize the netlist) with --seed.
    #[arg(long)]
    pub realize: bool,
}

/// Arguments of `epsim compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Device preset: a built-in name (ideal, pcm, rram, ecram) or a preset TOML file (also
    /// given as --device PRESET).
    #[arg(long, value_name = "PRESET|TOML")]
    pub preset: Option<String>,
    /// Preset overrides and tiles.
    #[command(flatten)]
    pub hw: DeviceArgs,
    /// Output netlist JSON.
    #[arg(short, long, value_name = "JSON")]
    pub output: PathBuf,
}

/// Arguments of `epsim export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Model file (with --preset); or give --netlist.
    #[arg(long, value_name = "SAFETENSORS", required_unless_present = "netlist")]
    pub model: Option<PathBuf>,
    /// Model spec (TOML or JSON) for files without one.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Device preset (built-in name or TOML file; also given as --device PRESET).
    #[arg(long, value_name = "PRESET|TOML")]
    pub preset: Option<String>,
    /// Preset overrides and tiles.
    #[command(flatten)]
    pub hw: DeviceArgs,
    /// Export a compiled netlist instead of a model.
    #[arg(long, value_name = "JSON", conflicts_with_all = ["model", "preset"])]
    pub netlist: Option<PathBuf>,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `epsim netlist check` (with --realize: programmed on `device`).
pub fn check(a: &CheckArgs, seed: u64, device: Device) -> Result<()> {
    let l = Netlist::read(&a.file)?;
    let file = a.file.display().to_string();
    let with_file = |mut e: sim::netlist::NetlistError| {
        e.file = file.clone();
        e
    };
    for (name, v) in &l.netlist.devices {
        ep::compile::DeviceSpec::from_json(v, &format!("$.devices.{name}")).map_err(with_file)?;
    }
    ep::compile::model_of(&l).map_err(with_file)?;
    if a.realize {
        crate::with_backend!(device, be => {
            ep::substrate::Realized::new(be, &l, seed).map_err(with_file)?;
        });
    }
    print!("{}", l.summary());
    println!("{file}: ok");
    Ok(())
}

/// `epsim compile` with the device preset (`--preset` or `--device`).
pub fn compile(a: &CompileArgs, preset: Option<String>) -> Result<()> {
    let preset = preset.context("a device preset is needed: --preset PRESET|TOML")?;
    let net = load_host_model(&a.model.model, a.model.spec.as_deref())?;
    let preset = load_preset(&preset, &a.hw.set)?;
    let l = compile_model(&net, &preset, a.hw.tile_size()?)?;
    write_atomic(&a.output, l.netlist.to_json().as_bytes())?;
    print!("{}", l.summary());
    println!("netlist written to {}", a.output.display());
    Ok(())
}

/// `epsim export` of a netlist, or of a model with the device preset (`--preset` or `--device`).
pub fn export(a: &ExportArgs, preset: Option<String>) -> Result<()> {
    let l = match &a.netlist {
        Some(p) => {
            anyhow::ensure!(
                preset.is_none(),
                "--netlist exports a compiled netlist: a device preset does not apply"
            );
            Netlist::read(p)?
        }
        None => {
            let model = a.model.as_ref().context("--model or --netlist is needed")?;
            let preset = preset.context("a device preset is needed with --model: --preset")?;
            let net = load_host_model(model, a.spec.as_deref())?;
            let preset = load_preset(&preset, &a.hw.set)?;
            compile_model(&net, &preset, a.hw.tile_size()?)?
        }
    };
    let m = crate::export::write_export(&l, &a.out)
        .with_context(|| format!("exporting to {}", a.out.display()))?;
    let n: usize = m.layers.iter().map(|l| l.tiles.len()).sum();
    println!(
        "exported {} layers, {n} tiles to {} (manifest.json)",
        m.layers.len(),
        a.out.display()
    );
    Ok(())
}

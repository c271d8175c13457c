//! `epsim netlist check`, `epsim compile`, `epsim export` and `epsim eval --substrate netlist:...`:
//! the hardware commands of the CLI.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use clap::{Args, Subcommand};
use sim::netlist::Netlist;

use crate::cli_ep::EvalArgs;
use crate::data::DatasetSpec;
use crate::ep_run;
use crate::substrate::{self, load_preset, parse_tile};

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
    /// Model file (see `epsim eval --help`).
    #[arg(long, value_name = "SAFETENSORS")]
    pub model: PathBuf,
    /// Model spec (TOML or JSON) for files without one.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Device preset: a built-in name (ideal, pcm, rram, ecram) or a preset TOML file.
    #[arg(long, value_name = "PRESET|TOML")]
    pub device: String,
    /// Preset overrides, e.g. --set read_noise_scale=0.5,t_inference=3600 (nonideality_scale=s
    /// scales every non-ideality; neuron.kind=spiking,neuron.window=32 makes the neurons
    /// rate-coded integrate-and-fire ones).
    #[arg(long, value_delimiter = ',', value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Physical array size ROWSxCOLS.
    #[arg(long, default_value = "512x512", value_name = "RxC")]
    pub tile: String,
    /// Output netlist JSON.
    #[arg(short, long, value_name = "JSON")]
    pub output: PathBuf,
}

/// Arguments of `epsim export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Model file (with --device); or give --netlist.
    #[arg(long, value_name = "SAFETENSORS", required_unless_present = "netlist")]
    pub model: Option<PathBuf>,
    /// Model spec (TOML or JSON) for files without one.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Device preset (built-in name or TOML file).
    #[arg(long, value_name = "PRESET|TOML", required_unless_present = "netlist")]
    pub device: Option<String>,
    /// Preset overrides (see `epsim compile --help`).
    #[arg(long, value_delimiter = ',', value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Physical array size ROWSxCOLS.
    #[arg(long, default_value = "512x512", value_name = "RxC")]
    pub tile: String,
    /// Export a compiled netlist instead of a model.
    #[arg(long, value_name = "JSON", conflicts_with_all = ["model", "device"])]
    pub netlist: Option<PathBuf>,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `epsim netlist check`.
pub fn check(a: &CheckArgs, seed: u64) -> Result<()> {
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
        ep::substrate::Realized::new(&sim::Cpu, &l, seed).map_err(with_file)?;
    }
    print!("{}", l.summary());
    println!("{file}: ok");
    Ok(())
}

/// `epsim compile`.
pub fn compile(a: &CompileArgs) -> Result<()> {
    let net = ep_run::load_model(&a.model, a.spec.as_deref())?;
    let preset = load_preset(&a.device, &a.set)?;
    let l = substrate::compile_model(&net, &preset, parse_tile(&a.tile)?)?;
    crate::ep_run::write_atomic(&a.output, l.netlist.to_json().as_bytes())?;
    print!("{}", l.summary());
    println!("netlist written to {}", a.output.display());
    Ok(())
}

/// `epsim export`.
pub fn export(a: &ExportArgs) -> Result<()> {
    let l = match &a.netlist {
        Some(p) => Netlist::read(p)?,
        None => {
            let model = a.model.as_ref().context("--model or --netlist is needed")?;
            let net = ep_run::load_model(model, a.spec.as_deref())?;
            let preset = load_preset(a.device.as_deref().context("--device is needed")?, &a.set)?;
            substrate::compile_model(&net, &preset, parse_tile(&a.tile)?)?
        }
    };
    let m = ep::export::export(&l, &a.out)
        .with_context(|| format!("exporting to {}", a.out.display()))?;
    let n: usize = m.layers.iter().map(|l| l.tiles.len()).sum();
    println!(
        "exported {} layers, {n} tiles to {} (manifest.json)",
        m.layers.len(),
        a.out.display()
    );
    Ok(())
}

/// `epsim eval --substrate netlist:<preset>`: accuracy of the realized model (one query per batch).
pub fn eval_substrate(a: &EvalArgs, seed: u64) -> Result<()> {
    ensure!(
        !a.per_step,
        "--per-step is only available on the digital substrate"
    );
    let net = if a
        .substrate
        .strip_prefix("netlist:")
        .is_some_and(|d| d.ends_with(".json"))
    {
        None
    } else {
        Some(ep_run::load_model(&a.model, a.spec.as_deref())?)
    };
    let clf = substrate::classifier(
        net,
        &a.substrate,
        &a.set,
        parse_tile(&a.tile)?,
        seed,
        a.steps,
    )?;
    let spec =
        DatasetSpec::parse(&a.data).map_err(|e| anyhow::anyhow!("--data {:?}: {e}", a.data))?;
    let mut d = ep_run::load_split(&a.data, spec.split.as_deref().unwrap_or("test"))?;
    if let Some(n) = a.subset {
        d = ep_run::balanced_subset(&d, n);
    }
    ensure!(
        d.image_shape() == clf.input_shape(),
        "the model expects {:?} inputs, {} has {:?}",
        clf.input_shape(),
        a.data,
        d.image_shape()
    );
    ensure!(a.batch_size >= 1, "--batch-size must be ≥ 1");
    let t = std::time::Instant::now();
    let loader = crate::data::Loader::new(&d, a.batch_size, sim::Stream::new(0, "eval"));
    let mut correct = 0usize;
    for b in loader.epoch(0) {
        let logits = clf.logits(&b.x)?;
        let pred = ep::train::argmax_rows(&logits);
        correct += pred.iter().zip(&b.y).filter(|(p, l)| p == l).count();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} on {}: {} images: accuracy {:.4} ({:.1} img/s)",
        clf.describe(),
        a.data,
        d.len(),
        correct as f64 / d.len().max(1) as f64,
        d.len() as f64 / secs
    );
    Ok(())
}

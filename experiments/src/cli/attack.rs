//! `epsim attack`, `epsim robustness` and `epsim corrupt`: adversarial and natural-corruption
//! evaluations (the work is in [`crate::study`] and [`crate::corrupt::copies`]).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::args::{OutputArgs, TargetArgs};
use crate::classifier::substrate::SubstrateSpec;
use crate::device::Engine;
use crate::study::attack::AttackRun;
use crate::study::robustness::RobustnessRun;

/// Arguments of `epsim attack`.
#[derive(Debug, Args)]
pub struct AttackArgs {
    /// Model, substrate and data.
    #[command(flatten)]
    pub t: TargetArgs,
    /// Attack: pgd-linf, pgd-l2, apgd-ce-linf, apgd-ce-l2, apgd-t-linf, apgd-t-l2, square-linf,
    /// square-l2, cw-l2, deepfool-l2, deepfool-linf, autoattack-linf, autoattack-l2,
    /// autoattack-rand-linf, autoattack-rand-l2, art-autoattack-linf, art-autoattack-l2.
    /// Under --protocol advep, autoattack-<norm> is ART's ensemble the seed paper ran
    /// (= art-autoattack-<norm> on predicted labels: APGD-CE and APGD-DLR with 5 restarts each,
    /// DeepFool, Square 5000 queries × 5, per-sample worst case); autoattack ignores --steps.
    #[arg(long)]
    pub attack: String,
    /// Strengths, comma-separated; fractions allowed (8/255). ε in pixel units ([0, 1] images); for
    /// cw-l2 these are the fixed constants c. Presets of the seed paper's grids: paper-linf
    /// (10 values 1e-4..0.1 geometric, and 0.031), paper-l2 (10 values 0.05..3, and 1),
    /// paper-aa-linf, paper-aa-l2, paper-square-linf, paper-square-l2 (its AutoAttack and Square
    /// loops).
    #[arg(long, value_delimiter = ',', required = true)]
    pub eps: Vec<String>,
    /// Iterations (PGD/APGD/C&W/DeepFool) or queries (Square); default: the attack's own. PGD
    /// under the standard protocol then steps 2.5·ε/N (the path stays 2.5·ε); under advep ART's
    /// step 2.5·ε/20 is kept.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Restarts (PGD).
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// Results file (JSON Lines, appended).
    #[arg(long, default_value = "results.jsonl")]
    pub out: PathBuf,
    /// Evaluation protocol: `standard` (random start, true labels, [0,1] box) or `advep` (the seed
    /// paper's ART settings: PGD without random start on the model's predicted labels, 20
    /// iterations of 2.5·ε/20, no box clip; Square on softmax outputs with 1000 queries;
    /// autoattack-<norm> = ART's ensemble). Combine advep with --t-attack/--t-predict (e.g. 29 and
    /// 250) to reproduce its truncated gradients.
    #[arg(long, default_value = "standard", value_parser = ["standard", "advep"])]
    pub protocol: String,
    /// Also write, per strength, a PNG grid of the first N images (clean, adversarial, amplified
    /// perturbation, with predictions) next to --out: examples_<attack>_eps<ε>.png.
    #[arg(long, value_name = "N")]
    pub save_examples: Option<usize>,
    /// Transfer attack: craft the adversarial examples on the same model on this substrate
    /// (`digital`, or `netlist:<preset>` without overrides) and count them on --substrate's
    /// predictions. The check for gradient masking by a substrate: a white-box attack on the
    /// substrate that does worse than the transfer from digital did not find the substrate's
    /// real weaknesses. The record's attack name ends in "transfer from <source>".
    #[arg(long, value_name = "SUBSTRATE")]
    pub transfer_from: Option<String>,
}

/// Arguments of `epsim robustness`.
#[derive(Debug, Args)]
pub struct RobustnessArgs {
    /// Model, substrate and data.
    #[command(flatten)]
    pub t: TargetArgs,
    /// Suite file (TOML): [[attack]] name/eps/steps/restarts/save_examples (eps may name presets
    /// such as paper-linf), [corruptions] names/severities (and released = "cifar10c:DIR" to read
    /// the released CIFAR-10-C files instead of generating), and at the top protocols = ["advep",
    /// "standard"] (default ["standard"]; both add a "Protocol gap" table). Example:
    /// configs/suites/paper-protocols.toml.
    #[arg(long, value_name = "TOML")]
    pub suite: PathBuf,
    /// Where the results go.
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Arguments of `epsim corrupt`.
#[derive(Debug, Args)]
pub struct CorruptArgs {
    /// Dataset spec of 3x32x32 images (e.g. CIFAR-10 test); without a split the test split.
    #[arg(long, value_name = "SPEC")]
    pub data: String,
    /// Corruption names, comma-separated, or "all" (the 15 CIFAR-10-C ones + 4 extras).
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub corruption: Vec<String>,
    /// Severities 1..=5, comma-separated (default: all five).
    #[arg(long, value_delimiter = ',')]
    pub severity: Vec<u32>,
    /// Output directory: one `<corruption>_s<severity>.bin` per pair in the official CIFAR-10
    /// binary layout (readable as `cifar10:<file>`), or with --format npy the released
    /// CIFAR-10-C layout.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// binary (the CIFAR-10 binary files above) or npy: `<corruption>.npy` (uint8,
    /// 50000x32x32x3 for a 10,000-image set: severities 1..5 stacked) and `labels.npy` (int64,
    /// repeated per severity), interchangeable with the released CIFAR-10-C files and readable as
    /// cifar10c:DIR:<corruption>[:<severity>]; always all five severities.
    #[arg(long, default_value = "binary", value_name = "FORMAT")]
    pub format: crate::corrupt::copies::Format,
}

/// `epsim attack`, computing on `be`.
pub fn attack<B: Engine>(be: &B, a: &AttackArgs, seed: u64) -> Result<()> {
    AttackRun {
        target: a.t.target()?,
        attack: a.attack.clone(),
        eps: a.eps.clone(),
        steps: a.steps,
        restarts: a.restarts,
        out: a.out.clone(),
        protocol: a.protocol.clone(),
        save_examples: a.save_examples,
        transfer_from: a
            .transfer_from
            .as_deref()
            .map(SubstrateSpec::transfer_source)
            .transpose()
            .context("--transfer-from")?,
    }
    .run(be, seed)
}

/// `epsim robustness`, computing on `be`.
pub fn robustness<B: Engine>(be: &B, a: &RobustnessArgs, seed: u64) -> Result<()> {
    RobustnessRun {
        target: a.t.target()?,
        suite: a.suite.clone(),
        out_dir: a.out.dir_or("robustness"),
    }
    .run(be, seed)
}

/// `epsim corrupt`.
pub fn corrupt(a: &CorruptArgs, seed: u64) -> Result<()> {
    crate::corrupt::copies::write_copies(
        &a.data,
        &a.corruption,
        &a.severity,
        &a.out,
        seed,
        a.format,
    )
}

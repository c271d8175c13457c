//! `epsim attack` and `epsim corrupt`: adversarial and natural-corruption evaluations from the
//! command line, with one JSON Lines record per (attack, strength).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde::Serialize;

use crate::attacks::{self, Attack, Norm};
use crate::classifier::{Classifier, EpClassifier, Normalize};
use crate::corrupt::Corruption;
use crate::data::DatasetSpec;
use crate::ep_run;

/// What is evaluated: a model on a substrate, on a dataset (shared by `attack` and `robustness`).
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Model file: EP checkpoint, PyTorch-style state dict + --spec, or a baseline checkpoint.
    #[arg(long, value_name = "SAFETENSORS")]
    pub model: PathBuf,
    /// Model spec (TOML or JSON) for files without one.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Dataset spec; without a split the test split is used.
    #[arg(long, value_name = "SPEC")]
    pub data: String,
    /// Free-phase steps for predictions (default: the model's T1).
    #[arg(long, value_name = "T")]
    pub t_predict: Option<usize>,
    /// Free-phase steps the gradient is taken through (default: = T_predict, the honest choice).
    #[arg(long, value_name = "T")]
    pub t_attack: Option<usize>,
    /// Use only the first N images (class-balanced).
    #[arg(long, value_name = "N")]
    pub subset: Option<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Substrate: digital, or netlist:<preset|preset.toml|netlist.json> (stochastic: attacks
    /// average --eot gradients per step).
    #[arg(long, default_value = "digital", value_name = "SUBSTRATE")]
    pub substrate: String,
    /// Preset overrides for netlist substrates, e.g. --set read_noise_scale=0.5,t_inference=3600.
    #[arg(long, value_delimiter = ',', value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Physical array size ROWSxCOLS for netlist substrates.
    #[arg(long, default_value = "512x512", value_name = "RxC")]
    pub tile: String,
    /// Gradients averaged per attack step on stochastic substrates (EOT); default 1 on digital,
    /// 10 on netlist substrates.
    #[arg(long, value_name = "N")]
    pub eot: Option<usize>,
}

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
    /// Iterations (PGD/APGD/C&W/DeepFool) or queries (Square); default: the attack's own.
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
}

/// One result record.
#[derive(Debug, Serialize)]
pub struct AttackRecord {
    /// Model file.
    pub model: String,
    /// Substrate the model ran on.
    pub substrate: String,
    /// Evaluation protocol.
    pub protocol: String,
    /// Attack name with its settings.
    pub attack: String,
    /// Threat model.
    pub norm: String,
    /// Strength (ε, or c for fixed-c C&W).
    pub eps: f64,
    /// The strength as given.
    pub eps_text: String,
    /// Iterations or queries.
    pub steps: Option<usize>,
    /// Free-phase steps for predictions / gradients.
    pub t_predict: usize,
    /// Free-phase steps of the gradient.
    pub t_attack: usize,
    /// Master seed.
    pub seed: u64,
    /// Dataset spec.
    pub data: String,
    /// Images attacked.
    pub n: usize,
    /// Clean accuracy on them.
    pub clean_accuracy: f64,
    /// Accuracy under attack.
    pub robust_accuracy: f64,
    /// Images through the model (forward queries).
    pub queries: u64,
    /// Images through the gradient.
    pub grads: u64,
    /// Wall time (s).
    pub wall_s: f64,
    /// Git commit of the code.
    pub commit: String,
}

/// Parse "0.03", "8/255".
pub fn parse_strength(s: &str) -> Result<f64> {
    let t = s.trim();
    let v = match t.split_once('/') {
        Some((a, b)) => {
            let (a, b): (f64, f64) = (a.trim().parse()?, b.trim().parse()?);
            ensure!(b != 0.0, "division by zero in {t:?}");
            a / b
        }
        None => t.parse().with_context(|| format!("not a number: {t:?}"))?,
    };
    ensure!(
        v.is_finite() && v >= 0.0,
        "strength {t:?} must be finite and ≥ 0"
    );
    Ok(v)
}

/// The commit of the working tree, or "unknown".
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn build_attack(
    name: &str,
    eps: f32,
    steps: Option<usize>,
    restarts: usize,
    eot: usize,
    protocol: &str,
) -> Result<Box<dyn Attack>> {
    let advep = protocol == "advep";
    let (base, norm) = match name.rsplit_once('-') {
        Some((b, n)) if matches!(n, "linf" | "l2") => (b, n.parse::<Norm>()?),
        _ => bail!("attack {name:?}: expected <kind>-<linf|l2>, e.g. pgd-linf (see --help)"),
    };
    Ok(match base {
        "pgd" => {
            let mut a = if advep {
                attacks::Pgd::paper(norm, eps)
            } else {
                attacks::Pgd::new(norm, eps)
            };
            a.eot_iter = eot;
            if let Some(s) = steps {
                a.iters = s;
            }
            a.restarts = restarts;
            Box::new(a)
        }
        "apgd-ce" => {
            let mut a = attacks::Apgd::new(norm, eps, attacks::ApgdLoss::Ce);
            a.eot_iter = eot;
            if let Some(s) = steps {
                a.n_iter = s;
            }
            Box::new(a)
        }
        "apgd-t" => {
            let mut a = attacks::ApgdT::new(norm, eps);
            a.eot_iter = eot;
            if let Some(s) = steps {
                a.n_iter = s;
            }
            Box::new(a)
        }
        "square" => {
            let mut a = attacks::Square::new(norm, eps);
            if advep {
                a.on_probabilities = true;
                a.n_queries = 1000;
            }
            a.eot_iter = eot;
            if let Some(s) = steps {
                a.n_queries = s;
            }
            Box::new(a)
        }
        "cw" => {
            ensure!(norm == Norm::L2, "C&W is an L2 attack: use cw-l2");
            let mut a = attacks::CarliniWagnerL2::fixed_c(eps, steps.unwrap_or(1000));
            a.eot_iter = eot;
            Box::new(a)
        }
        "art-autoattack" | "autoattack" => {
            // Plain autoattack reaches here only under advep (see attack_strength).
            let mut a = attacks::ArtAutoAttack::paper(norm, eps);
            a.use_predicted = advep;
            a.eot_iter = eot;
            Box::new(a)
        }
        "autoattack-rand" => bail!(
            "the advep protocol has no 'rand' AutoAttack: the seed paper ran ART's ensemble (autoattack-{norm})",
            norm = norm.to_string().to_lowercase()
        ),
        "deepfool" => {
            let mut a = attacks::DeepFool::new(norm);
            a.eot_iter = eot;
            a.eps = Some(eps);
            if let Some(s) = steps {
                a.max_iter = s;
            }
            Box::new(a)
        }
        other => bail!("unknown attack {other:?} (see epsim attack --help)"),
    })
}

/// Whether a model file holds a backprop baseline (its spec has `kind` bp_cnn, adv_cnn or vit),
/// not an EP network.
pub fn is_baseline_file(path: &std::path::Path) -> Result<bool> {
    let bytes = std::fs::read(path).with_context(|| format!("reading model {}", path.display()))?;
    let f = ep::checkpoint::TensorFile::from_bytes(&bytes)
        .with_context(|| format!("{}", path.display()))?;
    Ok(f.metadata
        .get(ep::checkpoint::SPEC_KEY)
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .is_some_and(|v| {
            v.get("kind")
                .and_then(|k| k.as_str())
                .is_some_and(|k| matches!(k, "bp_cnn" | "adv_cnn" | "vit"))
        }))
}

/// The EP model of `a.t.model` as a classifier on `a.t.substrate`, with its (T_predict, T_attack).
fn ep_classifier(t: &TargetArgs, seed: u64) -> Result<(Box<dyn Classifier>, usize, usize)> {
    let net = ep_run::load_model(&t.model, t.spec.as_deref())?;
    let c = net.spec.input[0];
    let norm = match &net.spec.input_norm {
        Some(n) => Normalize {
            mean: n.mean.clone(),
            std: n.std.clone(),
        },
        None => Normalize {
            mean: vec![0.0; c],
            std: vec![1.0; c],
        },
    };
    let t_predict = t.t_predict.unwrap_or(net.spec.t1);
    let t_attack = t.t_attack.unwrap_or(t_predict);
    ensure!(
        t_predict >= 1 && t_attack >= 1,
        "free-phase steps must be ≥ 1"
    );
    let clf: Box<dyn Classifier> = if t.substrate == "digital" {
        ensure!(t.set.is_empty(), "--set applies to netlist substrates only");
        Box::new(EpClassifier {
            net,
            norm,
            t_predict,
            t_attack,
        })
    } else {
        ensure!(
            t.t_attack.is_none() || t.t_attack == t.t_predict,
            "--t-attack may differ from --t-predict only on the digital substrate"
        );
        let tile = crate::substrate::parse_tile(&t.tile)?;
        crate::substrate::classifier(Some(net), &t.substrate, &t.set, tile, seed, Some(t_predict))?
    };
    Ok((clf, t_predict, t_attack))
}

/// Counts of one attack at one strength over a dataset.
pub struct Outcome {
    /// Correct on clean inputs.
    pub clean: usize,
    /// Correct under attack (per-sample worst case).
    pub robust: usize,
    /// Forward queries (images).
    pub queries: u64,
    /// Gradient evaluations (images).
    pub grads: u64,
    /// Attack name with its settings.
    pub name: String,
    /// When it started.
    pub started: Instant,
}

/// Run attack `attack` (a CLI name, see `epsim attack --help`) at strength `eps` over every batch
/// of `loader` (pixel-space images). `eot`: gradients per step on stochastic classifiers (default 10
/// there, 1 otherwise).
#[allow(clippy::too_many_arguments)]
pub fn attack_strength(
    clf: &dyn Classifier,
    loader: &crate::data::Loader<'_>,
    attack: &str,
    eps: f32,
    label: &str,
    steps: Option<usize>,
    restarts: usize,
    eot: Option<usize>,
    seed: u64,
    protocol: &str,
) -> Result<Outcome> {
    let (o, _) = attack_strength_examples(
        clf, loader, attack, eps, label, steps, restarts, eot, seed, protocol, 0,
    )?;
    Ok(o)
}

/// [`attack_strength`], also keeping the first `keep` images in loader order with their
/// adversarial versions and predictions (for `--save-examples`).
#[allow(clippy::too_many_arguments)]
pub fn attack_strength_examples(
    clf: &dyn Classifier,
    loader: &crate::data::Loader<'_>,
    attack: &str,
    eps: f32,
    label: &str,
    steps: Option<usize>,
    restarts: usize,
    eot: Option<usize>,
    seed: u64,
    protocol: &str,
    keep: usize,
) -> Result<(Outcome, crate::adv_examples::Examples)> {
    let mut ex = crate::adv_examples::Examples::new(clf.input_shape());
    let started = Instant::now();
    let (mut clean, mut robust, mut queries, mut grads, mut name) =
        (0usize, 0usize, 0u64, 0u64, String::new());
    let eot_n = eot.unwrap_or(if clf.stochastic() { 10 } else { 1 });
    let pb = crate::data::progress(loader.num_batches() as u64, &format!("{attack} ε={label}"));
    for b in loader.epoch(0) {
        let ids: Vec<u64> = b.indices.iter().map(|&i| i as u64).collect();
        if attack.starts_with("autoattack") && protocol != "advep" {
            let (_, nm) = attack.rsplit_once('-').context("autoattack-<linf|l2>")?;
            let nrm: Norm = nm.parse()?;
            let aa = if attack.starts_with("autoattack-rand") {
                let mut aa = attacks::AutoAttack::rand(nrm, eps);
                if let Some(e) = eot {
                    aa.eot_iter = e;
                }
                aa
            } else {
                if clf.stochastic() {
                    tracing::warn!(
                        "AutoAttack 'standard' on a stochastic substrate: use autoattack-rand-* (EOT) for an honest evaluation"
                    );
                }
                attacks::AutoAttack::standard(nrm, eps)
            };
            let counted = crate::classifier::Counted::new(clf);
            let r = aa.evaluate(&counted, &b.x, &b.y, &ids, seed)?;
            ex.push_batch(clf, &b.x, &r.x_adv, &b.y, keep)?;
            clean += r.clean_correct.iter().filter(|&&c| c).count();
            robust += r.robust.iter().filter(|&&c| c).count();
            queries += counted.queries.load(std::sync::atomic::Ordering::Relaxed);
            grads += counted.grads.load(std::sync::atomic::Ordering::Relaxed);
            name = format!("autoattack-{:?}", aa.version).to_lowercase();
        } else {
            let atk = build_attack(attack, eps, steps, restarts, eot_n, protocol)?;
            name = atk.name();
            let pred = ep::train::argmax_rows(&clf.logits(&b.x)?);
            let ok: Vec<bool> = pred.iter().zip(&b.y).map(|(p, l)| p == l).collect();
            let r = atk.run_indexed(clf, &b.x, &b.y, &ids, seed)?;
            ex.push_batch(clf, &b.x, &r.x_adv, &b.y, keep)?;
            clean += ok.iter().filter(|&&c| c).count();
            // Robust: correct on the clean image and not fooled by the attack.
            robust += ok
                .iter()
                .zip(&r.success)
                .filter(|&(&c, &s)| c && !s)
                .count();
            queries += r.queries;
            grads += r.grads;
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let o = Outcome {
        clean,
        robust,
        queries,
        grads,
        name,
        started,
    };
    Ok((o, ex))
}

/// Load the dataset (subset) and the model as a classifier on its substrate.
pub fn load_target(
    t: &TargetArgs,
    seed: u64,
) -> Result<(crate::data::Dataset, Box<dyn Classifier>, usize, usize)> {
    let spec =
        DatasetSpec::parse(&t.data).map_err(|e| anyhow::anyhow!("--data {:?}: {e}", t.data))?;
    let mut d = ep_run::load_split(&t.data, spec.split.as_deref().unwrap_or("test"))?;
    if let Some(n) = t.subset {
        d = ep_run::balanced_subset(&d, n);
    }
    let (clf, t_predict, t_attack) = if is_baseline_file(&t.model)? {
        ensure!(
            t.substrate == "digital" && t.set.is_empty(),
            "{}: backprop baselines run on the digital substrate only",
            t.model.display()
        );
        let m = crate::bp_run::load_baseline(&t.model)?;
        let c: Box<dyn Classifier> = Box::new(crate::classifier::BaselineClassifier::new(
            std::borrow::Cow::Owned(m),
        ));
        (c, 0, 0)
    } else {
        ep_classifier(t, seed)?
    };
    ensure!(
        d.image_shape() == clf.input_shape(),
        "the model expects {:?} inputs, {} has {:?}",
        clf.input_shape(),
        t.data,
        d.image_shape()
    );
    Ok((d, clf, t_predict, t_attack))
}

/// `epsim attack`.
pub fn attack(a: &AttackArgs, seed: u64) -> Result<()> {
    let (d, clf, t_predict, t_attack) = load_target(&a.t, seed)?;
    let clf = clf.as_ref();
    let strengths = crate::protocol::expand_eps(&a.eps).context("--eps")?;
    let commit = git_commit();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.out)
        .with_context(|| format!("opening {}", a.out.display()))?;
    // Pixel-space batches (the classifier normalizes inside).
    let loader =
        crate::data::Loader::new(&d, a.t.batch_size, sim::Stream::new(seed, "attack.data"));
    println!(
        "{:<28} {:>10} {:>8} {:>8} {:>10}",
        "attack", "eps", "clean", "robust", "time (s)"
    );
    ensure!(a.save_examples != Some(0), "--save-examples needs N ≥ 1");
    for (text, eps) in strengths {
        let (o, ex) = attack_strength_examples(
            clf,
            &loader,
            &a.attack,
            eps as f32,
            &text,
            a.steps,
            a.restarts,
            a.t.eot,
            seed,
            &a.protocol,
            a.save_examples.unwrap_or(0),
        )?;
        if a.save_examples.is_some() {
            crate::adv_examples::save(&a.out, &a.attack, &text, &o.name, &ex, &d.classes)?;
        }
        let (clean, robust, queries, grads, name, t0) =
            (o.clean, o.robust, o.queries, o.grads, o.name, o.started);
        let n = d.len();
        let rec = AttackRecord {
            model: a.t.model.display().to_string(),
            substrate: if a.t.set.is_empty() {
                a.t.substrate.clone()
            } else {
                format!("{} --set {}", a.t.substrate, a.t.set.join(","))
            },
            protocol: a.protocol.clone(),
            attack: name,
            norm: a
                .attack
                .rsplit_once('-')
                .map(|(_, n)| n.to_string())
                .unwrap_or_default(),
            eps,
            eps_text: text.clone(),
            steps: a.steps,
            t_predict,
            t_attack,
            seed,
            data: a.t.data.clone(),
            n,
            clean_accuracy: clean as f64 / n.max(1) as f64,
            robust_accuracy: robust as f64 / n.max(1) as f64,
            queries,
            grads,
            wall_s: t0.elapsed().as_secs_f64(),
            commit: commit.clone(),
        };
        println!(
            "{:<28} {:>10} {:>8.4} {:>8.4} {:>10.1}",
            a.attack, text, rec.clean_accuracy, rec.robust_accuracy, rec.wall_s
        );
        writeln!(out, "{}", serde_json::to_string(&rec)?)
            .with_context(|| format!("writing {}", a.out.display()))?;
    }
    println!("results appended to {}", a.out.display());
    Ok(())
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
    /// binary layout (readable as `cifar10:<file>`).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `epsim corrupt`.
pub fn corrupt(a: &CorruptArgs, seed: u64) -> Result<()> {
    let spec =
        DatasetSpec::parse(&a.data).map_err(|e| anyhow::anyhow!("--data {:?}: {e}", a.data))?;
    let d = ep_run::load_split(&a.data, spec.split.as_deref().unwrap_or("test"))?;
    ensure!(
        d.image_shape() == [3, 32, 32],
        "{}: epsim corrupt writes the CIFAR binary layout and needs 3x32x32 images, got {:?}",
        a.data,
        d.image_shape()
    );
    ensure!(d.classes.len() <= 256, "labels must fit a byte");
    let kinds: Vec<Corruption> = if a.corruption.iter().any(|c| c == "all") {
        Corruption::all().to_vec()
    } else {
        a.corruption
            .iter()
            .map(|c| Corruption::from_name(c).map_err(|e| anyhow::anyhow!("{e}")))
            .collect::<Result<_>>()?
    };
    let sevs: Vec<u32> = if a.severity.is_empty() {
        (1..=5).collect()
    } else {
        a.severity.clone()
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let labels: Vec<u8> = d.labels.iter().map(|&l| l as u8).collect();
    let pb = crate::data::progress((kinds.len() * sevs.len()) as u64, "corrupt");
    for c in &kinds {
        if let Some(note) = c.substitute_note() {
            println!("note: {note}");
        }
        for &s in &sevs {
            let imgs = crate::corrupt::corrupt_dataset(&d.images, &labels, *c, s, seed)
                .map_err(|e| anyhow::anyhow!("{} severity {s}: {e}", c.name()))?;
            let path = a.out.join(format!("{}_s{s}.bin", c.name()));
            crate::corrupt::write_cifar_binary(&path, &labels, &imgs)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    println!(
        "wrote {} files ({} images each) to {}",
        kinds.len() * sevs.len(),
        d.len(),
        a.out.display()
    );
    Ok(())
}

/// A robustness suite (TOML): attacks × strengths (× protocols) and corruptions × severities.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Evaluation protocols every attack runs under ("standard", "advep"); default ["standard"].
    /// With both, report.md gets the "Protocol gap" section.
    #[serde(default = "standard_only")]
    pub protocols: Vec<String>,
    /// Attacks.
    #[serde(default)]
    pub attack: Vec<SuiteAttack>,
    /// Corruptions.
    #[serde(default)]
    pub corruptions: Option<SuiteCorruptions>,
}

/// One attack of a suite.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteAttack {
    /// Attack name as `epsim attack --attack`.
    pub name: String,
    /// Strengths ("8/255", "0.5", ...) or presets ("paper-linf", see `epsim attack --help`).
    pub eps: Vec<String>,
    /// Iterations or queries.
    #[serde(default)]
    pub steps: Option<usize>,
    /// Restarts (PGD).
    #[serde(default = "one")]
    pub restarts: usize,
    /// Write a PNG grid of the first N images per strength (as `epsim attack --save-examples`).
    #[serde(default)]
    pub save_examples: Option<usize>,
}

fn one() -> usize {
    1
}

fn standard_only() -> Vec<String> {
    vec!["standard".into()]
}

/// The corruptions of a suite.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteCorruptions {
    /// Names, or ["all"].
    pub names: Vec<String>,
    /// Severities 1..=5.
    #[serde(default = "all_severities")]
    pub severities: Vec<u32>,
}

fn all_severities() -> Vec<u32> {
    vec![1, 2, 3, 4, 5]
}

/// Arguments of `epsim robustness`.
#[derive(Debug, Args)]
pub struct RobustnessArgs {
    /// Model, substrate and data.
    #[command(flatten)]
    pub t: TargetArgs,
    /// Suite file (TOML): [[attack]] name/eps/steps/restarts/save_examples (eps may name presets
    /// such as paper-linf), [corruptions] names/severities, and at the top protocols = ["advep",
    /// "standard"] (default ["standard"]; both add a "Protocol gap" table). Example:
    /// configs/suites/paper-protocols.toml.
    #[arg(long, value_name = "TOML")]
    pub suite: PathBuf,
    /// Output directory: results.jsonl (appended) and report.md.
    #[arg(long, value_name = "DIR", default_value = "robustness")]
    pub out_dir: PathBuf,
}

/// One corruption result.
#[derive(Debug, Serialize)]
pub struct CorruptionRecord {
    /// Always "corruption".
    pub kind: String,
    /// Always "none": corruptions do not depend on the attack protocol.
    pub protocol: String,
    /// Model file.
    pub model: String,
    /// Substrate.
    pub substrate: String,
    /// Corruption name.
    pub corruption: String,
    /// Severity 1..=5.
    pub severity: u32,
    /// Master seed.
    pub seed: u64,
    /// Dataset spec.
    pub data: String,
    /// Images.
    pub n: usize,
    /// Accuracy on the corrupted images.
    pub accuracy: f64,
    /// Wall time (s).
    pub wall_s: f64,
    /// Git commit.
    pub commit: String,
    /// Set when the corruption is a documented substitute (frost).
    pub note: Option<String>,
}

fn accuracy(clf: &dyn Classifier, d: &crate::data::Dataset, batch: usize) -> Result<usize> {
    let loader = crate::data::Loader::new(d, batch, sim::Stream::new(0, "robustness.eval"));
    let mut correct = 0;
    for b in loader.epoch(0) {
        let pred = ep::train::argmax_rows(&clf.logits(&b.x)?);
        correct += pred.iter().zip(&b.y).filter(|(p, l)| p == l).count();
    }
    Ok(correct)
}

/// `epsim robustness`: run a suite, append every record to results.jsonl, write report.md with the
/// tables and the sanity checks.
pub fn robustness(a: &RobustnessArgs, seed: u64) -> Result<()> {
    let text = std::fs::read_to_string(&a.suite)
        .with_context(|| format!("reading suite {}", a.suite.display()))?;
    let suite: Suite = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: invalid suite: {e}", a.suite.display()))?;
    ensure!(
        !suite.attack.is_empty() || suite.corruptions.is_some(),
        "{}: the suite has no [[attack]] and no [corruptions]",
        a.suite.display()
    );
    for at in &suite.attack {
        ensure!(
            at.save_examples != Some(0),
            "{}: attack {}: save_examples needs N ≥ 1",
            a.suite.display(),
            at.name
        );
        crate::protocol::expand_eps(&at.eps)
            .with_context(|| format!("{}: attack {}", a.suite.display(), at.name))?;
    }
    ensure!(
        !suite.protocols.is_empty(),
        "{}: `protocols` is empty",
        a.suite.display()
    );
    for (i, p) in suite.protocols.iter().enumerate() {
        crate::protocol::check_protocol(p).with_context(|| format!("{}", a.suite.display()))?;
        ensure!(
            !suite.protocols[..i].contains(p),
            "{}: protocol {p:?} listed twice",
            a.suite.display()
        );
    }
    let (d, clf, t_predict, t_attack) = load_target(&a.t, seed)?;
    let clf = clf.as_ref();
    // The standard protocol takes gradients through the dynamics that is evaluated: with
    // --t-attack ≠ T_predict (the paper's truncation, for advep) its runs use T_attack = T_predict.
    let honest = if t_attack != t_predict && suite.protocols.iter().any(|p| p == "standard") {
        let t = TargetArgs {
            t_attack: None,
            ..a.t.clone()
        };
        Some(ep_classifier(&t, seed)?.0)
    } else {
        None
    };
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    let results = a.out_dir.join("results.jsonl");
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&results)
        .with_context(|| format!("opening {}", results.display()))?;
    let commit = git_commit();
    let substrate = if a.t.set.is_empty() {
        a.t.substrate.clone()
    } else {
        format!("{} --set {}", a.t.substrate, a.t.set.join(","))
    };
    let n = d.len();
    let loader =
        crate::data::Loader::new(&d, a.t.batch_size, sim::Stream::new(seed, "attack.data"));
    let mut report = format!(
        "# Robustness report\n\nmodel `{}`, substrate `{substrate}`, data `{}` ({n} images), seed {seed}, T_predict {t_predict}, T_attack {t_attack}{}, protocols {}, commit {commit}\n\n",
        a.t.model.display(),
        a.t.data,
        if honest.is_some() {
            " (standard protocol: T_predict)"
        } else {
            ""
        },
        suite.protocols.join(", ")
    );
    let mut warnings: Vec<String> = Vec::new();
    // (attack name, norm, eps, robust) for the sanity checks.
    let mut rows: Vec<(String, String, f64, f64)> = Vec::new();
    // The records as `epsim report` reads them, for its iterations/restarts check.
    let mut checked: Vec<crate::report::AttackRow> = Vec::new();
    let clean_acc = accuracy(clf, &d, a.t.batch_size)? as f64 / n.max(1) as f64;
    report += &format!("Clean accuracy: {clean_acc:.4}\n\n");
    if !suite.attack.is_empty() {
        report += "## Attacks (robust accuracy)\n\n| attack | protocol | ε | robust accuracy | queries | gradients | time (s) |\n| --- | --- | --- | --- | --- | --- | --- |\n";
    }
    let mut gap_rows: Vec<crate::protocol::GapRow> = Vec::new();
    for (protocol, at) in suite
        .protocols
        .iter()
        .flat_map(|p| suite.attack.iter().map(move |at| (p, at)))
    {
        let norm = at
            .name
            .rsplit_once('-')
            .map(|(_, n)| n.to_string())
            .unwrap_or_default();
        let (clf, t_attack) = match (&honest, protocol.as_str()) {
            (Some(h), "standard") => (h.as_ref(), t_predict),
            _ => (clf, t_attack),
        };
        for (text, eps) in crate::protocol::expand_eps(&at.eps)? {
            let e = &text;
            let (o, ex) = attack_strength_examples(
                clf,
                &loader,
                &at.name,
                eps as f32,
                e,
                at.steps,
                at.restarts,
                a.t.eot,
                seed,
                protocol,
                at.save_examples.unwrap_or(0),
            )?;
            if at.save_examples.is_some() {
                crate::adv_examples::save(&results, &at.name, e, &o.name, &ex, &d.classes)?;
            }
            let rec = AttackRecord {
                model: a.t.model.display().to_string(),
                substrate: substrate.clone(),
                protocol: protocol.clone(),
                attack: o.name.clone(),
                norm: norm.clone(),
                eps,
                eps_text: e.clone(),
                steps: at.steps,
                t_predict,
                t_attack,
                seed,
                data: a.t.data.clone(),
                n,
                clean_accuracy: o.clean as f64 / n.max(1) as f64,
                robust_accuracy: o.robust as f64 / n.max(1) as f64,
                queries: o.queries,
                grads: o.grads,
                wall_s: o.started.elapsed().as_secs_f64(),
                commit: commit.clone(),
            };
            println!(
                "{:<20} {:<8} {:>10} robust {:.4}",
                at.name, protocol, e, rec.robust_accuracy
            );
            writeln!(out, "{}", serde_json::to_string(&rec)?)?;
            checked.push(crate::report::attack_row(&rec)?);
            report += &format!(
                "| {} | {protocol} | {} | {:.4} | {} | {} | {:.1} |\n",
                at.name, e, rec.robust_accuracy, rec.queries, rec.grads, rec.wall_s
            );
            // Sanity checks compare runs of one protocol: advep rows carry it in their name.
            let row_name = if protocol == "standard" {
                at.name.clone()
            } else {
                format!("{} ({protocol})", at.name)
            };
            rows.push((row_name, norm.clone(), eps, rec.robust_accuracy));
            gap_rows.push(crate::protocol::GapRow {
                attack: at.name.clone(),
                eps_text: e.clone(),
                eps,
                protocol: protocol.clone(),
                robust_accuracy: rec.robust_accuracy,
            });
        }
    }
    let (gap_md, gap_warnings) = crate::protocol::gap_section(&gap_rows);
    report += &gap_md;
    warnings.extend(gap_warnings);
    // Sanity checks (Carlini et al. 2019): more strength never helps; large ε breaks everything;
    // black-box not much stronger than white-box.
    let tol = if clf.stochastic() {
        0.03
    } else {
        1.0 / n.max(1) as f64 + 1e-9
    };
    for (name, _, _, _) in rows.iter() {
        let mut mine: Vec<&(String, String, f64, f64)> =
            rows.iter().filter(|r| &r.0 == name).collect();
        mine.sort_by(|x, y| x.2.total_cmp(&y.2));
        for w in mine.windows(2) {
            if w[1].3 > w[0].3 + tol {
                warnings.push(format!("{name}: robust accuracy rises from {:.4} at ε={} to {:.4} at ε={} (gradient masking or too few iterations?)", w[0].3, w[0].2, w[1].3, w[1].2));
            }
        }
    }
    for (name, norm, eps, acc) in &rows {
        let large = (norm == "linf" && *eps >= 0.3) || (norm == "l2" && *eps >= 5.0);
        if large && *acc > 0.05 {
            warnings.push(format!("{name} at ε={eps}: robust accuracy {acc:.4} does not fall to ~0 at a large ε: the attack is not working (gradient masking?)"));
        }
        if name.starts_with("square") {
            for (wn, wnorm, weps, wacc) in &rows {
                let protocol_of = |s: &str| s.rsplit_once(" (").map(|(_, p)| p.to_string());
                let same_protocol = protocol_of(wn) == protocol_of(name);
                if !wn.starts_with("square")
                    && same_protocol
                    && wnorm == norm
                    && weps == eps
                    && *acc + 0.05 < *wacc
                {
                    warnings.push(format!("black-box {name} ({acc:.4}) is stronger than white-box {wn} ({wacc:.4}) at ε={eps}: white-box gradients may be masked"));
                }
            }
        }
    }
    if let Some(c) = &suite.corruptions {
        ensure!(
            d.shape[1] == 3,
            "corruptions need RGB images; {} has {} channel(s)",
            a.t.data,
            d.shape[1]
        );
        let kinds: Vec<Corruption> = if c.names.iter().any(|x| x == "all") {
            Corruption::all().to_vec()
        } else {
            c.names
                .iter()
                .map(|x| Corruption::from_name(x).map_err(|e| anyhow::anyhow!("{e}")))
                .collect::<Result<_>>()?
        };
        report += "\n## Corruptions (accuracy)\n\n| corruption |";
        for s in &c.severities {
            report += &format!(" s{s} |");
        }
        report += " mean |\n| --- |";
        for _ in 0..=c.severities.len() {
            report += " --- |";
        }
        report += "\n";
        let pb = crate::data::progress((kinds.len() * c.severities.len()) as u64, "corruptions");
        for k in &kinds {
            report += &format!("| {} |", k.name());
            let mut accs = Vec::new();
            for &sev in &c.severities {
                let t0 = Instant::now();
                let imgs = crate::corrupt::corrupt_batch_nchw(
                    &d.images, d.shape[2], d.shape[3], *k, sev, seed, 0,
                )
                .map_err(|e| anyhow::anyhow!("{} severity {sev}: {e}", k.name()))?;
                let cd = crate::data::Dataset {
                    images: imgs,
                    ..d.clone()
                };
                let acc = accuracy(clf, &cd, a.t.batch_size)? as f64 / n.max(1) as f64;
                let rec = CorruptionRecord {
                    kind: "corruption".into(),
                    protocol: "none".into(),
                    model: a.t.model.display().to_string(),
                    substrate: substrate.clone(),
                    corruption: k.name().to_string(),
                    severity: sev,
                    seed,
                    data: a.t.data.clone(),
                    n,
                    accuracy: acc,
                    wall_s: t0.elapsed().as_secs_f64(),
                    commit: commit.clone(),
                    note: k.substitute_note().map(String::from),
                };
                writeln!(out, "{}", serde_json::to_string(&rec)?)?;
                report += &format!(" {acc:.4} |");
                accs.push(acc);
                pb.inc(1);
            }
            let mean = accs.iter().sum::<f64>() / accs.len().max(1) as f64;
            report += &format!(" {mean:.4} |\n");
            if let Some(note) = k.substitute_note() {
                warnings.push(format!("note: {note}"));
            }
        }
        pb.finish_and_clear();
    }
    let mut passed = Vec::new();
    for c in crate::report::iteration_checks(&checked) {
        match c.status {
            crate::report::Status::Warn => warnings.push(c.to_string()),
            crate::report::Status::Pass => passed.push(c),
        }
    }
    report += "\n## Sanity checks\n\n";
    for c in &passed {
        report += &format!("- {c}\n");
    }
    if warnings.is_empty() {
        report += "All passed: robust accuracy never rises with ε beyond noise; no large-ε or black-box-vs-white-box anomaly.\n";
    }
    for w in &warnings {
        report += &format!("- {w}\n");
        eprintln!("warning: {w}");
    }
    let rp = a.out_dir.join("report.md");
    std::fs::write(&rp, &report).with_context(|| format!("writing {}", rp.display()))?;
    println!("{report}");
    println!(
        "results appended to {}; report in {}",
        results.display(),
        rp.display()
    );
    Ok(())
}

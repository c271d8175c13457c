//! Running one attack at one strength over a dataset (by its command-line name, under a
//! protocol), and `epsim attack`'s run: every strength of one attack, one record each.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use super::protocol::expand_eps;
use super::target::Target;
use crate::attacks::{self, Attack, Norm};
use crate::classifier::Classifier;
use crate::device::Engine;
use crate::files::JsonlAppender;
use crate::results::{AttackRecord, RecordContext, git_commit};

/// Every attack name `epsim attack --attack` and suites take (the standard protocol's set; under
/// advep the `autoattack-*` names run ART's ensemble).
pub const ATTACK_NAMES: &[&str] = &[
    "pgd-linf",
    "pgd-l2",
    "apgd-ce-linf",
    "apgd-ce-l2",
    "apgd-t-linf",
    "apgd-t-l2",
    "square-linf",
    "square-l2",
    "cw-l2",
    "deepfool-linf",
    "deepfool-l2",
    "autoattack-linf",
    "autoattack-l2",
    "autoattack-rand-linf",
    "autoattack-rand-l2",
    "art-autoattack-linf",
    "art-autoattack-l2",
];

/// The error for an attack name that is none of [`ATTACK_NAMES`], with the closest one.
pub(crate) fn unknown_attack(name: &str) -> anyhow::Error {
    let names: Vec<String> = ATTACK_NAMES.iter().map(|n| n.to_string()).collect();
    match sim::suggest::closest(name, &names) {
        Some(c) => anyhow::anyhow!(
            "unknown attack {name:?}: did you mean `{c}`? (see epsim attack --help)"
        ),
        None => anyhow::anyhow!(
            "unknown attack {name:?}: expected one of {} (see epsim attack --help)",
            ATTACK_NAMES.join(", ")
        ),
    }
}

/// Check an attack's command-line name under `protocol` without running it (so a suite with a typo
/// fails before any work).
pub fn check_attack_name(name: &str, protocol: &str) -> Result<()> {
    if name.starts_with("autoattack") && protocol != "advep" {
        return match name {
            "autoattack-linf" | "autoattack-l2" | "autoattack-rand-linf" | "autoattack-rand-l2" => {
                Ok(())
            }
            _ => Err(unknown_attack(name)),
        };
    }
    build_attack(name, 0.1, None, 1, 1, protocol).map(|_| ())
}

/// The norm part of an attack's command-line name (`pgd-linf` → `linf`).
pub fn attack_norm(attack: &str) -> String {
    attack
        .rsplit_once('-')
        .map(|(_, n)| n.to_string())
        .unwrap_or_default()
}

/// Build attack `name` (a command-line name) at strength `eps`.
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
        _ => return Err(unknown_attack(name)),
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
                // Standard PGD keeps its total path 2.5·ε over any number of iterations; ART's
                // (advep) step is fixed at 2.5·ε/20.
                if !advep {
                    a.step = 2.5 * eps / s.max(1) as f32;
                }
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
            // Plain autoattack reaches here only under advep (see attack_strength_examples).
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
        _ => return Err(unknown_attack(name)),
    })
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
    /// Clean-correct images the attack fooled, and the sum of their L2 distortions.
    pub fooled: usize,
    /// Sum over the fooled images of ‖x_adv − x‖₂.
    pub l2_fooled: f64,
    /// Attack name with its settings.
    pub name: String,
    /// When it started.
    pub started: Instant,
}

impl Outcome {
    /// Add a batch to the counts: images correct on the clean image (`ok`), robust ones (`rob`),
    /// and the fooled ones (correct, not robust) with their L2 distances.
    fn add_batch(
        &mut self,
        x: &sim::Tensor,
        x_adv: &sim::Tensor,
        ok: &[bool],
        rob: &[bool],
    ) -> Result<()> {
        let l2 = l2_rows(x, x_adv)?;
        for ((&c, &r), d) in ok.iter().zip(rob).zip(&l2) {
            self.clean += c as usize;
            self.robust += r as usize;
            if c && !r {
                self.fooled += 1;
                self.l2_fooled += d;
            }
        }
        Ok(())
    }

    /// The result record of this outcome: attack `attack` (command-line name) at strength `eps`
    /// (given as `eps_text`) under `protocol`, with `steps` as asked.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        cx: &RecordContext,
        attack: &str,
        protocol: &str,
        eps: f64,
        eps_text: &str,
        steps: Option<usize>,
        t_predict: usize,
        t_attack: usize,
    ) -> AttackRecord {
        let n = cx.n.max(1) as f64;
        AttackRecord {
            model: cx.model.clone(),
            substrate: cx.substrate.clone(),
            protocol: protocol.to_string(),
            attack: self.name.clone(),
            norm: attack_norm(attack),
            eps,
            eps_text: eps_text.to_string(),
            steps,
            t_predict,
            t_attack,
            settle: cx.settle,
            seed: cx.seed,
            data: cx.data.clone(),
            n: cx.n,
            clean_accuracy: self.clean as f64 / n,
            robust_accuracy: self.robust as f64 / n,
            mean_l2_fooled: (self.fooled > 0).then(|| self.l2_fooled / self.fooled as f64),
            queries: self.queries,
            grads: self.grads,
            wall_s: self.started.elapsed().as_secs_f64(),
            commit: cx.commit.clone(),
        }
    }
}

/// Run attack `attack` (a CLI name, see `epsim attack --help`) at strength `eps` over every batch
/// of `loader` (pixel-space images), keeping the first `keep` images in loader order with their
/// adversarial versions and predictions (for `--save-examples`). `eot`: gradients per step on
/// stochastic classifiers (default 10 there, 1 otherwise). With a `judge`, the attack is a
/// **transfer** attack: crafted on `clf`, counted by the judge's predictions on the clean and the
/// adversarial images (correct on both = robust), and named "... transfer from <clf>".
#[allow(clippy::too_many_arguments)]
pub fn attack_strength_examples(
    clf: &dyn Classifier,
    judge: Option<&dyn Classifier>,
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
) -> Result<(Outcome, crate::report::examples::Examples)> {
    let mut ex = crate::report::examples::Examples::new(clf.input_shape());
    let shown = judge.unwrap_or(clf);
    let mut o = Outcome {
        clean: 0,
        robust: 0,
        queries: 0,
        grads: 0,
        fooled: 0,
        l2_fooled: 0.0,
        name: String::new(),
        started: Instant::now(),
    };
    let eot_n = eot.unwrap_or(if clf.stochastic() { 10 } else { 1 });
    let pb = crate::progress::progress(loader.num_batches() as u64, &format!("{attack} ε={label}"));
    for b in loader.epoch(0) {
        let ids: Vec<u64> = b.indices.iter().map(|&i| i as u64).collect();
        // Per batch: the adversarial images, and (without a judge) the attacked model's own
        // (clean correct, robust) per image.
        let (x_adv, own) = if attack.starts_with("autoattack") && protocol != "advep" {
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
            o.queries += counted.queries.load(std::sync::atomic::Ordering::Relaxed);
            o.grads += counted.grads.load(std::sync::atomic::Ordering::Relaxed);
            o.name = format!("autoattack-{:?}", aa.version).to_lowercase();
            (r.x_adv, (r.clean_correct, r.robust))
        } else {
            let atk = build_attack(attack, eps, steps, restarts, eot_n, protocol)?;
            o.name = atk.name();
            // The attacked model's clean predictions come first (a stochastic substrate's query
            // order is part of its results); a judge predicts after the attack.
            let pred = match judge {
                None => ep::train::argmax_rows(&clf.logits(&b.x)?),
                Some(_) => Vec::new(),
            };
            let r = atk.run_indexed(clf, &b.x, &b.y, &ids, seed)?;
            o.queries += r.queries;
            o.grads += r.grads;
            let ok: Vec<bool> = pred.iter().zip(&b.y).map(|(p, l)| p == l).collect();
            // Robust: correct on the clean image and not fooled by the attack.
            let rob = ok.iter().zip(&r.success).map(|(&c, &s)| c && !s).collect();
            (r.x_adv, (ok, rob))
        };
        ex.push_batch(shown, &b.x, &x_adv, &b.y, keep)?;
        let (ok, rob) = match judge {
            Some(j) => judged(j, &b.x, &x_adv, &b.y)?,
            None => own,
        };
        o.add_batch(&b.x, &x_adv, &ok, &rob)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    if judge.is_some() {
        o.name = format!("{} transfer from {}", o.name, clf.describe());
    }
    Ok((o, ex))
}

/// `epsim attack`: one attack at several strengths on a target, one record per strength appended
/// to `out`.
#[derive(Debug, Clone)]
pub struct AttackRun {
    /// Model, substrate and data.
    pub target: Target,
    /// Attack name (see `epsim attack --help`).
    pub attack: String,
    /// Strengths as given (numbers, fractions, presets).
    pub eps: Vec<String>,
    /// Iterations or queries (default: the attack's own).
    pub steps: Option<usize>,
    /// Restarts (PGD).
    pub restarts: usize,
    /// Results file (JSON Lines, appended).
    pub out: PathBuf,
    /// Evaluation protocol (`standard` or `advep`).
    pub protocol: String,
    /// Also write a grid of the first N images per strength beside `out`.
    pub save_examples: Option<usize>,
    /// A transfer attack: craft the examples on the same model on this substrate (e.g. digital)
    /// and count them on the target's.
    pub transfer_from: Option<crate::classifier::substrate::SubstrateSpec>,
}

impl AttackRun {
    /// Run every strength on `be`, printing a line and appending a record for each.
    pub fn run<B: Engine>(&self, be: &B, seed: u64) -> Result<()> {
        check_attack_name(&self.attack, &self.protocol)?;
        let t = &self.target;
        let l = t.load(be, seed)?;
        let (d, clf) = (&l.data, l.clf.as_ref());
        let strengths = expand_eps(&self.eps).context("--eps")?;
        let source = match &self.transfer_from {
            Some(s) => {
                let mut st = t.clone();
                st.substrate = s.clone();
                Some(st.classifier(be, seed).context("--transfer-from")?.0)
            }
            None => None,
        };
        let cx = RecordContext {
            model: t.model.display().to_string(),
            substrate: t.substrate.label(),
            seed,
            data: t.data.clone(),
            n: d.len(),
            commit: git_commit(),
            settle: t.settle,
        };
        let mut out = JsonlAppender::open(&self.out)?;
        // Pixel-space batches (the classifier normalizes inside).
        let loader =
            crate::data::Loader::new(d, t.batch_size, sim::Stream::new(seed, "attack.data"));
        println!(
            "{:<28} {:>10} {:>8} {:>8} {:>10}",
            "attack", "eps", "clean", "robust", "time (s)"
        );
        ensure!(self.save_examples != Some(0), "--save-examples needs N ≥ 1");
        for (text, eps) in strengths {
            // A transfer attack runs on the source and is judged by the target.
            let (attacked, judge) = match &source {
                Some(src) => (src.as_ref(), Some(clf)),
                None => (clf, None),
            };
            // The energy the target's realization spent on the attack, per attacked image.
            let ((o, ex), cost) = crate::classifier::costed(clf, "attack_", || {
                let r = attack_strength_examples(
                    attacked,
                    judge,
                    &loader,
                    &self.attack,
                    eps as f32,
                    &text,
                    self.steps,
                    self.restarts,
                    t.eot,
                    seed,
                    &self.protocol,
                    self.save_examples.unwrap_or(0),
                )?;
                Ok((r, d.len() as u64))
            })?;
            if self.save_examples.is_some() {
                crate::report::examples::save(
                    &self.out,
                    &self.attack,
                    &text,
                    &o.name,
                    &ex,
                    &d.classes,
                )?;
            }
            let rec = o.record(
                &cx,
                &self.attack,
                &self.protocol,
                eps,
                &text,
                self.steps,
                l.t_predict,
                l.t_attack,
            );
            println!(
                "{:<28} {:>10} {:>8.4} {:>8.4} {:>10.1}",
                self.attack, text, rec.clean_accuracy, rec.robust_accuracy, rec.wall_s
            );
            out.append(&crate::classifier::with_fields(&rec, cost)?)?;
        }
        println!("results appended to {}", self.out.display());
        Ok(())
    }
}

/// A transfer attack's counts by the judging classifier: per image, correct on the clean image,
/// and correct on both the clean and the adversarial image.
fn judged(
    judge: &dyn Classifier,
    x: &sim::Tensor,
    x_adv: &sim::Tensor,
    y: &[usize],
) -> Result<(Vec<bool>, Vec<bool>)> {
    let clean = ep::train::argmax_rows(&judge.logits(x)?);
    let adv = ep::train::argmax_rows(&judge.logits(x_adv)?);
    let ok: Vec<bool> = clean.iter().zip(y).map(|(p, l)| p == l).collect();
    let rob = ok
        .iter()
        .zip(adv.iter().zip(y))
        .map(|(&c, (p, l))| c && p == l)
        .collect();
    Ok((ok, rob))
}

/// Per image of a batch, ‖x_adv − x‖₂ (in pixel units, images in [0, 1]).
fn l2_rows(x: &sim::Tensor, x_adv: &sim::Tensor) -> Result<Vec<f64>> {
    ensure!(
        x.shape() == x_adv.shape() && x.ndim() >= 1,
        "attack: adversarial batch {:?} does not match the clean batch {:?}",
        x_adv.shape(),
        x.shape()
    );
    Ok(x.outer_iter()
        .zip(x_adv.outer_iter())
        .map(|(a, b)| {
            a.iter()
                .zip(b.iter())
                .map(|(p, q)| f64::from(q - p).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgd_with_n_iterations_steps_its_path_over_them_under_the_standard_protocol_only() {
        let step = |protocol: &str, steps: Option<usize>| {
            let a = build_attack("pgd-linf", 0.1, steps, 1, 1, protocol).unwrap();
            let name = a.name();
            let s = name
                .split_whitespace()
                .find_map(|t| t.strip_prefix("step="))
                .unwrap_or_else(|| panic!("no step in {name}"));
            s.parse::<f32>().unwrap()
        };
        // 2.5·ε/N: the path length 2.5·ε does not depend on N.
        assert!((step("standard", Some(5)) - 0.05).abs() < 1e-7);
        assert!((step("standard", None) - 0.0125).abs() < 1e-7);
        // ART's fixed step whatever the iterations.
        assert!((step("advep", Some(5)) - 0.0125).abs() < 1e-7);
    }
}

//! AutoAttack (Croce & Hein 2020, fra31/auto-attack `run_standard_evaluation`).
//!
//! * 'standard': APGD-CE (100 iterations, 1 restart), APGD-T (targeted DLR, 9 target classes,
//!   1 restart), FAB-T (9 target classes, 100 iterations), Square (5000 queries, p_init 0.8).
//! * 'rand' (stochastic classifiers): APGD-CE and APGD-DLR, 1 restart, EOT over 20 gradients.
//!
//! The attacks run in sequence, each from the original images on the points still robust; a point
//! stops being robust as soon as one attack returns a candidate within ε (norm ≤ ε·(1 + 1e−4)) that is
//! misclassified by one forward query. Robust accuracy is the per-sample worst case over all attacks,
//! with clean errors counted as non-robust.

use anyhow::{Result, ensure};
use sim::Tensor;

use super::{
    Attack, AttackResult, Norm,
    apgd::{Apgd, ApgdLoss, ApgdT},
    argmax_rows, check_eps, check_inputs,
    fab::FabT,
    logits_of, pert_norms,
    square::Square,
    take, to_nchw, to_rows,
};
use crate::classifier::{Classifier, Counted};

/// AutoAttack version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AaVersion {
    /// APGD-CE, APGD-T, FAB-T, Square.
    Standard,
    /// APGD-CE and APGD-DLR with EOT, for randomized models.
    Rand,
}

/// AutoAttack settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AutoAttack {
    /// Threat model.
    pub norm: Norm,
    /// Radius ε.
    pub eps: f32,
    /// Version.
    pub version: AaVersion,
    /// APGD iterations.
    pub n_iter: usize,
    /// APGD-T target classes.
    pub n_target_classes: usize,
    /// Square query budget.
    pub square_queries: usize,
    /// EOT draws per gradient in 'rand'.
    pub eot_iter: usize,
    /// Box [0, 1].
    pub clip: bool,
}

/// Outcome of an AutoAttack evaluation.
#[derive(Debug, Clone)]
pub struct AutoAttackReport {
    /// Clean prediction correct, per sample.
    pub clean_correct: Vec<bool>,
    /// Still robust after all attacks, per sample.
    pub robust: Vec<bool>,
    /// Fraction clean-correct.
    pub clean_accuracy: f32,
    /// Fraction robust (per-sample worst case over the attacks).
    pub robust_accuracy: f32,
    /// Adversarial examples (clean image where none was found).
    pub x_adv: Tensor,
    /// Which attack broke each sample (None: robust or clean error).
    pub broken_by: Vec<Option<String>>,
    /// Per component: its name and how many points it broke.
    pub per_attack: Vec<(String, usize)>,
    /// Forward queries (images), robustness checks included.
    pub queries: u64,
    /// Gradient evaluations (images).
    pub grads: u64,
}

impl AutoAttack {
    /// The 'standard' version.
    pub fn standard(norm: Norm, eps: f32) -> Self {
        AutoAttack {
            norm,
            eps,
            version: AaVersion::Standard,
            n_iter: 100,
            n_target_classes: 9,
            square_queries: 5000,
            eot_iter: 1,
            clip: true,
        }
    }

    /// The 'rand' version (EOT over 20 gradients).
    pub fn rand(norm: Norm, eps: f32) -> Self {
        AutoAttack {
            version: AaVersion::Rand,
            eot_iter: 20,
            ..AutoAttack::standard(norm, eps)
        }
    }

    /// The component attacks, in order.
    pub fn components(&self) -> Vec<Box<dyn Attack>> {
        let ce = Apgd {
            n_iter: self.n_iter,
            clip: self.clip,
            ..Apgd::new(self.norm, self.eps, ApgdLoss::Ce)
        };
        match self.version {
            AaVersion::Standard => {
                let t = ApgdT {
                    n_iter: self.n_iter,
                    n_target_classes: self.n_target_classes,
                    clip: self.clip,
                    ..ApgdT::new(self.norm, self.eps)
                };
                let fab = FabT {
                    n_iter: self.n_iter,
                    n_target_classes: self.n_target_classes,
                    clip: self.clip,
                    ..FabT::new(self.norm, self.eps)
                };
                let sq = Square {
                    n_queries: self.square_queries,
                    clip: self.clip,
                    ..Square::new(self.norm, self.eps)
                };
                vec![
                    Box::new(ce) as Box<dyn Attack>,
                    Box::new(t),
                    Box::new(fab),
                    Box::new(sq),
                ]
            }
            AaVersion::Rand => {
                let ce = Apgd {
                    eot_iter: self.eot_iter,
                    ..ce
                };
                let dlr = Apgd {
                    loss: ApgdLoss::Dlr,
                    ..ce.clone()
                };
                vec![Box::new(ce) as Box<dyn Attack>, Box::new(dlr)]
            }
        }
    }

    /// Run the evaluation on a batch whose samples have ids `ids`.
    pub fn evaluate(
        &self,
        clf: &dyn Classifier,
        x: &Tensor,
        y: &[usize],
        ids: &[u64],
        seed: u64,
    ) -> Result<AutoAttackReport> {
        check_eps(self.eps)?;
        let b = check_inputs(clf, x, y, ids)?;
        let k = clf.num_classes();
        match self.version {
            AaVersion::Standard => ensure!(
                k >= 4,
                "AutoAttack 'standard' needs ≥ 4 classes for APGD-T (got {k})"
            ),
            AaVersion::Rand => ensure!(
                k >= 3,
                "AutoAttack 'rand' needs ≥ 3 classes for APGD-DLR (got {k})"
            ),
        }
        if clf.stochastic() && self.version == AaVersion::Standard {
            tracing::warn!(
                "AutoAttack 'standard' on a stochastic classifier ({}): use the 'rand' version",
                clf.describe()
            );
        }
        let counted = Counted::new(clf);
        let n = b.n();
        let pred0 = argmax_rows(&logits_of(&counted, &b.x, b.shape)?);
        let clean_correct: Vec<bool> = (0..n).map(|i| pred0[i] == y[i]).collect();
        let mut robust = clean_correct.clone();
        let mut adv = b.x.clone();
        let mut broken_by = vec![None; n];
        let mut per_attack = vec![];
        let (mut queries, mut grads) = (counted.queries.into_inner(), 0u64);
        let tol = self.eps * (1.0 + 1e-4) + 1e-6;
        for atk in self.components() {
            let name = atk.name();
            let idx: Vec<usize> = (0..n).filter(|&i| robust[i]).collect();
            if idx.is_empty() {
                per_attack.push((name, 0));
                continue;
            }
            let xs = to_nchw(&take(&b.x, &idx), b.shape);
            let ys: Vec<usize> = idx.iter().map(|&i| y[i]).collect();
            let is: Vec<u64> = idx.iter().map(|&i| ids[i]).collect();
            let res = atk.run_indexed(clf, &xs, &ys, &is, seed)?;
            queries += res.queries + idx.len() as u64; // + the robustness check
            grads += res.grads;
            let rows = to_rows(&res.x_adv);
            let mut broke = 0;
            for (r, &i) in idx.iter().enumerate() {
                if res.success[r] && res.norms[r] <= tol {
                    robust[i] = false;
                    adv.row_mut(i).assign(&rows.row(r));
                    broken_by[i] = Some(name.clone());
                    broke += 1;
                }
            }
            per_attack.push((name, broke));
        }
        let frac = |v: &[bool]| {
            if n == 0 {
                0.0
            } else {
                v.iter().filter(|&&a| a).count() as f32 / n as f32
            }
        };
        Ok(AutoAttackReport {
            clean_accuracy: frac(&clean_correct),
            robust_accuracy: frac(&robust),
            clean_correct,
            robust,
            x_adv: to_nchw(&adv, b.shape),
            broken_by,
            per_attack,
            queries,
            grads,
        })
    }
}

impl Attack for AutoAttack {
    fn name(&self) -> String {
        match self.version {
            AaVersion::Standard => format!(
                "AutoAttack-standard-{} eps={} (APGD-CE, APGD-T, FAB-T, Square)",
                self.norm, self.eps
            ),
            AaVersion::Rand => format!(
                "AutoAttack-rand-{} eps={} (APGD-CE, APGD-DLR, EOT {})",
                self.norm, self.eps, self.eot_iter
            ),
        }
    }
    fn run_indexed(
        &self,
        clf: &dyn Classifier,
        x: &Tensor,
        y: &[usize],
        ids: &[u64],
        seed: u64,
    ) -> Result<AttackResult> {
        let rep = self.evaluate(clf, x, y, ids, seed)?;
        let x0 = to_rows(x);
        let adv = to_rows(&rep.x_adv);
        Ok(AttackResult {
            norms: pert_norms(self.norm, &adv, &x0),
            success: rep.robust.iter().map(|r| !r).collect(),
            labels: y.to_vec(),
            x_adv: rep.x_adv,
            queries: rep.queries,
            grads: rep.grads,
        })
    }
}

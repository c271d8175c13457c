//! The records as written: an attack at one strength, a corruption at one severity, the clean
//! accuracy of a sweep run; and the commit they are stamped with.

use std::time::Instant;

use serde::Serialize;

use crate::corrupt::Corruption;

/// What every record of one evaluation shares.
#[derive(Debug, Clone)]
pub struct RecordContext {
    /// Model file.
    pub model: String,
    /// Substrate label (with overrides).
    pub substrate: String,
    /// Master seed.
    pub seed: u64,
    /// Dataset spec.
    pub data: String,
    /// Images evaluated.
    pub n: usize,
    /// Git commit.
    pub commit: String,
    /// How an EP model's predictions settle (default: plain iteration of T_predict steps).
    pub settle: ep::Settle,
}

/// An attack at one strength.
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
    /// How predictions settled, when not plain iteration of `t_predict` steps (which is then the
    /// cap).
    #[serde(skip_serializing_if = "ep::Settle::is_default")]
    pub settle: ep::Settle,
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
    /// Mean L2 distance of the successful adversarial examples (clean-correct images the attack
    /// fooled) from their clean images; null when it fooled none. For unbounded attacks (C&W at
    /// fixed c) this is the distortion the success cost.
    pub mean_l2_fooled: Option<f64>,
    /// Images through the model (forward queries).
    pub queries: u64,
    /// Images through the gradient.
    pub grads: u64,
    /// Wall time (s).
    pub wall_s: f64,
    /// Git commit of the code.
    pub commit: String,
}

/// A corruption at one severity.
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
    /// How predictions settled, when not plain iteration of the model's steps.
    #[serde(skip_serializing_if = "ep::Settle::is_default")]
    pub settle: ep::Settle,
    /// Wall time (s).
    pub wall_s: f64,
    /// Git commit.
    pub commit: String,
    /// Where the corrupted images came from when not generated (`released files
    /// cifar10c:DIR:<corruption>:<severity>`), else null.
    pub note: Option<String>,
}

impl CorruptionRecord {
    /// The record of corruption `kind` at `severity` giving `accuracy`, started at `started`.
    pub fn new(
        cx: &RecordContext,
        kind: Corruption,
        severity: u32,
        accuracy: f64,
        started: Instant,
    ) -> Self {
        CorruptionRecord {
            kind: "corruption".into(),
            protocol: "none".into(),
            model: cx.model.clone(),
            substrate: cx.substrate.clone(),
            corruption: kind.name().to_string(),
            severity,
            seed: cx.seed,
            data: cx.data.clone(),
            n: cx.n,
            accuracy,
            settle: cx.settle,
            wall_s: started.elapsed().as_secs_f64(),
            commit: cx.commit.clone(),
            note: None,
        }
    }
}

/// The clean accuracy of one run of a sweep.
#[derive(Debug, Serialize)]
pub struct CleanRecord {
    /// Model file.
    pub model: String,
    /// Substrate.
    pub substrate: String,
    /// Master seed.
    pub seed: u64,
    /// Dataset spec.
    pub data: String,
    /// Images.
    pub n: usize,
    /// Accuracy.
    pub accuracy: f64,
    /// Free-phase steps of predictions.
    pub t_predict: usize,
    /// How predictions settled, when not plain iteration of `t_predict` steps (which is then the
    /// cap).
    #[serde(skip_serializing_if = "ep::Settle::is_default")]
    pub settle: ep::Settle,
    /// Wall time (s).
    pub wall_s: f64,
    /// Git commit.
    pub commit: String,
}

/// The commit of the code: the one `epsim` was built from (with `-dirty` when the tree had
/// uncommitted changes then), else the working tree's, else "unknown".
pub fn git_commit() -> String {
    if let Some(c) = option_env!("EPSIM_GIT_COMMIT") {
        return c.to_string();
    }
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

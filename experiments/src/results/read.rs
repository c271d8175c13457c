//! The records as read back: lenient where the format grew over time (fields added later take
//! defaults), strict where it matters (a line that is not JSON, or a record without its accuracy,
//! is an error naming the file and the line).

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;

fn digital() -> String {
    "digital".into()
}

fn standard() -> String {
    "standard".into()
}

/// One attack record (`epsim attack` / `epsim robustness`), as read back.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AttackRow {
    /// Model file.
    pub model: String,
    /// Substrate.
    #[serde(default = "digital")]
    pub substrate: String,
    /// Evaluation protocol.
    #[serde(default = "standard")]
    pub protocol: String,
    /// Attack name with its settings (e.g. `PGD-Linf eps=0.03 step=0.007 iters=10 restarts=1`).
    pub attack: String,
    /// Threat model ("linf", "l2").
    #[serde(default)]
    pub norm: String,
    /// Strength.
    pub eps: f64,
    /// The strength as given ("8/255").
    #[serde(default)]
    pub eps_text: String,
    /// Iterations or queries as asked (None: the attack's default).
    #[serde(default)]
    pub steps: Option<usize>,
    /// Free-phase steps of predictions.
    #[serde(default)]
    pub t_predict: usize,
    /// Free-phase steps of the gradient.
    #[serde(default)]
    pub t_attack: usize,
    /// Dataset spec.
    #[serde(default)]
    pub data: String,
    /// Images.
    pub n: usize,
    /// Clean accuracy.
    pub clean_accuracy: f64,
    /// Robust accuracy.
    pub robust_accuracy: f64,
    /// Mean L2 distance of the successful adversarial examples from their clean images (records
    /// written before it was kept have none).
    #[serde(default)]
    pub mean_l2_fooled: Option<f64>,
    /// Master seed of the run (model seed of a study); records of several seeds are averaged.
    #[serde(default)]
    pub seed: u64,
}

/// One clean-accuracy record (a study's or a sweep's `clean` item), as read back.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CleanRow {
    /// Model file.
    pub model: String,
    /// Substrate.
    #[serde(default = "digital")]
    pub substrate: String,
    /// Dataset spec.
    #[serde(default)]
    pub data: String,
    /// Images.
    pub n: usize,
    /// Accuracy.
    pub accuracy: f64,
    /// Master seed of the run.
    #[serde(default)]
    pub seed: u64,
    /// Energy per inference, J (realized substrates with a cost model).
    #[serde(default)]
    pub energy_j: Option<f64>,
    /// Latency per inference, s.
    #[serde(default)]
    pub latency_s: Option<f64>,
    /// Counted vector reads per inference.
    #[serde(default)]
    pub vector_reads: Option<f64>,
}

/// One corruption record (`epsim robustness`), as read back.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CorruptionRow {
    /// Model file.
    pub model: String,
    /// Substrate.
    #[serde(default = "digital")]
    pub substrate: String,
    /// Corruption name.
    pub corruption: String,
    /// Severity 1..=5.
    pub severity: u32,
    /// Dataset spec.
    #[serde(default)]
    pub data: String,
    /// Images.
    pub n: usize,
    /// Accuracy.
    pub accuracy: f64,
    /// Master seed of the run.
    #[serde(default)]
    pub seed: u64,
}

/// A record of a results file.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An attack at one strength.
    Attack(AttackRow),
    /// A corruption at one severity.
    Corruption(CorruptionRow),
    /// The clean accuracy of an evaluation.
    Clean(CleanRow),
    /// A record of another kind (kept out of the tables, counted in the report).
    Other(String),
}

/// Parse one line of a results file: `kind` "corruption" is a corruption record, "clean" a clean
/// record, no `kind` (or "attack") an attack record, any other kind is [`Record::Other`].
pub fn parse_record(line: &str) -> Result<Record> {
    let v: serde_json::Value = serde_json::from_str(line).context("not valid JSON")?;
    ensure!(v.is_object(), "not a JSON object");
    let kind = match v.get("kind") {
        None => "attack".to_string(),
        Some(k) => k.as_str().context("\"kind\" is not a string")?.to_string(),
    };
    Ok(match kind.as_str() {
        "attack" => Record::Attack(serde_json::from_value(v).context("not a valid attack record")?),
        "corruption" => {
            Record::Corruption(serde_json::from_value(v).context("not a valid corruption record")?)
        }
        "clean" => Record::Clean(serde_json::from_value(v).context("not a valid clean record")?),
        _ => Record::Other(kind),
    })
}

/// Read a results file: one record per non-blank line; errors name the file and the line.
pub fn read_results(path: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading results {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r = parse_record(line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        out.push(r);
    }
    Ok(out)
}

/// An attack record's own [`AttackRow`] (through its JSON form, so that it is read exactly as a
/// results file would be).
pub fn attack_row<T: serde::Serialize>(record: &T) -> Result<AttackRow> {
    match parse_record(&serde_json::to_string(record)?)? {
        Record::Attack(r) => Ok(r),
        _ => bail!("not an attack record"),
    }
}

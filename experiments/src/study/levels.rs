//! A swept device parameter and its levels (`KEY=V1,V2,...`, any key `--set` accepts), shared by
//! `epsim sweep` ([`super::sweep`]) and a study's `[[sweep]]` ([`super::spec::SweepEntry`]).

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

/// The swept parameter: key and levels (as given, and as numbers when every level is one).
#[derive(Debug, Clone)]
pub struct SweepParam {
    /// The `--set` key.
    pub key: String,
    /// Levels as given.
    pub levels: Vec<String>,
    /// Levels as numbers, when all of them parse.
    pub numeric: Option<Vec<f64>>,
}

impl SweepParam {
    /// Parse `KEY=V1,V2,...`.
    pub fn parse(s: &str) -> Result<Self> {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--param {s:?}: expected KEY=V1,V2,..."))?;
        let key = k.trim().to_string();
        ensure!(!key.is_empty(), "--param {s:?}: empty key");
        let levels: Vec<String> = v.split(',').map(|l| l.trim().to_string()).collect();
        ensure!(
            levels.iter().all(|l| !l.is_empty()),
            "--param {s:?}: empty level (expected KEY=V1,V2,...)"
        );
        let mut seen = std::collections::HashSet::new();
        for l in &levels {
            ensure!(seen.insert(l), "--param {s:?}: level {l} is given twice");
        }
        let numeric = levels
            .iter()
            .map(|l| l.parse::<f64>().ok().filter(|x| x.is_finite()))
            .collect();
        Ok(SweepParam {
            key,
            levels,
            numeric,
        })
    }

    /// The preset overrides of level `i`: the base overrides, then `key=level`.
    pub fn sets(&self, base: &[String], i: usize) -> Vec<String> {
        let mut s = base.to_vec();
        s.push(format!("{}={}", self.key, self.levels[i]));
        s
    }

    /// Level `i` as a JSON value: a number when every level is one, else the text.
    pub fn level_value(&self, i: usize) -> Value {
        match &self.numeric {
            Some(v) => json!(v[i]),
            None => json!(self.levels[i]),
        }
    }
}

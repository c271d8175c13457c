//! The study's identity in its output directory: `plan.json` holds the name and the hash of the
//! study file's *content* (its TOML parsed, keys sorted, comments and layout ignored, `device`
//! left out since a study may be resumed on another device). Every way of running a study checks
//! it before any work, so a study whose settings changed (say an attack's `steps`, which the cell
//! list does not show) never mixes its new cells with the old ones.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::files::write_atomic;

/// FNV-1a (64 bit) of the study's canonical content (see the module doc), as 16 hex digits.
pub fn study_hash(study: &Path) -> Result<String> {
    let text = std::fs::read_to_string(study)
        .with_context(|| format!("reading study {}", study.display()))?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: invalid study: {e}", study.display()))?;
    table.remove("device");
    let canonical = serde_json::to_string(&table)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Ok(format!("{h:016x}"))
}

/// `plan.json` of the output directory `out`.
pub fn meta_path(out: &Path) -> PathBuf {
    out.join("plan.json")
}

/// Check `out`'s manifest against the study file `study` (named `name`, with `cells` cells), or
/// write it when there is none. Another hash is refused, naming both.
pub fn check_or_write(study: &Path, name: &str, out: &Path, cells: usize) -> Result<()> {
    let hash = study_hash(study)?;
    let meta = meta_path(out);
    if let Ok(text) = std::fs::read_to_string(&meta) {
        let old: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a plan manifest", meta.display()))?;
        ensure!(
            old["study_hash"] == hash.as_str(),
            "{} was planned from another version of the study (study {}, hash {}; {} is {name}, \
             hash {hash}): its settings changed, so its finished cells would not be comparable; \
             choose another out_dir, or remove {} to start over",
            meta.display(),
            old["study"],
            old["study_hash"],
            study.display(),
            out.display()
        );
        return Ok(());
    }
    let m = json!({
        "study": name,
        "study_file": study.display().to_string(),
        "study_hash": hash,
        "cells": cells,
    });
    write_atomic(&meta, (serde_json::to_string_pretty(&m)? + "\n").as_bytes())
}

//! A grid's identity in its output directory: `plan.json` holds the name, the source (a study file,
//! or a sweep's arguments) and the hash of its *content* (a study file's TOML parsed, keys sorted,
//! comments and layout ignored, `device` left out since a study may be resumed on another device; a
//! sweep's arguments with its suite file's content). Every way of running a study or an indexed
//! sweep checks it before any work, so a grid whose settings changed (say an attack's `steps`,
//! which the cell list does not show) never mixes its new cells with the old ones.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::files::write_atomic;

/// What a manifest identifies: a study or a sweep, by name, source and content hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// `study` or `sweep`.
    pub kind: &'static str,
    /// The study's name, or the sweep's output directory.
    pub name: String,
    /// Where it was read from: the study file, or the sweep's command line.
    pub source: String,
    /// [`fnv_hex`] of its canonical content.
    pub hash: String,
}

impl Identity {
    /// The identity of the study file `study` named `name`.
    pub fn of_study(study: &Path, name: &str) -> Result<Self> {
        Ok(Identity {
            kind: "study",
            name: name.to_string(),
            source: study.display().to_string(),
            hash: study_hash(study)?,
        })
    }
}

/// FNV-1a (64 bit) of `text`, as 16 hex digits.
pub fn fnv_hex(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The canonical content of a TOML file (see the module doc), `device` left out.
pub fn canonical_toml(path: &Path, what: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: invalid {what}: {e}", path.display()))?;
    table.remove("device");
    Ok(serde_json::to_string(&table)?)
}

/// [`fnv_hex`] of the study's canonical content (see the module doc).
pub fn study_hash(study: &Path) -> Result<String> {
    Ok(fnv_hex(&canonical_toml(study, "study")?))
}

/// `plan.json` of the output directory `out`.
pub fn meta_path(out: &Path) -> PathBuf {
    out.join("plan.json")
}

/// Check `out`'s manifest against `id` (a grid of `cells` cells), or write it when there is none.
/// Another hash is refused, naming both.
pub fn check_or_write(id: &Identity, out: &Path, cells: usize) -> Result<()> {
    let meta = meta_path(out);
    if let Ok(text) = std::fs::read_to_string(&meta) {
        let old: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a plan manifest", meta.display()))?;
        ensure!(
            old["study_hash"] == id.hash.as_str(),
            "{} was planned from another version of the {} (from {}, hash {}; now {} from {}, hash \
             {}): its settings changed, so its finished cells would not be comparable; choose \
             another output directory, or remove {} to start over",
            meta.display(),
            id.kind,
            old["study_file"],
            old["study_hash"],
            id.name,
            id.source,
            id.hash,
            out.display()
        );
        return Ok(());
    }
    let m = json!({
        "study": id.name,
        "study_file": id.source,
        "study_hash": id.hash,
        "kind": id.kind,
        "cells": cells,
    });
    write_atomic(&meta, (serde_json::to_string_pretty(&m)? + "\n").as_bytes())
}

/// Check `out`'s manifest (written by [`check_or_write`]) against `id`; `plan_hint` says how to
/// write one when there is none.
pub fn check_existing(id: &Identity, out: &Path, plan_hint: &str) -> Result<()> {
    let meta = meta_path(out);
    let text = std::fs::read_to_string(&meta)
        .with_context(|| format!("no manifest {}: run `{plan_hint}` first", meta.display()))?;
    let m: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a plan manifest", meta.display()))?;
    ensure!(
        m["study_hash"] == id.hash.as_str(),
        "{} was planned from another version of {} (hash {}, now {}): its settings changed after \
         planning",
        meta.display(),
        id.source,
        m["study_hash"],
        id.hash
    );
    Ok(())
}

/// `plan.jsonl` of `out` against the grid's cells `lines` (cell i = line i): written when absent
/// and `write`, else compared; another plan is refused naming the first cell that differs (a
/// `kind` — study, sweep — whose settings changed).
pub fn check_or_write_plan(out: &Path, kind: &str, lines: &[String], write: bool) -> Result<()> {
    let path = out.join("plan.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    match std::fs::read_to_string(&path) {
        Ok(old) if old == text => Ok(()),
        Ok(old) => {
            let diff = old
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(old.lines().count().min(lines.len()));
            anyhow::bail!(
                "{}: the {kind} changed since this plan was written (first difference at cell \
                 {diff}); choose another output directory, or remove {} to start over",
                path.display(),
                out.display()
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && write => {
            write_atomic(&path, text.as_bytes())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

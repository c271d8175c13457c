//! One suite item on one classifier — the clean accuracy, an attack at one strength under one
//! protocol, or a corruption at one severity (generated, or read from released files) — as the
//! accuracy it gives and its results record. Sweeps and study cells run their items through this
//! one function (`epsim robustness` assembles its report from the same pieces).

use std::borrow::Cow;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::attack::attack_strength_examples;
use super::suite::{SuiteCorruptions, SuiteItem};
use crate::classifier::{Classifier, costed};
use crate::data::{Dataset, Loader};
use crate::eval::correct;
use crate::results::{CleanRecord, CorruptionRecord, RecordContext};

/// What an item runs on besides the item itself.
pub struct ItemRun<'a> {
    /// The model on its substrate.
    pub clf: &'a dyn Classifier,
    /// The evaluation images (pixels in [0, 1]).
    pub data: &'a Dataset,
    /// The `--subset` the images were taken with (released corruption files are subset alike).
    pub subset: Option<usize>,
    /// Batch size.
    pub batch_size: usize,
    /// Gradients per attack step on stochastic substrates (default 10 there, 1 else).
    pub eot: Option<usize>,
    /// The suite's corruptions (for corruption items).
    pub corruptions: Option<&'a SuiteCorruptions>,
    /// What every record carries (model, substrate, seed, data, images, commit).
    pub cx: &'a RecordContext,
    /// Free-phase steps of predictions and of gradients.
    pub t_predict: usize,
    /// Free-phase steps of gradients.
    pub t_attack: usize,
    /// The classifier a transfer attack item crafts its examples on (the same model on the
    /// item's `transfer_from` substrate); needed by such items only.
    pub source: Option<&'a dyn Classifier>,
}

impl ItemRun<'_> {
    /// Run `item` (attacks under `protocol`): its accuracy (robust accuracy for an attack) and its
    /// record, with `kind` and `accuracy` set whatever the item.
    /// A realized substrate's records also carry the cost of the item's own reads: per inference
    /// for clean and corruption items (`energy_j`, `latency_s`, ...), per attacked image for an
    /// attack (`attack_energy_j`, ...: every query and gradient the attack made on the item's
    /// classifier; a transfer attack's judging predictions only).
    pub fn run(&self, item: &SuiteItem, protocol: &str) -> Result<(f64, Value)> {
        let prefix = match item {
            SuiteItem::Attack { .. } => "attack_",
            _ => "",
        };
        let ((acc, mut v, kind), cost) =
            costed(self.clf, prefix, || self.run_item(item, protocol))?;
        v.as_object_mut()
            .context("a record is a JSON object")?
            .extend(cost);
        v["kind"] = json!(kind);
        v["accuracy"] = json!(acc);
        Ok((acc, v))
    }

    /// [`ItemRun::run`] without the cost: (accuracy, record, kind) and the images evaluated.
    fn run_item(
        &self,
        item: &SuiteItem,
        protocol: &str,
    ) -> Result<((f64, Value, &'static str), u64)> {
        let (cx, d, seed) = (self.cx, self.data, self.cx.seed);
        let t0 = Instant::now();
        let fraction = |c: usize| c as f64 / d.len().max(1) as f64;
        let mut units = d.len() as u64;
        let out = match item {
            SuiteItem::Clean => {
                let acc = fraction(correct(self.clf, d, self.batch_size)?);
                let rec = CleanRecord {
                    model: cx.model.clone(),
                    substrate: cx.substrate.clone(),
                    seed,
                    data: cx.data.clone(),
                    n: cx.n,
                    accuracy: acc,
                    t_predict: self.t_predict,
                    settle: cx.settle,
                    wall_s: t0.elapsed().as_secs_f64(),
                    commit: cx.commit.clone(),
                };
                (acc, serde_json::to_value(rec)?, "clean")
            }
            SuiteItem::Attack {
                name,
                eps_text,
                eps,
                steps,
                restarts,
                subset,
                transfer_from,
            } => {
                let (d, cx) = &attacked_images(d, cx, *subset);
                units = d.len() as u64;
                // Pixel-space batches in dataset order; the attack's draws from the seed.
                let loader = Loader::new(d, self.batch_size, sim::Stream::new(seed, "attack.data"));
                // A transfer attack is crafted on the source and judged by the classifier.
                let (attacked, judge) = match transfer_from {
                    Some(src) => (
                        self.source.with_context(|| {
                            format!("a transfer attack from {src} without its source classifier")
                        })?,
                        Some(self.clf),
                    ),
                    None => (self.clf, None),
                };
                let (o, _) = attack_strength_examples(
                    attacked,
                    judge,
                    &loader,
                    name,
                    *eps as f32,
                    eps_text,
                    *steps,
                    *restarts,
                    self.eot,
                    seed,
                    protocol,
                    0,
                )?;
                let rec = o.record(
                    cx,
                    name,
                    protocol,
                    *eps,
                    eps_text,
                    *steps,
                    self.t_predict,
                    self.t_attack,
                );
                (rec.robust_accuracy, serde_json::to_value(&rec)?, "attack")
            }
            SuiteItem::Corruption(k, sev) => {
                let corruptions = self
                    .corruptions
                    .context("a corruption item without [corruptions]")?;
                let (cd, source) = corruptions.images(*k, *sev, d, self.subset, seed)?;
                units = cd.len() as u64;
                let acc = fraction(correct(self.clf, &cd, self.batch_size)?);
                let mut rec = CorruptionRecord::new(cx, *k, *sev, acc, t0);
                rec.note = source.map(|s| format!("released files {s}"));
                (acc, serde_json::to_value(rec)?, "corruption")
            }
        };
        Ok((out, units))
    }
}

/// The images an attack with `subset = N` runs on (the first N of `d`, class-balanced: the images
/// a study with `subset = N` evaluates, since `d` is itself such a subset) and the record context
/// with their count; `d` itself when there is no smaller subset.
pub fn attacked_images<'a>(
    d: &'a Dataset,
    cx: &RecordContext,
    subset: Option<usize>,
) -> (Cow<'a, Dataset>, RecordContext) {
    match subset {
        Some(n) if n < d.len() => {
            let small = crate::data::balanced_subset(d, n);
            let cx = RecordContext {
                n: small.len(),
                ..cx.clone()
            };
            (Cow::Owned(small), cx)
        }
        _ => (Cow::Borrowed(d), cx.clone()),
    }
}

//! Robustness suites (TOML): attacks × strengths (× protocols) and corruptions × severities, read
//! and checked before any work, and their items in order (clean accuracy first).

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

use super::protocol::{check_protocol, expand_eps};
use crate::corrupt::Corruption;
use crate::data::{Dataset, DatasetSpec, load_eval_set};

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
    /// Strengths ("8/255", "0.5", ... or plain numbers: `eps = [0.1, "8/255"]`) or presets
    /// ("paper-linf", see `epsim attack --help`).
    #[serde(deserialize_with = "texts_or_numbers")]
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
    /// Attack only the first N evaluation images (class-balanced, the same images a run with
    /// `subset = N` evaluates): for costly attacks (AutoAttack, C&W) in a suite whose other items
    /// use more images. The records' `n` says how many were attacked.
    #[serde(default)]
    pub subset: Option<usize>,
    /// A transfer attack (studies only): craft the examples on the same model on this substrate
    /// (`"digital"`) and count them on the cell's substrate, the check of a substrate's
    /// white-box numbers (as `epsim attack --transfer-from`). The item id ends in `~digital`.
    #[serde(default)]
    pub transfer_from: Option<String>,
}

fn one() -> usize {
    1
}

/// A list of strengths given as strings or numbers (`[0.1, "8/255"]`), as their texts (a number
/// as its shortest decimal: `0.1` → "0.1").
fn texts_or_numbers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum TextOrNumber {
        Text(String),
        Int(i64),
        Float(f64),
    }
    let v: Vec<TextOrNumber> = serde::Deserialize::deserialize(d)?;
    Ok(v.into_iter()
        .map(|x| match x {
            TextOrNumber::Text(s) => s,
            TextOrNumber::Int(i) => i.to_string(),
            TextOrNumber::Float(f) => f.to_string(),
        })
        .collect())
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
    /// Read the corrupted images from released files (`cifar10c:DIR` or `cifar100c:DIR`, the
    /// layout of CIFAR-10-C or of `epsim corrupt --format npy`) instead of generating them; they
    /// must be corruptions of the evaluated test set (same labels, in order).
    #[serde(default)]
    pub released: Option<String>,
}

impl SuiteCorruptions {
    /// Check that the corruptions can run on data `data` with `channels` channels (RGB, or
    /// grayscale as three equal channels: see [`crate::corrupt`]), before any work; errors name
    /// the suite file `origin`.
    pub fn check_data(origin: &Path, data: &str, channels: usize) -> Result<()> {
        ensure!(
            channels == 3 || channels == 1,
            "{}: the suite's corruptions need RGB or grayscale images; {data} has {channels} \
             channels",
            origin.display()
        );
        Ok(())
    }

    /// Check `released`: a `cifar10c:DIR`/`cifar100c:DIR` spec naming no corruption.
    pub fn check(&self) -> Result<()> {
        if let Some(r) = &self.released {
            let spec =
                DatasetSpec::parse(r).map_err(|e| anyhow::anyhow!("released = {r:?}: {e}"))?;
            ensure!(
                spec.kind.and_then(|k| k.corruption_files()).is_some() && spec.corruption.is_none(),
                "released = {r:?}: expected cifar10c:DIR or cifar100c:DIR (the directory only; the \
                 suite's names and severities select the files)"
            );
        }
        Ok(())
    }

    /// The evaluation set `d` (loaded with `--subset` = `subset`) under corruption `k` at
    /// severity `sev`: read from the released files when `released` is set (the same class-balanced
    /// subset; labels checked against `d`), else generated from `seed` (draws per position in `d`).
    /// The second value says where the images came from (the released spec), for the records.
    pub fn images(
        &self,
        k: Corruption,
        sev: u32,
        d: &Dataset,
        subset: Option<usize>,
        seed: u64,
    ) -> Result<(Dataset, Option<String>)> {
        if let Some(r) = &self.released {
            let spec = format!("{r}:{}:{sev}", k.name());
            let c = load_eval_set(&spec, subset)?;
            ensure!(
                c.shape == d.shape && c.labels == d.labels,
                "{spec}: {} images of {:?} whose labels {} those of the evaluated set ({} images \
                 of {:?}): the released files must be corruptions of the same test set",
                c.len(),
                c.image_shape(),
                if c.labels.len() == d.labels.len() {
                    "differ from"
                } else {
                    "cannot match"
                },
                d.len(),
                d.image_shape()
            );
            return Ok((
                Dataset {
                    images: c.images,
                    ..d.clone()
                },
                Some(spec),
            ));
        }
        let imgs = crate::corrupt::corrupt_batch_nchw(
            &d.images, d.shape[1], d.shape[2], d.shape[3], k, sev, seed, 0,
        )
        .map_err(|e| anyhow::anyhow!("{} severity {sev}: {e}", k.name()))?;
        Ok((
            Dataset {
                images: imgs,
                ..d.clone()
            },
            None,
        ))
    }
}

fn all_severities() -> Vec<u32> {
    vec![1, 2, 3, 4, 5]
}

impl Suite {
    /// Read a suite file and check what `epsim robustness` needs: at least one attack or the
    /// corruptions, strengths that parse, `save_examples` ≥ 1, known protocols listed once.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading suite {}", path.display()))?;
        let suite: Suite = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: invalid suite: {}",
                path.display(),
                sim::suggest::did_you_mean(&e.to_string())
            )
        })?;
        if let Some(c) = &suite.corruptions {
            c.check()
                .with_context(|| format!("{}: [corruptions]", path.display()))?;
        }
        ensure!(
            !suite.attack.is_empty() || suite.corruptions.is_some(),
            "{}: the suite has no [[attack]] and no [corruptions]",
            path.display()
        );
        Ok(suite)
    }

    /// Check the attacks' strengths and examples and the protocols (see [`Suite::read`]).
    pub fn check(&self, path: &Path) -> Result<()> {
        for at in &self.attack {
            ensure!(
                at.save_examples != Some(0),
                "{}: attack {}: save_examples needs N ≥ 1",
                path.display(),
                at.name
            );
            ensure!(
                at.subset != Some(0),
                "{}: attack {}: subset needs N ≥ 1",
                path.display(),
                at.name
            );
            expand_eps(&at.eps)
                .with_context(|| format!("{}: attack {}", path.display(), at.name))?;
        }
        ensure!(
            !self.protocols.is_empty(),
            "{}: `protocols` is empty",
            path.display()
        );
        for (i, p) in self.protocols.iter().enumerate() {
            check_protocol(p).with_context(|| format!("{}", path.display()))?;
            for at in &self.attack {
                super::attack::check_attack_name(&at.name, p)
                    .with_context(|| format!("{}: [[attack]] {}", path.display(), at.name))?;
            }
            ensure!(
                !self.protocols[..i].contains(p),
                "{}: protocol {p:?} listed twice",
                path.display()
            );
        }
        Ok(())
    }
}

/// One entry of a suite: clean accuracy, an attack at one strength, a corruption at one severity.
#[derive(Debug, Clone, PartialEq)]
pub enum SuiteItem {
    /// Accuracy on the clean images.
    Clean,
    /// Robust accuracy under an attack at one strength.
    Attack {
        /// Attack name as `epsim attack --attack`.
        name: String,
        /// Strength as given.
        eps_text: String,
        /// Strength.
        eps: f64,
        /// Iterations or queries.
        steps: Option<usize>,
        /// Restarts (PGD).
        restarts: usize,
        /// Attack only this many of the evaluation images (class-balanced).
        subset: Option<usize>,
        /// A transfer attack from the model on this substrate (see [`SuiteAttack`]).
        transfer_from: Option<String>,
    },
    /// Accuracy on corrupted images.
    Corruption(Corruption, u32),
}

impl SuiteItem {
    /// Stable identifier used in results.jsonl (`item`), the table and the plot names:
    /// `clean`, `pgd-linf@8/255`, `gaussian_noise@s3`.
    pub fn id(&self) -> String {
        match self {
            SuiteItem::Clean => "clean".into(),
            SuiteItem::Attack {
                name,
                eps_text,
                transfer_from,
                ..
            } => match transfer_from {
                Some(src) => format!("{name}@{eps_text}~{src}"),
                None => format!("{name}@{eps_text}"),
            },
            SuiteItem::Corruption(c, s) => format!("{}@s{s}", c.name()),
        }
    }

    /// File stem of the item's plot: the id with every character other than `[A-Za-z0-9_.-]`
    /// replaced by `_` (`pgd-linf_8_255`, `gaussian_noise_s3`).
    pub fn file_stem(&self) -> String {
        self.id()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// The suite's items for `epsim sweep` (which runs the standard protocol only): see
/// [`Suite::items`].
pub fn suite_items(suite: &Suite, origin: &Path) -> Result<Vec<SuiteItem>> {
    ensure!(
        suite.protocols.iter().all(|p| p == "standard"),
        "{}: epsim sweep runs the standard protocol only (protocols = {:?}); compare protocols with epsim robustness",
        origin.display(),
        suite.protocols
    );
    suite.check_no_transfer(origin, "epsim sweep")?;
    suite.items(origin)
}

impl Suite {
    /// Refuse `transfer_from` where `what` (a command) does not run transfer attacks.
    pub fn check_no_transfer(&self, origin: &Path, what: &str) -> Result<()> {
        if let Some(a) = self.attack.iter().find(|a| a.transfer_from.is_some()) {
            bail!(
                "{}: attack {}: transfer_from runs in studies (epsim study) and with epsim \
                 attack --transfer-from, not in {what}",
                origin.display(),
                a.name
            );
        }
        Ok(())
    }

    /// The suite's items in order (clean first), validated: attack names have a norm, strengths
    /// parse, corruption names exist, severities are 1..=5. Errors name `origin`.
    pub fn items(&self, origin: &Path) -> Result<Vec<SuiteItem>> {
        let suite = self;
        let mut items = vec![SuiteItem::Clean];
        for at in &suite.attack {
            if !super::attack::ATTACK_NAMES.contains(&at.name.as_str()) {
                bail!(
                    "{}: {}",
                    origin.display(),
                    super::attack::unknown_attack(&at.name)
                );
            }
            if let Some(src) = &at.transfer_from {
                crate::classifier::substrate::SubstrateSpec::transfer_source(src).with_context(
                    || format!("{}: attack {}: transfer_from", origin.display(), at.name),
                )?;
            }
            for (e, v) in expand_eps(&at.eps)
                .with_context(|| format!("{}: attack {}", origin.display(), at.name))?
            {
                items.push(SuiteItem::Attack {
                    name: at.name.clone(),
                    eps_text: e,
                    eps: v,
                    steps: at.steps,
                    restarts: at.restarts,
                    subset: at.subset,
                    transfer_from: at.transfer_from.clone(),
                });
            }
        }
        if let Some(c) = &suite.corruptions {
            let kinds = Corruption::parse_list(&c.names)
                .map_err(|e| anyhow::anyhow!("{}: {e}", origin.display()))?;
            for &s in &c.severities {
                ensure!(
                    (1..=5).contains(&s),
                    "{}: corruption severity {s} is outside 1..=5",
                    origin.display()
                );
            }
            for k in kinds {
                for &s in &c.severities {
                    items.push(SuiteItem::Corruption(k, s));
                }
            }
        }
        Ok(items)
    }
}

/// Read and validate a suite file.
pub fn read_suite(path: &Path) -> Result<(Suite, Vec<SuiteItem>)> {
    let suite = Suite::read(path)?;
    let items = suite_items(&suite, path)?;
    Ok((suite, items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strengths_may_be_numbers_or_texts() {
        let s: Suite =
            toml::from_str("[[attack]]\nname = \"pgd-linf\"\neps = [0.1, \"8/255\", 1, 0.031]\n")
                .unwrap();
        assert_eq!(s.attack[0].eps, ["0.1", "8/255", "1", "0.031"]);
        let items = s.items(Path::new("s.toml")).unwrap();
        let eps: Vec<f64> = items
            .iter()
            .filter_map(|i| match i {
                SuiteItem::Attack { eps, .. } => Some(*eps),
                _ => None,
            })
            .collect();
        assert_eq!(eps, [0.1, 8.0 / 255.0, 1.0, 0.031]);
        let e = toml::from_str::<Suite>("[[attack]]\nname = \"pgd-linf\"\neps = [true]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("eps"), "{e}");
    }
}

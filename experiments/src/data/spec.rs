//! Dataset spec strings, as given on the command line.
//!
//! ```text
//! KIND:PATH[:SPLIT]     cifar10:/data/cifar-10-batches-bin:test
//!                       cifar100:/data/cifar-100-binary.tar.gz
//!                       mnist:/data/mnist:train
//!                       folder:/data/cifar10-jpeg.zip:test
//! cifar10c:DIR:CORRUPTION[:SEVERITY]   cifar10c:/data/CIFAR-10-C:fog:3
//!                       the released corruption files (see [`cifar_c`]); cifar100c likewise
//! fashion-mnist[:DIR][:SPLIT]   DIR defaults to $EPSIM_FASHION_MNIST_DIR or
//!                               /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist)
//! PATH[:SPLIT]          kind detected from the path (see [`detect`])
//! ```
//!
//! KIND is one of `cifar10`, `cifar100`, `fashion-mnist` (alias `fmnist`), `mnist`, `folder`,
//! `cifar10c`, `cifar100c`. SPLIT is `train` or `test` (image folders: any split folder name);
//! without it every split found is loaded. A trailing `:WORD` with no `/` in it is taken as the
//! split. For `cifar10c`/`cifar100c` the fields after DIR are the corruption (the file stem of
//! `DIR/<corruption>.npy`) and the severity 1..5 (all five, stacked, without it); DIR must not
//! contain `:`.

use super::error::{DataError, Result};
use super::{Dataset, cifar, cifar_c, folder, idx};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` package puts the files.
pub const FASHION_MNIST_DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Dataset kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// CIFAR-10 binary (file, directory or tar.gz).
    Cifar10,
    /// CIFAR-100 binary (file, directory or tar.gz).
    Cifar100,
    /// Fashion-MNIST IDX directory.
    FashionMnist,
    /// MNIST IDX directory.
    Mnist,
    /// Image folder (directory or zip).
    Folder,
    /// Released CIFAR-10-C corruption files (directory of `.npy`).
    Cifar10C,
    /// Released CIFAR-100-C corruption files (directory of `.npy`).
    Cifar100C,
}

impl Kind {
    /// Parse a kind name.
    pub fn from_name(s: &str) -> Option<Kind> {
        Some(match s.to_ascii_lowercase().as_str() {
            "cifar10" | "cifar-10" => Kind::Cifar10,
            "cifar100" | "cifar-100" => Kind::Cifar100,
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" | "fmnist" => Kind::FashionMnist,
            "mnist" => Kind::Mnist,
            "folder" | "imagefolder" => Kind::Folder,
            "cifar10c" | "cifar-10-c" | "cifar10-c" => Kind::Cifar10C,
            "cifar100c" | "cifar-100-c" | "cifar100-c" => Kind::Cifar100C,
            _ => return None,
        })
    }
    /// Canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Cifar10 => "cifar10",
            Kind::Cifar100 => "cifar100",
            Kind::FashionMnist => "fashion-mnist",
            Kind::Mnist => "mnist",
            Kind::Folder => "folder",
            Kind::Cifar10C => "cifar10c",
            Kind::Cifar100C => "cifar100c",
        }
    }
    /// The released-corruption-files variant, for `cifar10c`/`cifar100c`.
    pub fn corruption_files(self) -> Option<cifar_c::Variant> {
        match self {
            Kind::Cifar10C => Some(cifar_c::Variant::Cifar10C),
            Kind::Cifar100C => Some(cifar_c::Variant::Cifar100C),
            _ => None,
        }
    }
}

/// A parsed dataset spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSpec {
    /// Kind, if given (else detected from the path).
    pub kind: Option<Kind>,
    /// Path, if given (Fashion-MNIST has a default).
    pub path: Option<PathBuf>,
    /// Split, if given.
    pub split: Option<String>,
    /// Corruption (`cifar10c`/`cifar100c` only), if given.
    pub corruption: Option<String>,
    /// Severity 1..=5 (`cifar10c`/`cifar100c` only), if given.
    pub severity: Option<u32>,
}

impl fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(k) = self.kind {
            parts.push(k.name().to_string());
        }
        if let Some(p) = &self.path {
            parts.push(p.display().to_string());
        }
        if let Some(s) = &self.split {
            parts.push(s.clone());
        }
        if let Some(c) = &self.corruption {
            parts.push(c.clone());
        }
        if let Some(s) = self.severity {
            parts.push(s.to_string());
        }
        write!(f, "{}", parts.join(":"))
    }
}

fn looks_like_split(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && !s.contains('.')
}

impl std::str::FromStr for DatasetSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        DatasetSpec::parse(s)
    }
}

impl DatasetSpec {
    /// Parse a spec string (see the module docs).
    pub fn parse(s: &str) -> std::result::Result<DatasetSpec, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty dataset spec".into());
        }
        let (kind, rest) = match s.split_once(':') {
            Some((k, r)) if Kind::from_name(k).is_some() => (Kind::from_name(k), Some(r)),
            None if Kind::from_name(s).is_some() => (Kind::from_name(s), None),
            _ => (None, Some(s)),
        };
        if let Some(k) = kind.filter(|k| k.corruption_files().is_some()) {
            return parse_corruption_files(s, k, rest.unwrap_or(""));
        }
        let (path, split) = match rest {
            None | Some("") => (None, None),
            Some(r) => match r.rsplit_once(':') {
                Some((p, sp)) if looks_like_split(sp) && !p.is_empty() => {
                    (Some(p.to_string()), Some(sp.to_string()))
                }
                _ => {
                    let idx_kind = matches!(kind, Some(Kind::FashionMnist | Kind::Mnist));
                    if idx_kind && looks_like_split(r) && !Path::new(r).exists() {
                        (None, Some(r.to_string()))
                    } else {
                        (Some(r.to_string()), None)
                    }
                }
            },
        };
        if path.is_none() && kind != Some(Kind::FashionMnist) {
            return Err(format!(
                "dataset spec '{s}' needs a path (e.g. cifar10:/data/cifar-10-batches-bin:test); \
                 only fashion-mnist has a default location"
            ));
        }
        if let (Some(sp), Some(k)) = (&split, kind)
            && k != Kind::Folder
            && !matches!(sp.as_str(), "train" | "test" | "t10k" | "all")
        {
            return Err(format!("unknown split '{sp}' in '{s}' (use train or test)"));
        }
        Ok(DatasetSpec {
            kind,
            path: path.map(PathBuf::from),
            split: split.filter(|s| s != "all"),
            corruption: None,
            severity: None,
        })
    }

    /// The kind and path to load: the kind given or detected, the path given or the default.
    pub fn resolve(&self) -> Result<(Kind, PathBuf)> {
        let path = match (&self.path, self.kind) {
            (Some(p), _) => p.clone(),
            (None, Some(Kind::FashionMnist)) => fashion_mnist_dir(),
            (None, _) => return Err(DataError::file("", "dataset spec has no path")),
        };
        let kind = match self.kind {
            Some(k) => k,
            None => detect(&path)?,
        };
        Ok((kind, path))
    }

    /// Load the dataset: one [`Dataset`] per split (the requested one, or all found).
    pub fn load(&self) -> Result<Vec<Dataset>> {
        let (kind, path) = self.resolve()?;
        let split = self.split.as_deref();
        match kind {
            Kind::FashionMnist | Kind::Mnist => {
                let (name, classes): (&str, &[&str]) = if kind == Kind::FashionMnist {
                    ("fashion-mnist", &idx::FASHION_MNIST_CLASSES)
                } else {
                    ("mnist", &idx::MNIST_CLASSES)
                };
                if !path.is_dir() {
                    let hint = if kind == Kind::FashionMnist {
                        " (install it with `apt-get install -y dataset-fashion-mnist`, or set EPSIM_FASHION_MNIST_DIR)"
                    } else {
                        ""
                    };
                    return Err(DataError::file(
                        &path,
                        format!("not a directory holding the {name} IDX files{hint}"),
                    ));
                }
                let splits: Vec<&str> = match split {
                    Some(s) => vec![s],
                    None => ["train", "test"]
                        .into_iter()
                        .filter(|s| {
                            let (i, _) = idx::split_stems(s).expect("known split");
                            idx::find_file(&path, i).is_ok()
                        })
                        .collect(),
                };
                if splits.is_empty() {
                    return Err(DataError::file(
                        &path,
                        "no train-images-idx3-ubyte[.gz] or t10k-images-idx3-ubyte[.gz] here",
                    ));
                }
                idx::load_dir(&path, name, classes, &splits)
            }
            Kind::Cifar10 | Kind::Cifar100 => {
                let v = if kind == Kind::Cifar10 {
                    cifar::Variant::Cifar10
                } else {
                    cifar::Variant::Cifar100
                };
                if path.is_dir() {
                    let splits: Vec<&str> = match split {
                        Some(s) => vec![s],
                        None => cifar_dir_splits(&path, v),
                    };
                    if splits.is_empty() {
                        return Err(DataError::file(
                            &path,
                            format!(
                                "no {} batch files here (expected {} or {})",
                                v.name(),
                                v.split_files("train").unwrap_or_default().join(", "),
                                v.split_files("test").unwrap_or_default().join(", ")
                            ),
                        ));
                    }
                    cifar::load_dir(&path, v, &splits)
                } else if is_tar_name(&path) {
                    let splits: Vec<&str> = match split {
                        Some(s) => vec![s],
                        None => vec!["train", "test"],
                    };
                    cifar::load_tar(&path, v, &splits)
                } else {
                    let mut d = cifar::load_file(&path, v)?;
                    if let Some(s) = split {
                        d.split = s.to_string();
                    }
                    Ok(vec![d])
                }
            }
            Kind::Folder => folder::load(&path, split),
            Kind::Cifar10C | Kind::Cifar100C => {
                let v = kind.corruption_files().expect("a corruption-files kind");
                match &self.corruption {
                    None => Err(cifar_c::no_corruption_error(&path, v)),
                    Some(c) => Ok(vec![cifar_c::load(&path, v, c, self.severity)?]),
                }
            }
        }
    }
}

/// `cifar10c:DIR[:CORRUPTION[:SEVERITY]]` (and `cifar100c`): `rest` is what follows the kind.
fn parse_corruption_files(
    s: &str,
    kind: Kind,
    rest: &str,
) -> std::result::Result<DatasetSpec, String> {
    let parts: Vec<&str> = rest.split(':').collect();
    if parts[0].is_empty() {
        return Err(format!(
            "dataset spec '{s}' needs a directory, e.g. {}:/data/CIFAR-10-C:fog:3",
            kind.name()
        ));
    }
    if parts.len() > 3 {
        return Err(format!(
            "dataset spec '{s}': expected {}:DIR[:CORRUPTION[:SEVERITY]] (DIR must not contain ':')",
            kind.name()
        ));
    }
    let corruption = match parts.get(1) {
        Some(&"") => {
            return Err(format!("dataset spec '{s}': empty corruption name"));
        }
        Some(c) => Some(c.to_string()),
        None => None,
    };
    let severity = match parts.get(2) {
        None => None,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=5).contains(&n) => Some(n),
            _ => {
                return Err(format!(
                    "bad severity '{v}' in dataset spec '{s}' (use 1..5, or leave it out for all five)"
                ));
            }
        },
    };
    Ok(DatasetSpec {
        kind: Some(kind),
        path: Some(PathBuf::from(parts[0])),
        split: None,
        corruption,
        severity,
    })
}

/// Fashion-MNIST directory: `$EPSIM_FASHION_MNIST_DIR` or Debian's location.
pub fn fashion_mnist_dir() -> PathBuf {
    std::env::var_os("EPSIM_FASHION_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(FASHION_MNIST_DEFAULT_DIR))
}

fn is_tar_name(p: &Path) -> bool {
    let n = p
        .file_name()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    n.ends_with(".tar.gz") || n.ends_with(".tgz") || n.ends_with(".tar")
}

fn cifar_dir_splits(dir: &Path, v: cifar::Variant) -> Vec<&'static str> {
    let d = if dir.join(v.dir_name()).is_dir() {
        dir.join(v.dir_name())
    } else {
        dir.to_path_buf()
    };
    ["train", "test"]
        .into_iter()
        .filter(|s| {
            v.split_files(s)
                .unwrap_or_default()
                .iter()
                .any(|f| d.join(f).is_file())
        })
        .collect()
}

/// Detect the dataset kind from a path:
/// - a directory with `train-images-idx3-ubyte[.gz]` or `t10k-images-idx3-ubyte[.gz]`:
///   `fashion-mnist` if the path mentions "fashion", else `mnist`;
/// - a directory with `cifar-10-batches-bin/`, `data_batch_1.bin` or `test_batch.bin`: `cifar10`;
///   with `cifar-100-binary/`, or `train.bin`/`test.bin`: `cifar100`;
/// - a directory with `labels.npy`: `cifar10c` (released corruption files);
/// - any other directory, or a zip file: `folder`;
/// - a `.tar.gz`/`.tgz`/`.tar`: `cifar100` if its name contains "100", else `cifar10`;
/// - another file: CIFAR binary, `cifar10` if its size is a multiple of 3073, `cifar100` if of 3074.
pub fn detect(path: &Path) -> Result<Kind> {
    if path.is_dir() {
        let has = |f: &str| path.join(f).exists();
        if [
            "train-images-idx3-ubyte",
            "train-images-idx3-ubyte.gz",
            "t10k-images-idx3-ubyte",
            "t10k-images-idx3-ubyte.gz",
        ]
        .iter()
        .any(|f| has(f))
        {
            let fashion = path
                .to_string_lossy()
                .to_ascii_lowercase()
                .contains("fashion");
            return Ok(if fashion {
                Kind::FashionMnist
            } else {
                Kind::Mnist
            });
        }
        if has("cifar-10-batches-bin") || has("data_batch_1.bin") || has("test_batch.bin") {
            return Ok(Kind::Cifar10);
        }
        if has("cifar-100-binary") || has("train.bin") || has("test.bin") {
            return Ok(Kind::Cifar100);
        }
        if has(cifar_c::LABELS_FILE) {
            return Ok(Kind::Cifar10C);
        }
        return Ok(Kind::Folder);
    }
    if !path.exists() {
        return Err(DataError::file(path, "no such file or directory"));
    }
    if folder::is_zip(path) {
        return Ok(Kind::Folder);
    }
    if is_tar_name(path) {
        let n = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(if n.contains("100") {
            Kind::Cifar100
        } else {
            Kind::Cifar10
        });
    }
    let len = std::fs::metadata(path)
        .map_err(|e| DataError::file(path, format!("cannot stat: {e}")))?
        .len();
    if len > 0 && len % 3073 == 0 {
        Ok(Kind::Cifar10)
    } else if len > 0 && len % 3074 == 0 {
        Ok(Kind::Cifar100)
    } else {
        Err(DataError::file(
            path,
            format!(
                "cannot tell the dataset kind: {len} bytes is a multiple of neither the CIFAR-10 \
                 (3073) nor the CIFAR-100 (3074) record size; give the kind, e.g. cifar10:PATH"
            ),
        ))
    }
}

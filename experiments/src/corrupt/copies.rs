//! `epsim corrupt`: corrupted copies of a dataset of 3x32x32 images, either one file per
//! corruption and severity in the official CIFAR-10 binary layout (readable as `cifar10:<file>`),
//! or the released CIFAR-10-C layout (`<corruption>.npy` with the five severities stacked, and
//! `labels.npy`; readable as `cifar10c:<dir>:<corruption>[:<severity>]`).

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

use super::{Corruption, chw_to_hwc, corrupt_dataset, write_cifar_binary};
use crate::data::{cifar_c, load_eval_set, npy};

/// The layout `epsim corrupt` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `<corruption>_s<severity>.bin`, the CIFAR-10 binary layout (label byte + CHW pixels).
    #[default]
    Binary,
    /// The released CIFAR-10-C layout: `<corruption>.npy` (uint8, `(5·N, 32, 32, 3)`, severity
    /// 1 first) and `labels.npy` (int64, the labels repeated for each severity).
    Npy,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "binary" | "bin" | "cifar" => Ok(Format::Binary),
            "npy" => Ok(Format::Npy),
            _ => Err(format!("unknown format '{s}' (use binary or npy)")),
        }
    }
}

/// Write corrupted copies of the images of dataset spec `data` (the test split when it names
/// none) to `out`, for every corruption named in `names` (or "all") and every severity of
/// `severities` (all five when empty): `<corruption>_s<severity>.bin` files, or with
/// [`Format::Npy`] one `<corruption>.npy` per corruption (all five severities; other severity
/// lists are refused) and `labels.npy`. Prints a summary.
pub fn write_copies(
    data: &str,
    names: &[String],
    severities: &[u32],
    out: &Path,
    seed: u64,
    format: Format,
) -> Result<()> {
    let d = load_eval_set(data, None)?;
    ensure!(
        d.image_shape() == [3, 32, 32],
        "{}: epsim corrupt writes the CIFAR binary layout and needs 3x32x32 images, got {:?}",
        data,
        d.image_shape()
    );
    ensure!(d.classes.len() <= 256, "labels must fit a byte");
    let kinds = Corruption::parse_list(names).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sevs: Vec<u32> = if severities.is_empty() {
        (1..=5).collect()
    } else {
        severities.to_vec()
    };
    if format == Format::Npy && sevs != [1, 2, 3, 4, 5] {
        bail!(
            "--format npy writes the released layout, all five severities 1..5 stacked in each \
             file; leave out --severity (got {sevs:?})"
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let labels: Vec<u8> = d.labels.iter().map(|&l| l as u8).collect();
    if format == Format::Npy {
        return write_npy(&d.images, &labels, &kinds, out, seed);
    }
    let pb = crate::progress::progress((kinds.len() * sevs.len()) as u64, "corrupt");
    for c in &kinds {
        for &s in &sevs {
            let imgs = corrupt_dataset(&d.images, &labels, *c, s, seed)
                .map_err(|e| anyhow::anyhow!("{} severity {s}: {e}", c.name()))?;
            let path = out.join(format!("{}_s{s}.bin", c.name()));
            write_cifar_binary(&path, &labels, &imgs)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    println!(
        "wrote {} files ({} images each) to {}",
        kinds.len() * sevs.len(),
        d.len(),
        out.display()
    );
    Ok(())
}

/// The [`Format::Npy`] files: `<corruption>.npy` for each of `kinds` and `labels.npy`.
fn write_npy(
    images: &[u8],
    labels: &[u8],
    kinds: &[Corruption],
    out: &Path,
    seed: u64,
) -> Result<()> {
    let n = labels.len();
    let pb = crate::progress::progress((kinds.len() * cifar_c::SEVERITIES) as u64, "corrupt");
    for c in kinds {
        let mut nhwc = Vec::with_capacity(cifar_c::SEVERITIES * images.len());
        for s in 1..=cifar_c::SEVERITIES as u32 {
            let imgs = corrupt_dataset(images, labels, *c, s, seed)
                .map_err(|e| anyhow::anyhow!("{} severity {s}: {e}", c.name()))?;
            for img in imgs.chunks_exact(3072) {
                nhwc.extend_from_slice(&chw_to_hwc(img, 32, 32));
            }
            pb.inc(1);
        }
        let mut bytes = Vec::with_capacity(nhwc.len() + 128);
        npy::write_u8(&mut bytes, &[cifar_c::SEVERITIES * n, 32, 32, 3], &nhwc)?;
        crate::files::write_atomic(&out.join(format!("{}.npy", c.name())), &bytes)?;
    }
    let repeated: Vec<i64> = (0..cifar_c::SEVERITIES)
        .flat_map(|_| labels.iter().map(|&l| l as i64))
        .collect();
    let mut bytes = Vec::new();
    npy::write_i64(&mut bytes, &repeated)?;
    crate::files::write_atomic(&out.join(cifar_c::LABELS_FILE), &bytes)?;
    pb.finish_and_clear();
    println!(
        "wrote {} corruption files ({} severities x {n} images each) and {} to {}",
        kinds.len(),
        cifar_c::SEVERITIES,
        cifar_c::LABELS_FILE,
        out.display()
    );
    Ok(())
}

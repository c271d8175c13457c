//! `epsim corrupt`: corrupted copies of a dataset of 3x32x32 images, one file per corruption and
//! severity in the official CIFAR-10 binary layout (readable as `cifar10:<file>`).

use std::path::Path;

use anyhow::{Context, Result, ensure};

use super::{Corruption, corrupt_dataset, write_cifar_binary};
use crate::data::load_eval_set;

/// Write `<out>/<corruption>_s<severity>.bin` for every corruption named in `names` (or "all")
/// and every severity of `severities` (all five when empty), from the images of dataset spec
/// `data` (the test split when it names none). Prints the substitutes' notes and a summary.
pub fn write_copies(
    data: &str,
    names: &[String],
    severities: &[u32],
    out: &Path,
    seed: u64,
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
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let labels: Vec<u8> = d.labels.iter().map(|&l| l as u8).collect();
    let pb = crate::data::progress((kinds.len() * sevs.len()) as u64, "corrupt");
    for c in &kinds {
        if let Some(note) = c.substitute_note() {
            println!("note: {note}");
        }
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

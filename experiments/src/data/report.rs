//! Summaries of loaded datasets (`epsim data info`) and preview grids (`epsim data preview`).

use super::{DataError, Dataset, DatasetSpec, cifar_c};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// Summary of one split.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SplitSummary {
    /// Dataset name.
    pub name: String,
    /// Split name.
    pub split: String,
    /// Where it was read from.
    pub source: String,
    /// Number of images.
    pub count: usize,
    /// `[C, H, W]`.
    pub image_shape: [usize; 3],
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Images per class.
    pub class_counts: Vec<usize>,
    /// Number of coarse classes (CIFAR-100), if any.
    pub coarse_classes: Option<usize>,
    /// Per-channel mean of pixels in [0, 1].
    pub mean: Vec<f64>,
    /// Per-channel standard deviation of pixels in [0, 1].
    pub std: Vec<f64>,
}

/// Summarize a split.
pub fn summarize(d: &Dataset) -> SplitSummary {
    let (mean, std) = d.channel_mean_std();
    SplitSummary {
        name: d.name.clone(),
        split: d.split.clone(),
        source: d.source.clone(),
        count: d.len(),
        image_shape: d.image_shape(),
        classes: d.classes.clone(),
        class_counts: d.class_counts(),
        coarse_classes: d.coarse.as_ref().map(|(_, n)| n.len()),
        mean,
        std,
    }
}

/// `epsim data info` of a spec naming a directory of corruption files (`cifar10c:DIR`) but no
/// corruption: the directory's summary, as text or JSON. `None` for every other spec.
pub fn corruption_dir_info(spec: &DatasetSpec, json: bool) -> Result<Option<String>, DataError> {
    if spec.corruption.is_some() {
        return Ok(None);
    }
    let (kind, path) = spec.resolve()?;
    let Some(v) = kind.corruption_files() else {
        return Ok(None);
    };
    let s = cifar_c::summarize_dir(&path, v)?;
    Ok(Some(if json {
        serde_json::to_string_pretty(&s).map_err(|e| DataError::file(&path, e.to_string()))? + "\n"
    } else {
        cifar_c::format_dir_summary(&s)
    }))
}

/// Human-readable text of the summaries of a dataset's splits.
pub fn format_text(s: &[SplitSummary]) -> String {
    let mut o = String::new();
    let Some(first) = s.first() else {
        return "no data\n".into();
    };
    let _ = writeln!(o, "dataset:  {}", first.name);
    let total: usize = s.iter().map(|x| x.count).sum();
    let splits: Vec<String> = s
        .iter()
        .map(|x| format!("{} {}", x.split, x.count))
        .collect();
    let _ = writeln!(o, "splits:   {} (total {total})", splits.join(", "));
    for x in s {
        let [c, h, w] = x.image_shape;
        let _ = writeln!(o);
        let _ = writeln!(o, "[{}]", x.split);
        let _ = writeln!(o, "source:   {}", x.source);
        let _ = writeln!(o, "images:   {}", x.count);
        let _ = writeln!(o, "shape:    {c}x{h}x{w} (CxHxW, u8)");
        let _ = writeln!(o, "classes:  {}", x.classes.len());
        if let Some(k) = x.coarse_classes {
            let _ = writeln!(o, "coarse classes: {k}");
        }
        let wname = x.classes.iter().map(|n| n.len()).max().unwrap_or(0);
        for (i, (n, k)) in x.classes.iter().zip(&x.class_counts).enumerate() {
            let _ = writeln!(o, "  {i:>3}  {n:<wname$}  {k}");
        }
        let f = |v: &[f64]| {
            v.iter()
                .map(|m| format!("{m:.4}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            o,
            "mean:     {}  (per channel, pixels in [0,1])",
            f(&x.mean)
        );
        let _ = writeln!(o, "std:      {}", f(&x.std));
    }
    o
}

/// Write a PNG grid of images `start..start+rows·cols` (fewer if the dataset ends), each scaled by
/// `scale` (nearest neighbour), with a 1-pixel gap. Grayscale images are written as gray.
pub fn write_grid(
    d: &Dataset,
    start: usize,
    rows: usize,
    cols: usize,
    scale: usize,
    out: &Path,
) -> anyhow::Result<usize> {
    use anyhow::Context;
    let [_, c, h, w] = d.shape;
    let n = d.len().saturating_sub(start).min(rows * cols);
    anyhow::ensure!(
        n > 0,
        "no image at index {start} (the split has {})",
        d.len()
    );
    anyhow::ensure!(c == 1 || c == 3, "cannot draw images with {c} channels");
    let scale = scale.max(1);
    let cols = cols.min(n).max(1);
    let rows = n.div_ceil(cols);
    let (cw, ch) = (w * scale + 1, h * scale + 1);
    let (gw, gh) = (cols * cw + 1, rows * ch + 1);
    let mut img = image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([40, 40, 40]));
    for k in 0..n {
        let src = d.image(start + k);
        let (ox, oy) = ((k % cols) * cw + 1, (k / cols) * ch + 1);
        for y in 0..h * scale {
            for x in 0..w * scale {
                let p = (y / scale) * w + x / scale;
                let px = if c == 1 {
                    [src[p]; 3]
                } else {
                    [src[p], src[h * w + p], src[2 * h * w + p]]
                };
                img.put_pixel((ox + x) as u32, (oy + y) as u32, image::Rgb(px));
            }
        }
    }
    img.save_with_format(out, image::ImageFormat::Png)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(n)
}

//! The released CIFAR-10-C / CIFAR-100-C files (Hendrycks & Dietterich), and the files
//! `epsim corrupt --format npy` writes in the same layout.
//!
//! A directory holds one `<corruption>.npy` per corruption, `uint8` of shape `(5·N, H, W, 3)`
//! (NHWC; for the released sets 50,000 × 32 × 32 × 3): the N test images at severity 1, then at
//! severity 2, … 5. Beside them `labels.npy` holds the labels, one per row of a corruption file
//! (the N test labels repeated five times; any integer dtype, `int64` in the released files), or
//! just the N labels once.
//!
//! The dataset spec `cifar10c:DIR:CORRUPTION[:SEVERITY]` (or `cifar100c:`) selects one corruption
//! and one severity (N images) or all five (5·N images, severity-major as stored). Only the rows
//! asked for are read.

use super::Dataset;
use super::cifar::CIFAR10_CLASSES;
use super::error::{DataError, Result};
use super::npy::{self, NpyHeader};
use serde::Serialize;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Severities per corruption file.
pub const SEVERITIES: usize = 5;

/// The labels file of the released layout.
pub const LABELS_FILE: &str = "labels.npy";

/// Which released set: the label range and class names differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// CIFAR-10-C: labels 0..10.
    Cifar10C,
    /// CIFAR-100-C: fine labels 0..100.
    Cifar100C,
}

impl Variant {
    /// Dataset name (`cifar10c`, `cifar100c`).
    pub fn name(self) -> &'static str {
        match self {
            Variant::Cifar10C => "cifar10c",
            Variant::Cifar100C => "cifar100c",
        }
    }
    /// Class names in label order.
    pub fn classes(self) -> Vec<String> {
        match self {
            Variant::Cifar10C => CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
            Variant::Cifar100C => (0..100).map(|i| format!("class{i}")).collect(),
        }
    }
}

/// The corruption names of the `.npy` files in `dir` (every `*.npy` except `labels.npy`), sorted.
pub fn corruption_names(dir: &Path) -> Result<Vec<String>> {
    if !dir.is_dir() {
        return Err(DataError::file(
            dir,
            "not a directory (expected one holding <corruption>.npy files and labels.npy)",
        ));
    }
    let rd = std::fs::read_dir(dir)
        .map_err(|e| DataError::file(dir, format!("cannot list directory: {e}")))?;
    let mut names = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| DataError::file(dir, format!("cannot list directory: {e}")))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".npy")
            && name != LABELS_FILE
            && ent.path().is_file()
        {
            names.push(stem.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The error for a spec that names no corruption: which files the directory holds.
pub fn no_corruption_error(dir: &Path, v: Variant) -> DataError {
    match corruption_names(dir) {
        Err(e) => e,
        Ok(names) if names.is_empty() => DataError::file(
            dir,
            "holds no <corruption>.npy file (expected the released CIFAR-10-C layout)",
        ),
        Ok(names) => DataError::file(
            dir,
            format!(
                "name a corruption and optionally a severity, e.g. {}:{}:{}:3; corruption files \
                 found: {}",
                v.name(),
                dir.display(),
                names[0],
                names.join(", ")
            ),
        ),
    }
}

/// Check a corruption file's header: `uint8`, C order, `(5·N, H, W, 3)`, the size it announces.
/// Returns N (images per severity).
fn check_images(path: &Path, h: &NpyHeader, size: u64) -> Result<usize> {
    if npy::int_dtype(&h.descr) != Some((1, false)) {
        return Err(DataError::file(
            path,
            format!(
                "dtype {} is not uint8 (|u1): not a released corruption file",
                h.descr
            ),
        ));
    }
    if h.fortran_order {
        return Err(DataError::file(
            path,
            "stored in Fortran order; the released layout is C order (NHWC)",
        ));
    }
    let s = &h.shape;
    if s.len() != 4 || s[3] != 3 || s[0] == 0 || s[1] == 0 || s[2] == 0 {
        return Err(DataError::file(
            path,
            format!(
                "shape {} is not (5·N, H, W, 3) (the released files are (50000, 32, 32, 3))",
                h.shape_text()
            ),
        ));
    }
    if !s[0].is_multiple_of(SEVERITIES) {
        return Err(DataError::file(
            path,
            format!(
                "shape {}: {} images are not five severities of equal size",
                h.shape_text(),
                s[0]
            ),
        ));
    }
    npy::check_size(path, h, 1, size)?;
    Ok(s[0] / SEVERITIES)
}

/// Load corruption `corruption` of the directory `dir`, at `severity` (1..=5; all five stacked
/// when `None`).
pub fn load(dir: &Path, v: Variant, corruption: &str, severity: Option<u32>) -> Result<Dataset> {
    let names = corruption_names(dir)?;
    let path = dir.join(format!("{corruption}.npy"));
    if !path.is_file() {
        return Err(DataError::file(
            &path,
            format!(
                "no such corruption file: unknown corruption '{corruption}'; found: {}",
                if names.is_empty() {
                    "no <corruption>.npy file".to_string()
                } else {
                    names.join(", ")
                }
            ),
        ));
    }
    if let Some(s) = severity
        && !(1..=SEVERITIES as u32).contains(&s)
    {
        return Err(DataError::file(
            &path,
            format!("severity {s} is outside 1..=5"),
        ));
    }
    let (h, mut f, size) = npy::open(&path)?;
    let n = check_images(&path, &h, size)?;
    let (ih, iw) = (h.shape[1], h.shape[2]);
    let per = ih * iw * 3;
    let rows = match severity {
        Some(s) => (s as usize - 1) * n..s as usize * n,
        None => 0..SEVERITIES * n,
    };
    f.seek(SeekFrom::Start(h.data_offset + (rows.start * per) as u64))
        .map_err(|e| DataError::file(&path, format!("cannot seek: {e}")))?;
    let mut hwc = vec![0u8; rows.len() * per];
    f.read_exact(&mut hwc).map_err(|e| {
        DataError::at(
            &path,
            h.data_offset + (rows.start * per) as u64,
            format!("cannot read images: {e}"),
        )
    })?;
    let labels = load_labels(dir, v, &path, SEVERITIES * n, n, rows.clone())?;
    let mut images = vec![0u8; hwc.len()];
    let hw = ih * iw;
    for (dst, src) in images.chunks_exact_mut(per).zip(hwc.chunks_exact(per)) {
        for p in 0..hw {
            for c in 0..3 {
                dst[c * hw + p] = src[p * 3 + c];
            }
        }
    }
    let split = match severity {
        Some(s) => format!("{corruption}:{s}"),
        None => corruption.to_string(),
    };
    let d = Dataset {
        name: v.name().to_string(),
        split,
        source: path.display().to_string(),
        images,
        shape: [rows.len(), 3, ih, iw],
        labels,
        classes: v.classes(),
        coarse: None,
    };
    d.validate().map_err(|e| DataError::file(&path, e))?;
    Ok(d)
}

/// The labels of rows `rows` of a corruption file with `total` = 5·`n` rows (`image_file` named
/// in the size error).
fn load_labels(
    dir: &Path,
    v: Variant,
    image_file: &Path,
    total: usize,
    n: usize,
    rows: std::ops::Range<usize>,
) -> Result<Vec<u16>> {
    let lp = dir.join(LABELS_FILE);
    if !lp.is_file() {
        return Err(DataError::file(
            &lp,
            "missing: the released layout keeps the labels in labels.npy beside the corruption \
             files",
        ));
    }
    let all = npy::read_ints_1d(&lp)?;
    let classes = v.classes().len() as i64;
    if let Some(i) = all.iter().position(|&l| !(0..classes).contains(&l)) {
        let hint = if v == Variant::Cifar10C && all[i] >= 10 && all[i] < 100 {
            " (a CIFAR-100-C directory? use cifar100c:)"
        } else {
            ""
        };
        return Err(DataError::file(
            &lp,
            format!(
                "label {} at index {i} is outside 0..{classes} for {}{hint}",
                all[i],
                v.name()
            ),
        ));
    }
    let pick = |i: usize| all[i] as u16;
    if all.len() == total {
        Ok(rows.map(pick).collect())
    } else if all.len() == n {
        Ok(rows.map(|r| pick(r % n)).collect())
    } else {
        Err(DataError::file(
            &lp,
            format!(
                "holds {} labels; {} has {total} images (5 severities x {n}): expected {total} \
                 (one per image) or {n} (one per test image)",
                all.len(),
                image_file.display()
            ),
        ))
    }
}

/// Summary of one corruption file (`epsim data info cifar10c:DIR`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileSummary {
    /// Corruption name (file stem).
    pub corruption: String,
    /// Array shape.
    pub shape: Vec<usize>,
    /// Images per severity.
    pub per_severity: usize,
}

/// Summary of a directory in the released layout, read from the headers and the labels only.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DirSummary {
    /// Dataset name.
    pub name: String,
    /// The directory.
    pub dir: PathBuf,
    /// Number of labels in labels.npy.
    pub labels: usize,
    /// Labels per class (over the whole labels file).
    pub class_counts: Vec<usize>,
    /// Class names.
    pub classes: Vec<String>,
    /// The corruption files, by name.
    pub files: Vec<FileSummary>,
}

/// Summarize a directory: every corruption file's header is checked, the labels are read and
/// their count checked against each file.
pub fn summarize_dir(dir: &Path, v: Variant) -> Result<DirSummary> {
    let names = corruption_names(dir)?;
    if names.is_empty() {
        return Err(no_corruption_error(dir, v));
    }
    let mut files = Vec::new();
    let mut labels = None;
    for c in &names {
        let path = dir.join(format!("{c}.npy"));
        let (h, _, size) = npy::open(&path)?;
        let n = check_images(&path, &h, size)?;
        let l = load_labels(dir, v, &path, SEVERITIES * n, n, 0..n * SEVERITIES)?;
        labels.get_or_insert(l);
        files.push(FileSummary {
            corruption: c.clone(),
            shape: h.shape.clone(),
            per_severity: n,
        });
    }
    let labels = labels.unwrap_or_default();
    let classes = v.classes();
    let mut class_counts = vec![0usize; classes.len()];
    for &l in &labels {
        class_counts[l as usize] += 1;
    }
    Ok(DirSummary {
        name: v.name().to_string(),
        dir: dir.to_path_buf(),
        labels: labels.len(),
        class_counts,
        classes,
        files,
    })
}

/// Human-readable text of a [`DirSummary`].
pub fn format_dir_summary(s: &DirSummary) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "dataset:  {} (corruption files, released layout)",
        s.name
    );
    let _ = writeln!(o, "dir:      {}", s.dir.display());
    let _ = writeln!(
        o,
        "files:    {} corruptions x {SEVERITIES} severities",
        s.files.len()
    );
    let wname = s
        .files
        .iter()
        .map(|f| f.corruption.len())
        .max()
        .unwrap_or(0);
    for f in &s.files {
        let _ = writeln!(
            o,
            "  {:<wname$}  {}  {SEVERITIES} x {} images",
            f.corruption,
            npy::shape_text(&f.shape),
            f.per_severity
        );
    }
    let _ = writeln!(
        o,
        "labels:   {} in {LABELS_FILE}, {} classes",
        s.labels,
        s.classes.len()
    );
    let wc = s.classes.iter().map(|n| n.len()).max().unwrap_or(0);
    for (i, (n, k)) in s.classes.iter().zip(&s.class_counts).enumerate() {
        let _ = writeln!(o, "  {i:>3}  {n:<wc$}  {k}");
    }
    let first = s
        .files
        .first()
        .map(|f| f.corruption.as_str())
        .unwrap_or("fog");
    let _ = writeln!(
        o,
        "select:   {}:{}:{first}[:SEVERITY] (one corruption; severity 1..5, all five without)",
        s.name,
        s.dir.display()
    );
    o
}

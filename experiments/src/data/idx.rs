//! MNIST / Fashion-MNIST IDX files (raw or gzip).
//!
//! Images: magic `0x00000803`, then big-endian u32 count, rows, cols, then count·rows·cols bytes.
//! Labels: magic `0x00000801`, then big-endian u32 count, then count bytes. A directory holds the
//! four standard files `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each optionally `.gz`.

use super::Dataset;
use super::error::{DataError, Result, gunzip, is_gzip, read_file};
use std::path::{Path, PathBuf};

/// Fashion-MNIST class names, label order 0..9.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// MNIST class names (the digits).
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Read a file, decompressing it if it is gzip.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = read_file(path)?;
    if is_gzip(&raw) {
        gunzip(path, &raw)
    } else {
        Ok(raw)
    }
}

fn be_u32(path: &Path, data: &[u8], off: usize, what: &str) -> Result<u32> {
    data.get(off..off + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| {
            DataError::at(
                path,
                data.len() as u64,
                format!(
                    "truncated IDX header: {what} expected at offset {off}, file has only {} bytes",
                    data.len()
                ),
            )
        })
}

/// Parse IDX image data: returns (n, rows, cols, pixels).
pub fn parse_images(path: &Path, data: &[u8]) -> Result<(usize, usize, usize, Vec<u8>)> {
    let magic = be_u32(path, data, 0, "magic number")?;
    if magic != IMAGES_MAGIC {
        return Err(DataError::at(
            path,
            0,
            format!("bad magic number 0x{magic:08x}, expected 0x{IMAGES_MAGIC:08x} (IDX images)"),
        ));
    }
    let n = be_u32(path, data, 4, "image count")? as usize;
    let rows = be_u32(path, data, 8, "row count")? as usize;
    let cols = be_u32(path, data, 12, "column count")? as usize;
    if rows == 0 || cols == 0 || rows > 65536 || cols > 65536 {
        return Err(DataError::at(
            path,
            8,
            format!("implausible image size {rows}x{cols}"),
        ));
    }
    let need = n
        .checked_mul(rows * cols)
        .ok_or_else(|| DataError::at(path, 4, format!("image count {n} too large")))?;
    let have = data.len() - 16;
    if have < need {
        let full = have / (rows * cols);
        return Err(DataError::at(
            path,
            (16 + full * rows * cols) as u64,
            format!(
                "truncated: header says {n} images of {rows}x{cols} ({need} bytes from offset 16), \
                 the file ends at offset {} inside image {full}",
                data.len()
            ),
        ));
    }
    if have > need {
        return Err(DataError::at(
            path,
            (16 + need) as u64,
            format!(
                "{} trailing bytes after {n} images of {rows}x{cols}",
                have - need
            ),
        ));
    }
    Ok((n, rows, cols, data[16..].to_vec()))
}

/// Parse IDX label data; every label must be below `num_classes`.
pub fn parse_labels(path: &Path, data: &[u8], num_classes: usize) -> Result<Vec<u16>> {
    let magic = be_u32(path, data, 0, "magic number")?;
    if magic != LABELS_MAGIC {
        return Err(DataError::at(
            path,
            0,
            format!("bad magic number 0x{magic:08x}, expected 0x{LABELS_MAGIC:08x} (IDX labels)"),
        ));
    }
    let n = be_u32(path, data, 4, "label count")? as usize;
    let have = data.len() - 8;
    if have != n {
        return Err(DataError::at(
            path,
            (8 + have.min(n)) as u64,
            format!(
                "header says {n} labels from offset 8, the file holds {have} label bytes{}",
                if have < n { " (truncated)" } else { "" }
            ),
        ));
    }
    let labels = &data[8..];
    if let Some(i) = labels.iter().position(|&l| l as usize >= num_classes) {
        return Err(DataError::at(
            path,
            (8 + i) as u64,
            format!(
                "label {} of item {i} is out of range (0..{num_classes})",
                labels[i]
            ),
        ));
    }
    Ok(labels.iter().map(|&l| l as u16).collect())
}

/// Load one split from an image file and a label file.
pub fn load_pair(
    images: &Path,
    labels: &Path,
    name: &str,
    split: &str,
    classes: &[&str],
) -> Result<Dataset> {
    let (n, rows, cols, px) = parse_images(images, &read_maybe_gz(images)?)?;
    let lab = parse_labels(labels, &read_maybe_gz(labels)?, classes.len())?;
    if lab.len() != n {
        return Err(DataError::file(
            labels,
            format!(
                "holds {} labels but the image file {} holds {n} images",
                lab.len(),
                images.display()
            ),
        ));
    }
    Ok(Dataset {
        name: name.to_string(),
        split: split.to_string(),
        source: format!("{} + {}", images.display(), labels.display()),
        images: px,
        shape: [n, 1, rows, cols],
        labels: lab,
        classes: classes.iter().map(|s| s.to_string()).collect(),
        coarse: None,
    })
}

/// The standard file of `stem` in `dir` (raw or `.gz`), or an error listing what was looked for.
pub fn find_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    for cand in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(&cand);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DataError::file(
        dir,
        format!("no {stem} or {stem}.gz in this directory"),
    ))
}

/// IDX file stems of a split: (images, labels).
pub fn split_stems(split: &str) -> Option<(&'static str, &'static str)> {
    match split {
        "train" => Some(("train-images-idx3-ubyte", "train-labels-idx1-ubyte")),
        "test" | "t10k" => Some(("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
        _ => None,
    }
}

/// Load the given splits (`train`, `test`) from an IDX directory.
pub fn load_dir(dir: &Path, name: &str, classes: &[&str], splits: &[&str]) -> Result<Vec<Dataset>> {
    if !dir.is_dir() {
        return Err(DataError::file(
            dir,
            "not a directory (expected the four IDX files)",
        ));
    }
    let mut out = Vec::new();
    for &s in splits {
        let (i, l) = split_stems(s).ok_or_else(|| {
            DataError::file(dir, format!("unknown split '{s}' (use train or test)"))
        })?;
        let canonical = if s == "t10k" { "test" } else { s };
        out.push(load_pair(
            &find_file(dir, i)?,
            &find_file(dir, l)?,
            name,
            canonical,
            classes,
        )?);
    }
    Ok(out)
}

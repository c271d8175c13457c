//! CIFAR-10 and CIFAR-100 in the official binary layout.
//!
//! CIFAR-10 record: 1 label byte + 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major
//! 32x32). CIFAR-100 record: 1 coarse label byte + 1 fine label byte + 3072 pixel bytes; the fine
//! label is the dataset label, the coarse one is kept in [`Dataset::coarse`].
//!
//! Accepted forms: one `.bin` file; the extracted directory (`cifar-10-batches-bin/` with
//! `data_batch_1..5.bin`, `test_batch.bin`, `batches.meta.txt`; `cifar-100-binary/` with
//! `train.bin`, `test.bin`, `fine_label_names.txt`, `coarse_label_names.txt`), or the parent
//! holding it; the `.tar.gz` archive of either.

use super::Dataset;
use super::error::{DataError, Result, read_file};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Pixel bytes of one 3x32x32 image.
pub const PIXELS: usize = 3 * 32 * 32;

/// CIFAR-10 class names (label order), as in `batches.meta.txt`.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Which CIFAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// 10 classes, 1 label byte.
    Cifar10,
    /// 100 fine classes + 20 coarse, 2 label bytes.
    Cifar100,
}

impl Variant {
    /// Bytes per record.
    pub fn record_len(self) -> usize {
        match self {
            Variant::Cifar10 => 1 + PIXELS,
            Variant::Cifar100 => 2 + PIXELS,
        }
    }
    /// Dataset name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Cifar10 => "cifar10",
            Variant::Cifar100 => "cifar100",
        }
    }
    /// Number of (fine) classes.
    pub fn num_classes(self) -> usize {
        match self {
            Variant::Cifar10 => 10,
            Variant::Cifar100 => 100,
        }
    }
    /// File names of a split, in order.
    pub fn split_files(self, split: &str) -> Option<Vec<String>> {
        match (self, split) {
            (Variant::Cifar10, "train") => {
                Some((1..=5).map(|i| format!("data_batch_{i}.bin")).collect())
            }
            (Variant::Cifar10, "test") => Some(vec!["test_batch.bin".into()]),
            (Variant::Cifar100, "train") => Some(vec!["train.bin".into()]),
            (Variant::Cifar100, "test") => Some(vec!["test.bin".into()]),
            _ => None,
        }
    }
    /// Directory name inside the official archive.
    pub fn dir_name(self) -> &'static str {
        match self {
            Variant::Cifar10 => "cifar-10-batches-bin",
            Variant::Cifar100 => "cifar-100-binary",
        }
    }
}

/// Records parsed from one or more files of a split.
#[derive(Debug, Default)]
pub struct Records {
    /// Pixel bytes, NCHW.
    pub images: Vec<u8>,
    /// Labels (fine labels for CIFAR-100).
    pub labels: Vec<u16>,
    /// Coarse labels (CIFAR-100 only).
    pub coarse: Vec<u16>,
}

/// Parse the records of one file's bytes and append them. `path` names the file in errors.
/// Label ranges: CIFAR-10 `0..10`; CIFAR-100 fine `0..100`, coarse `0..20`.
pub fn parse_records(path: &Path, data: &[u8], v: Variant, out: &mut Records) -> Result<()> {
    let rl = v.record_len();
    if data.is_empty() {
        return Err(DataError::file(path, "empty file, no CIFAR records"));
    }
    if !data.len().is_multiple_of(rl) {
        let full = data.len() / rl;
        return Err(DataError::at(
            path,
            (full * rl) as u64,
            format!(
                "file size {} is not a multiple of the {} record size {rl}: partial record {full} \
                 has {} bytes (truncated or not a {} file)",
                data.len(),
                v.name(),
                data.len() % rl,
                v.name()
            ),
        ));
    }
    let n = data.len() / rl;
    out.images.reserve(n * PIXELS);
    for r in 0..n {
        let rec = &data[r * rl..(r + 1) * rl];
        let off = (r * rl) as u64;
        match v {
            Variant::Cifar10 => {
                if rec[0] >= 10 {
                    return Err(DataError::at(
                        path,
                        off,
                        format!(
                            "label {} of record {r} is out of range (0..10): not a CIFAR-10 file?",
                            rec[0]
                        ),
                    ));
                }
                out.labels.push(rec[0] as u16);
                out.images.extend_from_slice(&rec[1..]);
            }
            Variant::Cifar100 => {
                if rec[0] >= 20 {
                    return Err(DataError::at(
                        path,
                        off,
                        format!(
                            "coarse label {} of record {r} is out of range (0..20): not a CIFAR-100 file?",
                            rec[0]
                        ),
                    ));
                }
                if rec[1] >= 100 {
                    return Err(DataError::at(
                        path,
                        off + 1,
                        format!(
                            "fine label {} of record {r} is out of range (0..100): not a CIFAR-100 file?",
                            rec[1]
                        ),
                    ));
                }
                out.coarse.push(rec[0] as u16);
                out.labels.push(rec[1] as u16);
                out.images.extend_from_slice(&rec[2..]);
            }
        }
    }
    Ok(())
}

/// Parse a names file (one name a line, blank lines ignored).
pub fn parse_names(path: &Path, data: &[u8], expect: usize) -> Result<Vec<String>> {
    let text = std::str::from_utf8(data)
        .map_err(|e| DataError::at(path, e.valid_up_to() as u64, "not UTF-8 text"))?;
    let names: Vec<String> = text
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != expect {
        return Err(DataError::file(
            path,
            format!("holds {} class names, expected {expect}", names.len()),
        ));
    }
    Ok(names)
}

fn default_names(v: Variant) -> (Vec<String>, Option<Vec<String>>) {
    match v {
        Variant::Cifar10 => (
            CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
            None,
        ),
        Variant::Cifar100 => (
            (0..100).map(|i| format!("class{i}")).collect(),
            Some((0..20).map(|i| format!("superclass{i}")).collect()),
        ),
    }
}

fn names_files(v: Variant) -> (&'static str, Option<&'static str>) {
    match v {
        Variant::Cifar10 => ("batches.meta.txt", None),
        Variant::Cifar100 => ("fine_label_names.txt", Some("coarse_label_names.txt")),
    }
}

fn build(
    v: Variant,
    split: &str,
    source: String,
    rec: Records,
    names: (Vec<String>, Option<Vec<String>>),
) -> Dataset {
    let n = rec.labels.len();
    Dataset {
        name: v.name().to_string(),
        split: split.to_string(),
        source,
        images: rec.images,
        shape: [n, 3, 32, 32],
        labels: rec.labels,
        classes: names.0,
        coarse: match v {
            Variant::Cifar10 => None,
            Variant::Cifar100 => Some((rec.coarse, names.1.unwrap_or_default())),
        },
    }
}

/// Guess the split of a single file from its name (`test*` → test, else train).
fn split_of_file(path: &Path) -> &'static str {
    let name = path.file_name().and_then(|s| s.to_str()).unwrap_or("");
    if name.starts_with("test") {
        "test"
    } else {
        "train"
    }
}

/// Load one `.bin` file; class names come from the names file beside it if present.
pub fn load_file(path: &Path, v: Variant) -> Result<Dataset> {
    let data = read_file(path)?;
    let mut rec = Records::default();
    parse_records(path, &data, v, &mut rec)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let names = read_names_dir(dir, v)?;
    Ok(build(
        v,
        split_of_file(path),
        path.display().to_string(),
        rec,
        names,
    ))
}

fn read_names_dir(dir: &Path, v: Variant) -> Result<(Vec<String>, Option<Vec<String>>)> {
    let (fine, coarse) = names_files(v);
    let (mut names, mut cnames) = default_names(v);
    let p = dir.join(fine);
    if p.is_file() {
        names = parse_names(&p, &read_file(&p)?, v.num_classes())?;
    }
    if let Some(c) = coarse {
        let p = dir.join(c);
        if p.is_file() {
            cnames = Some(parse_names(&p, &read_file(&p)?, 20)?);
        }
    }
    Ok((names, cnames))
}

/// The directory holding the batch files: `dir` itself or its official sub-directory.
fn batches_dir(dir: &Path, v: Variant) -> PathBuf {
    let sub = dir.join(v.dir_name());
    if sub.is_dir() { sub } else { dir.to_path_buf() }
}

/// Load splits from an extracted directory. Every file of a requested split must exist.
pub fn load_dir(dir: &Path, v: Variant, splits: &[&str]) -> Result<Vec<Dataset>> {
    let d = batches_dir(dir, v);
    let names = read_names_dir(&d, v)?;
    let mut out = Vec::new();
    for &s in splits {
        let files = v.split_files(s).ok_or_else(|| {
            DataError::file(&d, format!("unknown split '{s}' (use train or test)"))
        })?;
        let mut rec = Records::default();
        for f in &files {
            let p = d.join(f);
            if !p.is_file() {
                return Err(DataError::file(
                    &p,
                    format!(
                        "missing: the {} {s} split needs {}",
                        v.name(),
                        files.join(", ")
                    ),
                ));
            }
            parse_records(&p, &read_file(&p)?, v, &mut rec)?;
        }
        out.push(build(v, s, d.display().to_string(), rec, names.clone()));
    }
    Ok(out)
}

/// Load splits from the official `.tar.gz` (or a plain `.tar`). Files are found by base name.
pub fn load_tar(path: &Path, v: Variant, splits: &[&str]) -> Result<Vec<Dataset>> {
    let file = std::fs::File::open(path)
        .map_err(|e| DataError::file(path, format!("cannot open: {e}")))?;
    let mut head = [0u8; 2];
    {
        use std::io::Read;
        let mut f = &file;
        let _ = f.read(&mut head);
    }
    let file = std::fs::File::open(path)
        .map_err(|e| DataError::file(path, format!("cannot open: {e}")))?;
    let reader: Box<dyn std::io::Read> = if head == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let mut ar = tar::Archive::new(reader);
    let (fine_names, coarse_names) = names_files(v);
    let mut wanted: Vec<String> = Vec::new();
    for &s in splits {
        wanted.extend(v.split_files(s).ok_or_else(|| {
            DataError::file(path, format!("unknown split '{s}' (use train or test)"))
        })?);
    }
    // base name → (entry path, bytes)
    let mut found: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    let entries = ar
        .entries()
        .map_err(|e| DataError::file(path, format!("not a readable tar archive: {e}")))?;
    let mut last = String::from("(start of archive)");
    for ent in entries {
        let mut ent = ent.map_err(|e| {
            DataError::file(
                path,
                format!("corrupt archive after entry '{last}' (gzip or tar damaged): {e}"),
            )
        })?;
        let name = ent
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "(unreadable name)".into());
        last = name.clone();
        let base = name.rsplit('/').next().unwrap_or("").to_string();
        let keep =
            wanted.contains(&base) || base == fine_names || coarse_names.is_some_and(|c| c == base);
        if !keep || !ent.header().entry_type().is_file() {
            continue;
        }
        let mut buf = Vec::new();
        use std::io::Read;
        ent.read_to_end(&mut buf).map_err(|e| DataError {
            file: path.to_path_buf(),
            at: super::Location::EntryOffset(name.clone(), buf.len() as u64),
            msg: format!("cannot read entry (archive truncated or corrupt): {e}"),
        })?;
        found.insert(base, (name, buf));
    }
    let (mut names, mut cnames) = default_names(v);
    if let Some((e, b)) = found.get(fine_names) {
        names =
            parse_names(Path::new(e), b, v.num_classes()).map_err(|err| err.in_entry(path, e))?;
    }
    if let Some(c) = coarse_names
        && let Some((e, b)) = found.get(c)
    {
        cnames = Some(parse_names(Path::new(e), b, 20).map_err(|err| err.in_entry(path, e))?);
    }
    let mut out = Vec::new();
    for &s in splits {
        let files = v.split_files(s).unwrap_or_default();
        let mut rec = Records::default();
        for f in &files {
            let (e, b) = found.get(f).ok_or_else(|| {
                DataError::file(
                    path,
                    format!(
                        "archive has no entry named {f} (the {} {s} split needs {})",
                        v.name(),
                        files.join(", ")
                    ),
                )
            })?;
            parse_records(Path::new(e), b, v, &mut rec).map_err(|err| err.in_entry(path, e))?;
        }
        out.push(build(
            v,
            s,
            path.display().to_string(),
            rec,
            (names.clone(), cnames.clone()),
        ));
    }
    Ok(out)
}

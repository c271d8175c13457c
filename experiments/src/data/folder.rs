//! Image folders: a directory or a zip archive of class sub-folders,
//! `root/{split}/{class}/*.{jpg,jpeg,png}`.
//!
//! The class of an image is the name of its folder, the split the name of the folder above
//! (images only one level below the root belong to split `all`). Classes are sorted by name,
//! unless a `batches.meta.txt` or `classes.txt` (one name a line, label order) sits in the root
//! directory, beside the zip, or inside the zip. All images are decoded to RGB (C = 3) and must
//! have the same size.
//!
//! JPEG is decoded with libjpeg-turbo's decoder (vendored in the `mozjpeg` crate): ISLOW integer
//! IDCT and "fancy" (triangle-filter) chroma upsampling, bit-for-bit what PIL/Pillow and
//! torchvision produce. Warnings of libjpeg (corrupt or truncated data) are treated as errors.

use super::Dataset;
use super::error::{DataError, Result};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Names of meta files that give the class order.
pub const META_FILES: [&str; 2] = ["batches.meta.txt", "classes.txt"];

/// One image file found in the folder or archive.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path inside the root or archive, `/`-separated.
    pub name: String,
    /// Split folder name (`all` when there is none).
    pub split: String,
    /// Class folder name.
    pub class: String,
    /// Encoded bytes.
    pub bytes: Vec<u8>,
}

fn is_image_name(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    l.ends_with(".jpg") || l.ends_with(".jpeg") || l.ends_with(".png")
}

/// (split, class) of an image path, if it is inside a class folder.
fn split_class(name: &str) -> Option<(String, String)> {
    let comps: Vec<&str> = name.split('/').filter(|c| !c.is_empty()).collect();
    let n = comps.len();
    if n < 2 {
        return None;
    }
    let split = if n >= 3 { comps[n - 3] } else { "all" };
    Some((split.to_string(), comps[n - 2].to_string()))
}

/// A decoded image: (width, height, RGB interleaved bytes), or what went wrong.
pub type Decoded = std::result::Result<(usize, usize, Vec<u8>), String>;

/// A meta file found: (where, its bytes).
type Meta = Option<(String, Vec<u8>)>;

/// What a scan found: the image entries of the wanted split(s), every split name and every
/// class name seen (in any split), a meta file.
type Scan = (Vec<Entry>, BTreeSet<String>, BTreeSet<String>, Meta);

/// Decode a JPEG or PNG to (width, height, RGB interleaved bytes).
pub fn decode_image(bytes: &[u8]) -> Decoded {
    if bytes.starts_with(&[0xff, 0xd8]) {
        decode_jpeg(bytes)
    } else if bytes.starts_with(b"\x89PNG") {
        let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
            .map_err(|e| format!("PNG decode failed: {e}"))?;
        let rgb = img.to_rgb8();
        Ok((rgb.width() as usize, rgb.height() as usize, rgb.into_raw()))
    } else {
        Err(format!(
            "neither JPEG nor PNG (first bytes {:02x?})",
            &bytes[..bytes.len().min(4)]
        ))
    }
}

fn jpeg_message(cinfo: &mut mozjpeg_sys::jpeg_common_struct) -> String {
    // SAFETY: called by libjpeg with a valid cinfo whose `err` is our manager; `format_message`
    // writes at most JMSG_LENGTH_MAX (80) bytes into the buffer.
    unsafe {
        let Some(err) = cinfo.err.as_ref() else {
            return "libjpeg error".into();
        };
        match err.format_message {
            Some(fmt) => {
                let buffer = [0u8; 80];
                fmt(cinfo, &buffer);
                let s = buffer.split(|&c| c == 0).next().unwrap_or_default();
                String::from_utf8_lossy(s).into_owned()
            }
            None => format!("libjpeg error code {}", err.msg_code),
        }
    }
}

struct JpegFailure(String);

extern "C-unwind" fn strict_error_exit(cinfo: &mut mozjpeg_sys::jpeg_common_struct) {
    let m = jpeg_message(cinfo);
    std::panic::resume_unwind(Box::new(JpegFailure(m)));
}

extern "C-unwind" fn strict_emit_message(
    cinfo: &mut mozjpeg_sys::jpeg_common_struct,
    level: std::os::raw::c_int,
) {
    if level < 0 {
        // A warning: corrupt or truncated data that libjpeg would paper over.
        let m = jpeg_message(cinfo);
        std::panic::resume_unwind(Box::new(JpegFailure(m)));
    }
}

fn strict_err_mgr() -> mozjpeg_sys::jpeg_error_mgr {
    // SAFETY: jpeg_std_error fills every field of the zeroed struct.
    unsafe {
        let mut err: mozjpeg_sys::jpeg_error_mgr = std::mem::zeroed();
        mozjpeg_sys::jpeg_std_error(&mut err);
        err.error_exit = Some(strict_error_exit);
        err.emit_message = Some(strict_emit_message);
        err
    }
}

fn decode_jpeg(bytes: &[u8]) -> Decoded {
    let run = || -> Decoded {
        let d = mozjpeg::Decompress::builder()
            .with_err(strict_err_mgr())
            .from_mem(bytes)
            .map_err(|e| format!("JPEG header: {e}"))?;
        let (w, h) = (d.width(), d.height());
        let mut s = d.rgb().map_err(|e| format!("JPEG decode: {e}"))?;
        let px: Vec<u8> = s
            .read_scanlines::<u8>()
            .map_err(|e| format!("JPEG decode: {e}"))?;
        s.finish().map_err(|e| format!("JPEG decode: {e}"))?;
        if px.len() != w * h * 3 {
            return Err(format!(
                "JPEG decode gave {} bytes for {w}x{h} RGB",
                px.len()
            ));
        }
        Ok((w, h, px))
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(r) => r,
        Err(payload) => Err(
            if let Some(JpegFailure(m)) = payload.downcast_ref::<JpegFailure>() {
                format!("JPEG decode failed: {m}")
            } else if let Some(s) = payload.downcast_ref::<String>() {
                format!("JPEG decode failed: {s}")
            } else if let Some(s) = payload.downcast_ref::<&str>() {
                format!("JPEG decode failed: {s}")
            } else {
                "JPEG decode failed".to_string()
            },
        ),
    }
}

/// Collect the image files of a directory tree (those of split `want`, if given) and the meta
/// file in its root.
fn scan_dir(root: &Path, want: Option<&str>) -> Result<Scan> {
    let mut out = Vec::new();
    let mut splits = BTreeSet::new();
    let mut classes = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d)
            .map_err(|e| DataError::file(&d, format!("cannot list directory: {e}")))?;
        for ent in rd {
            let ent =
                ent.map_err(|e| DataError::file(&d, format!("cannot list directory: {e}")))?;
            let p = ent.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if !p.to_str().is_some_and(is_image_name) {
                continue;
            }
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .replace('\\', "/");
            let Some((split, class)) = split_class(&rel) else {
                continue;
            };
            splits.insert(split.clone());
            classes.insert(class.clone());
            if want.is_some_and(|w| w != split) {
                continue;
            }
            let bytes =
                std::fs::read(&p).map_err(|e| DataError::file(&p, format!("cannot read: {e}")))?;
            out.push(Entry {
                name: rel,
                split,
                class,
                bytes,
            });
        }
    }
    Ok((out, splits, classes, meta_beside(root)?))
}

/// A meta file in `dir`, if any.
fn meta_beside(dir: &Path) -> Result<Meta> {
    for m in META_FILES {
        let p = dir.join(m);
        if p.is_file() {
            return Ok(Some((
                p.display().to_string(),
                super::error::read_file(&p)?,
            )));
        }
    }
    Ok(None)
}

/// Collect the image entries of a zip archive (those of split `want`, if given) and a meta file
/// inside it or beside it.
fn scan_zip(path: &Path, want: Option<&str>) -> Result<Scan> {
    use std::io::Read;
    let f = std::fs::File::open(path)
        .map_err(|e| DataError::file(path, format!("cannot open: {e}")))?;
    let mut z = zip::ZipArchive::new(std::io::BufReader::new(f))
        .map_err(|e| DataError::file(path, format!("not a readable zip archive: {e}")))?;
    let pb = crate::progress::progress(z.len() as u64, "reading zip");
    let mut out = Vec::new();
    let mut splits = BTreeSet::new();
    let mut classes = BTreeSet::new();
    let mut meta = None;
    for i in 0..z.len() {
        pb.inc(1);
        let mut e = z
            .by_index(i)
            .map_err(|err| DataError::file(path, format!("zip entry #{i}: {err}")))?;
        if e.is_dir() {
            continue;
        }
        let name = e
            .name()
            .map(|s| s.to_string())
            .map_err(|err| DataError::file(path, format!("zip entry #{i}: bad name: {err}")))?;
        let base = name.rsplit('/').next().unwrap_or("");
        let is_meta = META_FILES.contains(&base);
        let sc = if is_image_name(&name) {
            split_class(&name)
        } else {
            None
        };
        if let Some((split, class)) = &sc {
            splits.insert(split.clone());
            classes.insert(class.clone());
        }
        let wanted = sc
            .as_ref()
            .is_some_and(|(s, _)| want.is_none_or(|w| w == s));
        if !(wanted || is_meta && meta.is_none()) {
            continue;
        }
        let mut bytes = Vec::with_capacity(e.size() as usize);
        e.read_to_end(&mut bytes).map_err(|err| {
            DataError::entry(
                path,
                &name,
                format!("cannot read entry after {} bytes: {err}", bytes.len()),
            )
        })?;
        match sc {
            Some((split, class)) if wanted => out.push(Entry {
                name,
                split,
                class,
                bytes,
            }),
            _ => meta = Some((format!("{}: entry '{name}'", path.display()), bytes)),
        }
    }
    pb.finish_and_clear();
    if meta.is_none() {
        meta = meta_beside(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok((out, splits, classes, meta))
}

/// Whether a path is a zip archive (by its magic bytes).
pub fn is_zip(path: &Path) -> bool {
    use std::io::Read;
    let mut b = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
        && &b == b"PK\x03\x04"
}

/// Load an image folder (directory or zip). `split`: only that split; `None`: every split found.
pub fn load(path: &Path, split: Option<&str>) -> Result<Vec<Dataset>> {
    let (entries, splits, found, meta) = if path.is_dir() {
        scan_dir(path, split)?
    } else if path.is_file() {
        scan_zip(path, split)?
    } else {
        return Err(DataError::file(path, "no such file or directory"));
    };
    if splits.is_empty() {
        return Err(DataError::file(
            path,
            "no .jpg/.jpeg/.png images in {split}/{class}/ sub-folders",
        ));
    }
    if let Some(s) = split
        && !splits.contains(s)
    {
        return Err(DataError::file(
            path,
            format!(
                "no split '{s}' (found: {})",
                splits.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    // Class order: meta file, else sorted folder names (over all splits, so that every split
    // gets the same labels).
    let classes: Vec<String> = match &meta {
        Some((src, bytes)) => {
            let text = String::from_utf8_lossy(bytes);
            let names: Vec<String> = text
                .lines()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            if let Some(e) = entries.iter().find(|e| !names.contains(&e.class)) {
                return Err(DataError::entry(
                    path,
                    &e.name,
                    format!(
                        "class folder '{}' is not listed in the meta file {src}",
                        e.class
                    ),
                ));
            }
            names
        }
        None => found.into_iter().collect(),
    };
    let class_index: BTreeMap<&str, u16> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u16))
        .collect();
    let chosen: Vec<String> = match split {
        Some(s) => vec![s.to_string()],
        None => splits.into_iter().collect(),
    };
    let mut out = Vec::new();
    for s in chosen {
        let mut es: Vec<&Entry> = entries.iter().filter(|e| e.split == s).collect();
        es.sort_by(|a, b| {
            (class_index[a.class.as_str()], &a.name).cmp(&(class_index[b.class.as_str()], &b.name))
        });
        let pb = crate::progress::progress(es.len() as u64, &format!("decoding {s}"));
        let decoded: Vec<Decoded> = es
            .par_iter()
            .map(|e| {
                let r = decode_image(&e.bytes);
                pb.inc(1);
                r
            })
            .collect();
        pb.finish_and_clear();
        let mut size: Option<(usize, usize, &str)> = None;
        let mut images = Vec::new();
        for (e, d) in es.iter().zip(decoded) {
            let (w, h, rgb) = d.map_err(|m| DataError::entry(path, &e.name, m))?;
            match size {
                None => {
                    size = Some((w, h, &e.name));
                    images.reserve(es.len() * 3 * w * h);
                }
                Some((w0, h0, first)) if (w0, h0) != (w, h) => {
                    return Err(DataError::entry(
                        path,
                        &e.name,
                        format!(
                            "image is {w}x{h}, expected {w0}x{h0} like '{first}' (all images must have the same size)"
                        ),
                    ));
                }
                _ => {}
            }
            // HWC interleaved → CHW planes.
            let hw = w * h;
            for c in 0..3 {
                images.extend((0..hw).map(|k| rgb[k * 3 + c]));
            }
        }
        let (w, h, _) = size.expect("split has entries");
        out.push(Dataset {
            name: "folder".to_string(),
            split: s.clone(),
            source: path.display().to_string(),
            images,
            shape: [es.len(), 3, h, w],
            labels: es.iter().map(|e| class_index[e.class.as_str()]).collect(),
            classes: classes.clone(),
            coarse: None,
        });
    }
    Ok(out)
}

//! The NumPy `.npy` format, as far as the released corruption files need it: reading the header
//! (dtype, memory order, shape, where the data starts) with errors that name the file, reading
//! integer arrays, and writing C-order `uint8` / `int64` arrays.
//!
//! Layout (NumPy's `format.py` documents it): the magic `\x93NUMPY`, a major and a minor version
//! byte, the header length (2 bytes little-endian in version 1, 4 bytes in versions 2 and 3), then
//! the header, a Python dict literal such as
//! `{'descr': '|u1', 'fortran_order': False, 'shape': (50000, 32, 32, 3), }` padded with spaces
//! and ended by a newline so that the data starts at a multiple of 64 bytes.

use super::error::{DataError, Result};
use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The parsed header of an `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// The dtype descriptor, e.g. `|u1`, `<i8`.
    pub descr: String,
    /// Whether the data is stored in Fortran (column-major) order.
    pub fortran_order: bool,
    /// The array shape.
    pub shape: Vec<usize>,
    /// Byte offset of the first data byte.
    pub data_offset: u64,
}

impl NpyHeader {
    /// Number of elements (the product of the shape).
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
    /// The shape as NumPy prints it, e.g. `(50000, 32, 32, 3)`.
    pub fn shape_text(&self) -> String {
        shape_text(&self.shape)
    }
}

/// A shape as NumPy prints it: `(3,)`, `(5, 32, 32, 3)`.
pub fn shape_text(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

/// Parse the header at the start of `r` (the contents of `path`, named in errors).
pub fn read_header(path: &Path, r: &mut impl Read) -> Result<NpyHeader> {
    let mut pre = [0u8; 10];
    r.read_exact(&mut pre).map_err(|_| {
        DataError::file(path, "not an .npy file: shorter than the 10-byte preamble")
    })?;
    if &pre[..6] != MAGIC {
        return Err(DataError::at(
            path,
            0,
            format!(
                "not an .npy file: starts with {:02x?}, expected \\x93NUMPY",
                &pre[..6]
            ),
        ));
    }
    let (len, start) = match pre[6] {
        1 => (u16::from_le_bytes([pre[8], pre[9]]) as usize, 10u64),
        2 | 3 => {
            let mut more = [0u8; 2];
            r.read_exact(&mut more)
                .map_err(|_| DataError::at(path, 10, "truncated .npy header length"))?;
            (
                u32::from_le_bytes([pre[8], pre[9], more[0], more[1]]) as usize,
                12u64,
            )
        }
        v => {
            return Err(DataError::at(
                path,
                6,
                format!("unsupported .npy format version {v}.{}", pre[7]),
            ));
        }
    };
    if len > 1 << 20 {
        return Err(DataError::at(
            path,
            8,
            format!("implausible .npy header length {len}"),
        ));
    }
    let mut h = vec![0u8; len];
    r.read_exact(&mut h).map_err(|_| {
        DataError::at(
            path,
            start,
            format!("truncated .npy header ({len} bytes announced)"),
        )
    })?;
    let text = String::from_utf8_lossy(&h);
    let bad = |what: &str| {
        DataError::at(
            path,
            start,
            format!("bad .npy header {:?}: {what}", text.trim_end()),
        )
    };
    let descr = dict_value(&text, "descr").ok_or_else(|| bad("no 'descr'"))?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split_once('\''))
        .map(|(d, _)| d.to_string())
        .ok_or_else(|| {
            bad("'descr' is not a plain dtype string (structured arrays are not supported)")
        })?;
    let fortran = dict_value(&text, "fortran_order").ok_or_else(|| bad("no 'fortran_order'"))?;
    let fortran_order = if fortran.starts_with("True") {
        true
    } else if fortran.starts_with("False") {
        false
    } else {
        return Err(bad("'fortran_order' is neither True nor False"));
    };
    let shape = dict_value(&text, "shape").ok_or_else(|| bad("no 'shape'"))?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split_once(')'))
        .map(|(s, _)| s)
        .ok_or_else(|| bad("'shape' is not a tuple"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad("'shape' holds a non-integer"))
        })
        .collect::<Result<Vec<usize>>>()?;
    Ok(NpyHeader {
        descr,
        fortran_order,
        shape,
        data_offset: start + len as u64,
    })
}

/// The text after `'key':` in a header dict, leading spaces removed.
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("'{key}':");
    let i = text.find(&pat)?;
    Some(text[i + pat.len()..].trim_start())
}

/// Open `path` and parse its header; also return the file's length.
pub fn open(path: &Path) -> Result<(NpyHeader, std::fs::File, u64)> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| DataError::file(path, format!("cannot open: {e}")))?;
    let size = f
        .metadata()
        .map_err(|e| DataError::file(path, format!("cannot stat: {e}")))?
        .len();
    let h = read_header(path, &mut f)?;
    Ok((h, f, size))
}

/// Bytes per element of an integer dtype descriptor and whether it is signed; `None` for other
/// dtypes (floats, big-endian, strings, ...).
pub fn int_dtype(descr: &str) -> Option<(usize, bool)> {
    Some(match descr {
        "|u1" | "<u1" | "u1" => (1, false),
        "|i1" | "<i1" | "i1" => (1, true),
        "<u2" => (2, false),
        "<i2" => (2, true),
        "<u4" => (4, false),
        "<i4" => (4, true),
        "<u8" => (8, false),
        "<i8" => (8, true),
        _ => return None,
    })
}

/// Check that the file holds exactly the data its header announces (no truncation, no trailing
/// bytes), for elements of `item` bytes.
pub fn check_size(path: &Path, h: &NpyHeader, item: usize, size: u64) -> Result<()> {
    let want = h.data_offset + (h.elements() * item) as u64;
    if size < want {
        return Err(DataError::at(
            path,
            size,
            format!(
                "truncated: shape {} of {} needs {} data bytes after the {}-byte header, the file \
                 has {}",
                h.shape_text(),
                h.descr,
                h.elements() * item,
                h.data_offset,
                size.saturating_sub(h.data_offset)
            ),
        ));
    }
    if size > want {
        return Err(DataError::at(
            path,
            want,
            format!(
                "{} bytes after the data that shape {} of {} announces",
                size - want,
                h.shape_text(),
                h.descr
            ),
        ));
    }
    Ok(())
}

/// Read a whole 1-D integer array (any little-endian integer dtype) as `i64`.
pub fn read_ints_1d(path: &Path) -> Result<Vec<i64>> {
    let (h, mut f, size) = open(path)?;
    let (item, signed) = int_dtype(&h.descr).ok_or_else(|| {
        DataError::file(
            path,
            format!(
                "dtype {} is not a little-endian integer type (labels must be integers, e.g. <i8)",
                h.descr
            ),
        )
    })?;
    if h.shape.len() != 1 {
        return Err(DataError::file(
            path,
            format!("shape {} is not one-dimensional", h.shape_text()),
        ));
    }
    check_size(path, &h, item, size)?;
    let mut raw = vec![0u8; h.elements() * item];
    f.read_exact(&mut raw)
        .map_err(|e| DataError::at(path, h.data_offset, format!("cannot read data: {e}")))?;
    Ok(raw
        .chunks_exact(item)
        .map(|b| {
            let mut w = [0u8; 8];
            w[..item].copy_from_slice(b);
            let u = u64::from_le_bytes(w);
            if signed && item < 8 && b[item - 1] & 0x80 != 0 {
                (u | (!0u64 << (8 * item))) as i64
            } else {
                u as i64
            }
        })
        .collect())
}

/// The header bytes (preamble, dict, padding, newline) of a version 1.0 C-order array.
pub fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}",
        shape_text(shape)
    );
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let mut h = Vec::with_capacity(total);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&[1, 0]);
    h.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(total - 1, b' ');
    h.push(b'\n');
    h
}

/// Write a C-order `uint8` array of `shape` (data length must match) to `out`.
pub fn write_u8(out: &mut impl Write, shape: &[usize], data: &[u8]) -> std::io::Result<()> {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "npy shape");
    out.write_all(&header_bytes("|u1", shape))?;
    out.write_all(data)
}

/// Write a 1-D `int64` array to `out`.
pub fn write_i64(out: &mut impl Write, data: &[i64]) -> std::io::Result<()> {
    out.write_all(&header_bytes("<i8", &[data.len()]))?;
    for v in data {
        out.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

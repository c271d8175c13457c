//! Errors of the dataset loaders. Every error names the file (and, inside an archive, the entry)
//! and, where it makes sense, the byte offset at which the problem was found.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in a file the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The file as a whole (missing, unreadable, wrong kind).
    File,
    /// A byte offset in the (decompressed) file.
    Offset(u64),
    /// An entry of a zip or tar archive.
    Entry(String),
    /// A byte offset inside an archive entry.
    EntryOffset(String, u64),
}

/// A dataset loading error: the file, where in it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    /// The file (or archive) that could not be read.
    pub file: PathBuf,
    /// Where in the file.
    pub at: Location,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match &self.at {
            Location::File => write!(f, "{file}: {}", self.msg),
            Location::Offset(o) => write!(f, "{file}: at byte offset {o}: {}", self.msg),
            Location::Entry(e) => write!(f, "{file}: entry '{e}': {}", self.msg),
            Location::EntryOffset(e, o) => {
                write!(f, "{file}: entry '{e}': at byte offset {o}: {}", self.msg)
            }
        }
    }
}

impl std::error::Error for DataError {}

impl DataError {
    /// An error about the file as a whole.
    pub fn file(file: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        DataError {
            file: file.as_ref().to_path_buf(),
            at: Location::File,
            msg: msg.into(),
        }
    }
    /// An error at a byte offset of the file.
    pub fn at(file: impl AsRef<Path>, offset: u64, msg: impl Into<String>) -> Self {
        DataError {
            file: file.as_ref().to_path_buf(),
            at: Location::Offset(offset),
            msg: msg.into(),
        }
    }
    /// An error about an archive entry.
    pub fn entry(file: impl AsRef<Path>, entry: impl Into<String>, msg: impl Into<String>) -> Self {
        DataError {
            file: file.as_ref().to_path_buf(),
            at: Location::Entry(entry.into()),
            msg: msg.into(),
        }
    }
    /// Place this error (found at `at` of some byte stream) inside archive entry `entry` of `archive`.
    pub fn in_entry(self, archive: impl AsRef<Path>, entry: &str) -> Self {
        let at = match self.at {
            Location::Offset(o) => Location::EntryOffset(entry.to_string(), o),
            Location::EntryOffset(e, o) => Location::EntryOffset(format!("{entry}/{e}"), o),
            Location::Entry(e) => Location::Entry(format!("{entry}/{e}")),
            Location::File => Location::Entry(entry.to_string()),
        };
        DataError {
            file: archive.as_ref().to_path_buf(),
            at,
            msg: self.msg,
        }
    }
}

/// Result alias of the loaders.
pub type Result<T> = std::result::Result<T, DataError>;

/// Read a whole file, with an error naming it.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| DataError::file(path, format!("cannot read: {e}")))
}

/// Decompress gzip data; a corrupt stream gives an error naming the file and the number of
/// decompressed bytes that came out before it.
pub fn gunzip(path: &Path, data: &[u8]) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut dec = flate2::read::MultiGzDecoder::new(data);
    let mut out = Vec::with_capacity(data.len() * 4);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) => {
                return Err(DataError::at(
                    path,
                    out.len() as u64,
                    format!(
                        "corrupt gzip stream (offset is in the decompressed data, {} compressed bytes in file): {e}",
                        data.len()
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// Whether `data` starts with the gzip magic bytes.
pub fn is_gzip(data: &[u8]) -> bool {
    data.len() >= 2 && data[0] == 0x1f && data[1] == 0x8b
}

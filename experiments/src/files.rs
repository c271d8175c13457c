//! File writing shared by every command: atomic replacement (a reader never sees a half-written
//! file, a crash leaves the old one) and appending JSON Lines records.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Write `bytes` to `path` atomically (temporary file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|s| s.to_str()).unwrap_or("file")
    ));
    {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// A JSON Lines file opened for appending (created if missing), one record per line.
pub struct JsonlAppender {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl JsonlAppender {
    /// Open `path` for appending (its folder is created if missing).
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(JsonlAppender {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Append one record as a line.
    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let line = serde_json::to_string(record)?;
        writeln!(self.file, "{line}").with_context(|| format!("writing {}", self.path.display()))
    }

    /// Append ready-made lines (each ending in a newline) in one write, and flush.
    pub fn append_raw(&mut self, lines: &str) -> Result<()> {
        self.file
            .write_all(lines.as_bytes())
            .and_then(|_| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

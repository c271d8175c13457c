//! File writing shared by every command: atomic replacement (a reader never sees a half-written
//! file, a crash leaves the old one; file and directory synced), appending JSON Lines records, and
//! the lock that gives an output directory to one process.

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
    // The rename itself is durable only once the directory is synced.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Make sure `path` can be written once the work is done: its folder is created and a file can be
/// created in it. Called before long computations, so they never end in an error about their
/// output. `what` names the option or role of the file in the message (`--plot`, ...).
pub fn check_writable(path: &Path, what: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "{what} {}: cannot create its folder {}",
            path.display(),
            dir.display()
        )
    })?;
    anyhow::ensure!(
        !path.is_dir(),
        "{what} {}: is a folder, not a file",
        path.display()
    );
    let probe = dir.join(format!(
        ".{}.probe",
        path.file_name().and_then(|s| s.to_str()).unwrap_or("file")
    ));
    std::fs::File::create(&probe).with_context(|| {
        format!(
            "{what} {}: cannot write in {}",
            path.display(),
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// An output directory owned by one process: `<dir>/.epsim.lock` holds the owner's pid and host,
/// created exclusively; a second process is refused with a message naming the owner, unless the
/// owner is a process of this host that no longer exists (a stale lock left by a kill, replaced).
/// The lock file is removed when this value is dropped.
#[derive(Debug)]
pub struct DirLock {
    path: std::path::PathBuf,
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl DirLock {
    /// Take `dir` (created if missing) for this process; `what` names the work in messages.
    pub fn acquire(dir: &Path, what: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(".epsim.lock");
        let me = format!("{} {}\n", std::process::id(), this_host());
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(me.as_bytes())
                        .and_then(|_| f.sync_all())
                        .with_context(|| format!("writing {}", path.display()))?;
                    return Ok(DirLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path).unwrap_or_default();
                    let mut it = owner.split_whitespace();
                    let pid: Option<u32> = it.next().and_then(|p| p.parse().ok());
                    let host = it.next().unwrap_or("unknown").to_string();
                    let gone = host == this_host()
                        && pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists());
                    anyhow::ensure!(
                        gone,
                        "{} is in use by another {what} (process {} on {host}; lock file {}): \
                         wait for it or choose another --out; if that process is gone, remove \
                         the lock file",
                        dir.display(),
                        pid.map_or("?".to_string(), |p| p.to_string()),
                        path.display()
                    );
                    tracing::warn!(
                        "removing the stale lock {} ({})",
                        path.display(),
                        owner.trim()
                    );
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing the stale lock {}", path.display()))?;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("creating {}", path.display()));
                }
            }
        }
        anyhow::bail!("{}: could not take the lock", path.display())
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
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

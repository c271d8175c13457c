//! Chip export on disk: [`ep::export`]'s programming targets written as a directory
//! (`manifest.json`, `netlist.json`, per tile `g_pos.npy` / `g_neg.npy` and level indices, whole
//! layers' weights; layout in [`ep::export`]), and read back into a netlist.

use std::path::Path;

use anyhow::{Context, Result};
use ep::export::{ChipExport, Manifest, NpyArray, export, rebuild};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use sim::netlist::{Loaded, NResult, Netlist, NetlistError, Origin};

/// Write the export of a loaded netlist into `dir`; returns the manifest. The export is written
/// into a fresh sibling folder that then replaces `dir`, so a re-export leaves no file of the
/// previous one behind (a previous export with more tiles, say) and an interrupted export leaves
/// the previous one intact. `dir` must be new, empty, or an earlier export (it holds
/// `manifest.json`): other folders are refused, never emptied.
pub fn write_export(l: &Loaded, dir: &Path) -> Result<Manifest> {
    let ChipExport {
        manifest,
        netlist,
        files,
    } = export(l)?;
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("{}", dir.display()))?
            .next()
            .is_none();
        anyhow::ensure!(
            empty || dir.join("manifest.json").is_file(),
            "{}: the folder holds files that are not an epsim export (no manifest.json); export \
             into a new or empty folder",
            dir.display()
        );
    }
    let sibling = |tag: &str| {
        let name = dir
            .file_name()
            .map_or("export".into(), |n| n.to_string_lossy().into_owned());
        dir.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
    };
    let tmp = sibling("writing");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("{}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}", tmp.display()))?;
    write_files(&tmp, &manifest, &netlist, &files)?;
    if dir.exists() {
        let old = sibling("previous");
        std::fs::rename(dir, &old)
            .with_context(|| format!("moving the previous export {} aside", dir.display()))?;
        std::fs::rename(&tmp, dir).with_context(|| format!("{}", dir.display()))?;
        std::fs::remove_dir_all(&old).with_context(|| format!("{}", old.display()))?;
    } else {
        std::fs::rename(&tmp, dir).with_context(|| format!("{}", dir.display()))?;
    }
    Ok(manifest)
}

/// The export's files in `dir`.
fn write_files(
    dir: &Path,
    manifest: &Manifest,
    netlist: &Netlist,
    files: &[(String, NpyArray)],
) -> Result<()> {
    for (name, a) in files {
        let p = dir.join(name);
        let f = std::io::BufWriter::new(
            std::fs::File::create(&p).with_context(|| format!("{}", p.display()))?,
        );
        match a {
            NpyArray::F32(a) => a.write_npy(f),
            NpyArray::U32(a) => a.write_npy(f),
        }
        .with_context(|| format!("{}", p.display()))?;
    }
    std::fs::write(dir.join("netlist.json"), netlist.to_json()).context("netlist.json")?;
    let text = serde_json::to_string_pretty(manifest).context("manifest")?;
    std::fs::write(dir.join("manifest.json"), text).context("manifest.json")?;
    Ok(())
}

/// Read an export directory back into a netlist, every weight matrix reconstructed from the
/// tiles' conductances ([`ep::export::rebuild`]). Errors name the file and the JSON path.
pub fn read_export(dir: &Path) -> NResult<Loaded> {
    let mpath = dir.join("manifest.json");
    let mfile = mpath.display().to_string();
    let ferr = |msg: String| NetlistError {
        file: mfile.clone(),
        path: "$".into(),
        msg,
    };
    let text = std::fs::read_to_string(&mpath).map_err(|e| ferr(format!("cannot read: {e}")))?;
    let m: Manifest = serde_json::from_str(&text).map_err(|e| ferr(e.to_string()))?;
    let npath = dir.join(&m.netlist);
    let base = Netlist::read(&npath)?;
    rebuild(&m, &base, &mfile, Origin::file(&npath), |f| {
        let p = dir.join(f);
        let fh = std::fs::File::open(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        ndarray::ArrayD::<f32>::read_npy(fh).map_err(|e| format!("{}: {e}", p.display()))
    })
}

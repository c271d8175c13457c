//! Chip export: programming targets of a netlist, tile by tile, and the reader that turns an export
//! back into a netlist.
//!
//! Layout of an export directory:
//!
//! * `manifest.json` — [`Manifest`]: per array its weight/bias files and its tiles; per tile the
//!   layer (array name), the crossbar row range (inputs) and column range (outputs) in the layer's
//!   `[out, in]` matrix (conv weights flattened OIHW: input `c·k·k + ky·k + kx`), the device kind,
//!   the conductance range in µS, the number of levels (0 = continuous), the mapping mode and the
//!   mapping scale in µS per weight unit (one value, or one per column);
//! * per tile `{array}.tile{k}.g_pos.npy` and `.g_neg.npy`: float32 target conductances in µS,
//!   shape `[rows, cols]` as on the physical array (element `[r, c]` = crossbar row `r`, column
//!   `c`); with a levelled device also `.lvl_pos.npy` / `.lvl_neg.npy` (uint32 level indices,
//!   `g = g_min + index · (g_max − g_min)/(levels − 1)`);
//! * `{array}.weight.npy`, `{array}.bias.npy`: the whole layer's weights (PyTorch layout);
//! * `netlist.json`: the netlist, its tensors referring to the `.npy` files.
//!
//! Targets are what a programming routine aims for; they carry no programming noise.
//!
//! This module builds the export in memory ([`export`]: the manifest, the netlist referring to the
//! `.npy` files by name, and the arrays) and rebuilds a netlist from one ([`rebuild`]); writing and
//! reading the directory is the caller's (`experiments::export`): a model never knows about files.

use devices::CellModel;
use devices::mapping::{ScaleMode, weights_to_targets};
use serde::{Deserialize, Serialize};
use sim::netlist::{Loaded, NResult, Netlist, NetlistError, Origin, TensorRef, tiles};
use sim::{Error, Result, Tensor};

use crate::compile::DeviceSpec;

/// Version of the manifest format.
pub const EXPORT_VERSION: u32 = 1;

/// One physical array of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileEntry {
    /// Layer (array name).
    pub layer: String,
    /// Tile index within the layer.
    pub tile: usize,
    /// Crossbar rows: input range `[start, end)` of the layer matrix.
    pub rows: [usize; 2],
    /// Crossbar columns: output range `[start, end)`.
    pub cols: [usize; 2],
    /// Device kind (`ideal`, `pcm`, `rram`).
    pub device: String,
    /// Conductance range `[g_min, g_max]` in µS.
    pub g_range_us: [f64; 2],
    /// Number of programmable levels (0 = continuous).
    pub levels: u32,
    /// `layer` (one scale per tile) or `output` (one per column).
    pub mapping: ScaleMode,
    /// µS per weight unit: one value, or one per column.
    pub scale_us: Vec<f64>,
    /// File of the `G⁺` targets.
    pub g_pos: String,
    /// File of the `G⁻` targets.
    pub g_neg: String,
    /// Level indices of `G⁺` (levelled devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lvl_pos: Option<String>,
    /// Level indices of `G⁻` (levelled devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lvl_neg: Option<String>,
}

/// One layer of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerEntry {
    /// Array name.
    pub name: String,
    /// Weight shape (PyTorch layout).
    pub weight_shape: Vec<usize>,
    /// Whole-layer weights file.
    pub weight: String,
    /// Whole-layer bias file.
    pub bias: String,
    /// Tiles.
    pub tiles: Vec<TileEntry>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`EXPORT_VERSION`].
    pub export_version: u32,
    /// The netlist file.
    pub netlist: String,
    /// Layers in array order.
    pub layers: Vec<LayerEntry>,
}

/// An array of an export, written as `.npy`.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyArray {
    /// Conductances (µS) or weights.
    F32(ndarray::ArrayD<f32>),
    /// Programming level indices.
    U32(ndarray::ArrayD<u32>),
}

/// A chip export in memory: what goes into the export directory.
#[derive(Debug, Clone)]
pub struct ChipExport {
    /// `manifest.json`.
    pub manifest: Manifest,
    /// `netlist.json` (tensors refer to the `.npy` files by name).
    pub netlist: Netlist,
    /// The `.npy` files: (file name, array), in the order they are listed.
    pub files: Vec<(String, NpyArray)>,
}

/// (kind, g_min, g_max, levels) of a cell.
fn range(cell: &CellModel) -> (&'static str, f64, f64, u32) {
    match cell {
        CellModel::Ideal(c) => ("ideal", c.g_min_us, c.g_max_us, 0),
        CellModel::Pcm(c) => ("pcm", 0.0, c.g_max_us, 0),
        CellModel::Rram(c) => ("rram", c.g_min_us(), c.g_max_us, c.levels),
    }
}

/// The export of a loaded netlist (see the module doc for the layout).
pub fn export(l: &Loaded) -> Result<ChipExport> {
    let mut out_files: Vec<(String, NpyArray)> = Vec::new();
    let mut nl = l.netlist.clone();
    let mut layers = Vec::new();
    for (i, a) in l.netlist.arrays.iter().enumerate() {
        let dev = DeviceSpec::from_json(
            &l.netlist.devices[&a.device],
            &format!("$.devices.{}", a.device),
        )
        .map_err(|e| Error::Other(e.to_string()))?;
        let (kind, g_min, g_max, levels) = range(&dev.cell);
        let w = &l.weights[i];
        let out = w.shape()[0];
        let inp: usize = w.shape()[1..].iter().product();
        let flat: Vec<f32> = w.iter().copied().collect();
        let mut entries = Vec::new();
        for t in tiles(out, inp, a.tile) {
            let (nr, nc) = (t.n_rows(), t.n_cols());
            let mut block = Vec::with_capacity(nr * nc);
            for o in t.cols.0..t.cols.1 {
                block.extend_from_slice(&flat[o * inp + t.rows.0..o * inp + t.rows.1]);
            }
            let tg = weights_to_targets(&block, nc, nr, g_min, g_max, dev.mapping.scale)?;
            let step = (levels > 1).then(|| (g_max - g_min) / (levels - 1) as f64);
            let base = format!("{}.tile{}", a.name, t.index);
            let mut files = Vec::new();
            for (side, g) in [("pos", &tg.g_pos_us), ("neg", &tg.g_neg_us)] {
                // [out, in] block -> physical [rows = in, cols = out].
                let mut phys = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[nr, nc]));
                let mut lvl = ndarray::ArrayD::<u32>::zeros(ndarray::IxDyn(&[nr, nc]));
                for c in 0..nc {
                    for r in 0..nr {
                        let mut v = g[c * nr + r];
                        if let Some(s) = step {
                            let k = ((v - g_min) / s).round().clamp(0.0, (levels - 1) as f64);
                            lvl[[r, c]] = k as u32;
                            v = g_min + k * s;
                        }
                        phys[[r, c]] = v as f32;
                    }
                }
                let gname = format!("{base}.g_{side}.npy");
                out_files.push((gname.clone(), NpyArray::F32(phys)));
                files.push(gname);
                if step.is_some() {
                    let lname = format!("{base}.lvl_{side}.npy");
                    out_files.push((lname.clone(), NpyArray::U32(lvl)));
                    files.push(lname);
                }
            }
            let lv = step.is_some();
            entries.push(TileEntry {
                layer: a.name.clone(),
                tile: t.index,
                rows: [t.rows.0, t.rows.1],
                cols: [t.cols.0, t.cols.1],
                device: kind.into(),
                g_range_us: [g_min, g_max],
                levels,
                mapping: dev.mapping.scale,
                scale_us: tg.scale_us.clone(),
                g_pos: files[0].clone(),
                g_neg: files[if lv { 2 } else { 1 }].clone(),
                lvl_pos: lv.then(|| files[1].clone()),
                lvl_neg: lv.then(|| files[3].clone()),
            });
        }
        let wname = format!("{}.weight.npy", a.name);
        let bname = format!("{}.bias.npy", a.name);
        out_files.push((wname.clone(), NpyArray::F32(w.clone())));
        out_files.push((bname.clone(), NpyArray::F32(l.biases[i].clone())));
        nl.arrays[i].weight = TensorRef::File { npy: wname.clone() };
        nl.arrays[i].bias = Some(TensorRef::File { npy: bname.clone() });
        layers.push(LayerEntry {
            name: a.name.clone(),
            weight_shape: w.shape().to_vec(),
            weight: wname,
            bias: bname,
            tiles: entries,
        });
    }
    let m = Manifest {
        export_version: EXPORT_VERSION,
        netlist: "netlist.json".into(),
        layers,
    };
    Ok(ChipExport {
        manifest: m,
        netlist: nl,
        files: out_files,
    })
}

/// Rebuild a netlist from an export: topology, converters and devices from `base` (its
/// `netlist.json`, loaded), every weight matrix **reconstructed from the tiles' conductances**
/// (`w = (G⁺ − G⁻)/scale`; `conductances(file)` reads a tile's `.npy`), the tiles checked to cover
/// each matrix exactly once. Errors name `mfile` (the manifest) and the JSON path; the result is
/// loaded with `origin` (the netlist file).
pub fn rebuild(
    m: &Manifest,
    base: &Loaded,
    mfile: &str,
    origin: Origin,
    mut conductances: impl FnMut(&str) -> std::result::Result<Tensor, String>,
) -> NResult<Loaded> {
    let ferr = |path: String, msg: String| NetlistError {
        file: mfile.to_string(),
        path,
        msg,
    };
    if m.export_version != EXPORT_VERSION {
        return Err(ferr(
            "$.export_version".into(),
            format!("unsupported version {}", m.export_version),
        ));
    }
    let mut nl = base.netlist.clone();
    if m.layers.len() != nl.arrays.len() {
        return Err(ferr(
            "$.layers".into(),
            format!(
                "{} layers for {} arrays in the netlist",
                m.layers.len(),
                nl.arrays.len()
            ),
        ));
    }
    for (i, layer) in m.layers.iter().enumerate() {
        let lp = format!("$.layers[{i}]");
        if layer.name != nl.arrays[i].name {
            return Err(ferr(
                format!("{lp}.name"),
                format!(
                    "`{}` but netlist array {i} is `{}`",
                    layer.name, nl.arrays[i].name
                ),
            ));
        }
        let shape = base.weights[i].shape().to_vec();
        if layer.weight_shape != shape {
            return Err(ferr(
                format!("{lp}.weight_shape"),
                format!(
                    "shape mismatch: {:?} vs netlist {:?}",
                    layer.weight_shape, shape
                ),
            ));
        }
        let out = shape[0];
        let inp: usize = shape[1..].iter().product();
        let mut w = vec![0.0f32; out * inp];
        let mut hit = vec![0u8; out * inp];
        for (k, t) in layer.tiles.iter().enumerate() {
            let tp = format!("{lp}.tiles[{k}]");
            let (r0, r1, c0, c1) = (t.rows[0], t.rows[1], t.cols[0], t.cols[1]);
            if r0 >= r1 || c0 >= c1 || r1 > inp || c1 > out {
                return Err(ferr(
                    format!("{tp}.rows"),
                    format!(
                        "out-of-range tile rows {:?} cols {:?} for [{out}, {inp}]",
                        t.rows, t.cols
                    ),
                ));
            }
            let (nr, nc) = (r1 - r0, c1 - c0);
            if t.scale_us.len() != 1 && t.scale_us.len() != nc
                || t.scale_us.iter().any(|s| !(*s > 0.0 && s.is_finite()))
            {
                return Err(ferr(
                    format!("{tp}.scale_us"),
                    "one positive scale, or one per column".into(),
                ));
            }
            let mut load = |f: &str, key: &str| -> NResult<Tensor> {
                let a = conductances(f).map_err(|e| ferr(format!("{tp}.{key}"), e))?;
                if a.shape() != [nr, nc] {
                    return Err(ferr(
                        format!("{tp}.{key}"),
                        format!("shape mismatch: {:?}, tile is [{nr}, {nc}]", a.shape()),
                    ));
                }
                if a.iter().any(|v| !v.is_finite()) {
                    return Err(ferr(format!("{tp}.{key}"), "non-finite conductance".into()));
                }
                Ok(a)
            };
            let gp = load(&t.g_pos, "g_pos")?;
            let gn = load(&t.g_neg, "g_neg")?;
            for c in 0..nc {
                let s = if t.scale_us.len() == 1 {
                    t.scale_us[0]
                } else {
                    t.scale_us[c]
                };
                for r in 0..nr {
                    let idx = (c0 + c) * inp + r0 + r;
                    hit[idx] += 1;
                    w[idx] = ((gp[[r, c]] as f64 - gn[[r, c]] as f64) / s) as f32;
                }
            }
        }
        if let Some(k) = hit.iter().position(|&h| h != 1) {
            return Err(ferr(
                format!("{lp}.tiles"),
                format!(
                    "weight [{}, {}] is covered by {} tiles (must be exactly 1)",
                    k / inp,
                    k % inp,
                    hit[k]
                ),
            ));
        }
        let wt = sim::tensor(&shape, w).map_err(|e| ferr(lp.clone(), e.to_string()))?;
        nl.arrays[i].weight = TensorRef::inline(&wt);
        nl.arrays[i].bias = Some(TensorRef::inline(&base.biases[i]));
    }
    nl.load(origin)
}

//! Weight ↔ conductance mapping for signed weights on differential pairs.
//!
//! A weight matrix `W` of shape `[out, in]` (PyTorch linear layout, row-major) is placed on a
//! crossbar whose **rows are driven by the inputs** and whose **columns sum the currents of one
//! output**: crossbar column `o` holds row `o` of `W`. Each weight uses two devices, `G⁺` and `G⁻`,
//! and the weight is read as the difference of their currents:
//!
//! ```text
//! s  = (g_max − g_min) / max|W|                (µS per weight unit; per layer or per output)
//! G⁺ = g_min + s · max(w, 0)                  G⁻ = g_min + s · max(−w, 0)
//! w  = (G⁺ − G⁻) / s
//! ```
//!
//! With `g_min = 0` this is aihwkit's `SinglePairConductanceConverter` (`IBM/aihwkit:
//! src/aihwkit/inference/converter/conductance.py`: the abs-max weight maps to `g_max`, positive part
//! on G⁺, negative part on G⁻). A finite on/off ratio (`g_min > 0`) adds the same offset to both
//! devices of a pair, which cancels in the difference. [`ScaleMode::Output`] uses one scale per
//! output (per crossbar column), like aihwkit's `weight_scaling_columnwise`, so that every column
//! uses the full conductance range; this reduces the relative effect of additive noise on outputs
//! whose weights are small. A per-tile scale (a layer split over several physical arrays, each with
//! its own abs-max) is obtained by programming each tile's block of `W` separately with
//! [`ScaleMode::Layer`].

use serde::{Deserialize, Serialize};
use sim::{Error, Result};

/// How the weight → conductance scale is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleMode {
    /// One scale for the whole layer (tile): `max|W|` over all weights maps to `g_max`.
    #[default]
    Layer,
    /// One scale per output (crossbar column): `max_i |W[o, i]|` maps to `g_max`.
    Output,
}

/// Target conductances of a layer and the scale that maps them back to weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// Rows of `W` (= outputs = crossbar columns).
    pub out: usize,
    /// Columns of `W` (= inputs = crossbar rows).
    pub inp: usize,
    /// `G⁺` targets in µS, same layout as `W` (`[out, in]`, row-major).
    pub g_pos_us: Vec<f64>,
    /// `G⁻` targets in µS, same layout as `W`.
    pub g_neg_us: Vec<f64>,
    /// Scale in µS per weight unit: one entry ([`ScaleMode::Layer`]) or `out` entries
    /// ([`ScaleMode::Output`]).
    pub scale_us: Vec<f64>,
}

impl Targets {
    /// The scale (µS per weight unit) that applies to output `o`.
    #[inline]
    pub fn scale_of(&self, o: usize) -> f64 {
        scale_of(&self.scale_us, o)
    }
}

/// The scale (µS per weight unit) of output `o` from a per-layer or per-output scale vector.
#[inline]
pub fn scale_of(scale_us: &[f64], o: usize) -> f64 {
    if scale_us.len() == 1 {
        scale_us[0]
    } else {
        scale_us[o]
    }
}

/// Map weights `w` (`[out, in]`, row-major) to differential-pair target conductances in
/// `[g_min_us, g_max_us]`. An all-zero layer (or output) gets the scale `g_max − g_min` per unit.
pub fn weights_to_targets(
    w: &[f32],
    out: usize,
    inp: usize,
    g_min_us: f64,
    g_max_us: f64,
    mode: ScaleMode,
) -> Result<Targets> {
    crate::check::len("mapping", "weights", w.len(), out, inp)?;
    crate::check::non_negative("mapping", "g_min_us", g_min_us)?;
    crate::check::positive("mapping", "g_max_us", g_max_us)?;
    if g_min_us >= g_max_us {
        return Err(Error::param(
            "mapping",
            format!("`g_min_us` = {g_min_us} must be below `g_max_us` = {g_max_us}"),
        ));
    }
    if let Some(i) = w.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: "mapping: weights".into(),
            detail: format!("index {i} is {}", w[i]),
        });
    }
    let span = g_max_us - g_min_us;
    let absmax = |s: &[f32]| s.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    let to_scale = |m: f64| if m > 0.0 { span / m } else { span };
    let scale_us: Vec<f64> = match mode {
        ScaleMode::Layer => vec![to_scale(absmax(w))],
        ScaleMode::Output => (0..out)
            .map(|o| to_scale(absmax(&w[o * inp..(o + 1) * inp])))
            .collect(),
    };
    let mut g_pos_us = Vec::with_capacity(w.len());
    let mut g_neg_us = Vec::with_capacity(w.len());
    for o in 0..out {
        let s = scale_of(&scale_us, o);
        for &v in &w[o * inp..(o + 1) * inp] {
            let v = v as f64;
            // min() guards against the last-ulp overshoot of s·|w| at the abs-max weight.
            g_pos_us.push((g_min_us + s * v.max(0.0)).min(g_max_us));
            g_neg_us.push((g_min_us + s * (-v).max(0.0)).min(g_max_us));
        }
    }
    Ok(Targets {
        out,
        inp,
        g_pos_us,
        g_neg_us,
        scale_us,
    })
}

/// Weights `(G⁺ − G⁻) / s` from conductance pairs (µS), layout `[out, in]`.
pub fn conductances_to_weights(
    g_pos_us: &[f32],
    g_neg_us: &[f32],
    out: usize,
    inp: usize,
    scale_us: &[f64],
) -> Result<Vec<f32>> {
    crate::check::len("mapping", "g_pos_us", g_pos_us.len(), out, inp)?;
    crate::check::len("mapping", "g_neg_us", g_neg_us.len(), out, inp)?;
    if scale_us.len() != 1 && scale_us.len() != out {
        return Err(Error::shape(
            "mapping",
            format!(
                "scale_us has {} entries, expected 1 or {out}",
                scale_us.len()
            ),
        ));
    }
    let mut w = Vec::with_capacity(out * inp);
    for o in 0..out {
        let s = scale_of(scale_us, o);
        for i in 0..inp {
            let k = o * inp + i;
            w.push(((g_pos_us[k] as f64 - g_neg_us[k] as f64) / s) as f32);
        }
    }
    Ok(w)
}

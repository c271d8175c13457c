//! Energy, latency and area of a model realized on a device preset, counted from a real run
//! (`epsim cost`).
//!
//! The laws are `devices::cost` (parameters in the preset's `[cost]` table, `--set` overrides); the
//! counts come from the realization (`ep::substrate::Realized::array_use`: vector reads per array,
//! direction and tile, bound-management re-reads included; `spike_counts`). Per inference:
//!
//! * **DAC / ADC**: every counted vector read of a tile drives its rows (forward; its columns
//!   transposed) and converts its columns (rows transposed); an array's reads are taken as spread
//!   evenly over its tiles (mean tile size).
//! * **array**: `V² · ΣG · t_int` per read with ΣG the tile's realized conductances (both cells of
//!   every pair) and **every driven row at full scale**: the per-read inputs are not accumulated, so
//!   this term is an upper bound (noise management scales each input vector to abs-max 1; the mean
//!   square input is smaller).
//! * **neurons**: one update per neuron and free-phase step (every population), plus the spikes.
//! * **pulses**: 0 for inference (the per-pulse law is printed for on-substrate training).
//! * **latency**: tiles work in parallel, each tile's vector reads one after the other, arrays in
//!   parallel within a step: the largest over arrays of (reads per tile × read latency), per image.
//! * **area**: every tile's cells, DACs and ADCs (neurons and digital periphery not modelled).
//!
//! Arrays read exactly (transparent converters, no read noise, no IR drop — e.g. `ideal`) are read
//! digitally and not counted: their DAC, array and ADC terms are 0 (their area is counted).

use anyhow::{Result, ensure};
use devices::{CostParams, Preset};
use ep::substrate::ArrayUse;

/// The parts of the energy, in the order printed.
pub const PARTS: [&str; 5] = ["DAC", "array", "ADC", "neurons", "pulses"];

/// The cost of a run (see the module doc); energies in J per inference.
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    /// Images evaluated.
    pub images: u64,
    /// Energy per inference by part ([`PARTS`]), J.
    pub energy_j: [f64; 5],
    /// Latency per inference, s.
    pub latency_s: f64,
    /// Area: (cells, DACs, ADCs), mm².
    pub area_mm2: (f64, f64, f64),
    /// Vector reads counted (re-reads included) and re-reads.
    pub reads: (u64, u64),
    /// Arrays read exactly (not counted).
    pub exact_arrays: Vec<String>,
    /// Energy of one update pulse, J.
    pub pulse_j: f64,
}

impl Cost {
    /// Total energy per inference, J.
    pub fn total_j(&self) -> f64 {
        self.energy_j.iter().sum()
    }

    /// Total area, mm².
    pub fn total_mm2(&self) -> f64 {
        self.area_mm2.0 + self.area_mm2.1 + self.area_mm2.2
    }
}

/// Mean (rows, cols, ΣG µS) over the tiles of an array.
fn mean_tile(u: &ArrayUse) -> (f64, f64, f64) {
    let n = u.tiles.len().max(1) as f64;
    let s = u.tiles.iter().fold((0.0, 0.0, 0.0), |a, t| {
        (a.0 + t.0 as f64, a.1 + t.1 as f64, a.2 + t.2)
    });
    (s.0 / n, s.1 / n, s.2 / n)
}

/// The cost of `images` inferences that made the reads in `uses`, `neuron_updates` neuron updates,
/// `spikes` spikes and `pulses` update pulses, with the laws and converters of `preset`.
pub fn cost_of(
    preset: &Preset,
    uses: &[ArrayUse],
    images: u64,
    neuron_updates: u64,
    spikes: u64,
    pulses: u64,
) -> Result<Cost> {
    ensure!(images > 0, "no images were evaluated");
    let p: &CostParams = &preset.cost;
    let (dac, adc) = (&preset.dac, &preset.adc);
    let r_wire = preset.ir_drop.r_wire_ohm;
    let mut e = [0.0f64; 5];
    let mut latency = 0.0f64;
    let mut area = (0.0, 0.0, 0.0);
    let mut reads = (0u64, 0u64);
    let mut exact = Vec::new();
    for u in uses {
        for &(r, c, _) in &u.tiles {
            let (a0, a1, a2) = p.tile_area(dac, adc, r, c);
            area = (area.0 + a0, area.1 + a1, area.2 + a2);
        }
        if !u.crossbar {
            exact.push(u.name.clone());
            continue;
        }
        let (rows, cols, g) = mean_tile(u);
        let (fr, br) = (u.forward_reads as f64, u.transposed_reads as f64);
        reads.0 += u.forward_reads + u.transposed_reads;
        reads.1 += u.forward_rereads + u.transposed_rereads;
        // Forward: rows driven, columns converted; transposed: the other way round.
        e[0] += fr * p.dac_energy(dac, rows.round() as usize)
            + br * p.dac_energy(dac, cols.round() as usize);
        e[1] += (fr + br) * p.array_energy_mean(g, 1.0);
        e[2] += fr * p.adc_energy(adc, cols.round() as usize)
            + br * p.adc_energy(adc, rows.round() as usize);
        let (ri, ci) = (rows.round() as usize, cols.round() as usize);
        let per_tile = u.tiles.len().max(1) as f64;
        let t = (fr * p.read_latency(dac, adc, ri, ci, r_wire)
            + br * p.read_latency(dac, adc, ci, ri, r_wire))
            / per_tile;
        latency = latency.max(t);
    }
    e[3] = neuron_updates as f64 * p.neuron_update_j + spikes as f64 * p.spike_j;
    let g_max = preset.cell.g_range_us().1;
    let pulse_j = p.pulse_energy(g_max);
    e[4] = pulses as f64 * pulse_j;
    let n = images as f64;
    Ok(Cost {
        images,
        energy_j: e.map(|v| v / n),
        latency_s: latency / n,
        area_mm2: area,
        reads,
        exact_arrays: exact,
        pulse_j,
    })
}

/// The breakdown as printed by `epsim cost`.
pub fn render(c: &Cost, steps: usize) -> String {
    let total = c.total_j();
    let mut s = String::new();
    s += &format!("energy per inference ({} images, T = {steps}):\n", c.images);
    for (name, v) in PARTS.iter().zip(c.energy_j) {
        let share = if total > 0.0 { 100.0 * v / total } else { 0.0 };
        s += &format!("  {name:<8} {v:>12.6e} J  {share:>5.1} %\n");
    }
    s += &format!("  {:<8} {total:>12.6e} J\n", "total");
    s +=
        "  (array: every driven row at full read voltage, an upper bound; pulses: 0 in inference, ";
    s += &format!("{:.3e} J per pulse)\n", c.pulse_j);
    s += &format!(
        "latency per inference: {:.6e} s ({:.6e} s per free-phase step)\n",
        c.latency_s,
        c.latency_s / steps.max(1) as f64
    );
    s += &format!(
        "area: cells {:.6e} mm2, DACs {:.6e} mm2, ADCs {:.6e} mm2, total {:.6e} mm2\n",
        c.area_mm2.0,
        c.area_mm2.1,
        c.area_mm2.2,
        c.total_mm2()
    );
    s += &format!(
        "vector reads: {} ({} bound-management re-reads)\n",
        c.reads.0, c.reads.1
    );
    if !c.exact_arrays.is_empty() {
        s += &format!(
            "read exactly (digital, not counted): {}\n",
            c.exact_arrays.join(", ")
        );
    }
    s
}

/// A cost as the fields of a JSON record: `energy_j` (total per inference), `energy_parts_j`
/// (per part of [`PARTS`]), `latency_s` and `vector_reads` (counted reads per inference,
/// re-reads included).
pub fn record_fields(c: &Cost) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("energy_j".into(), c.total_j().into());
    let parts: serde_json::Map<String, serde_json::Value> = PARTS
        .iter()
        .zip(c.energy_j)
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    m.insert("energy_parts_j".into(), parts.into());
    m.insert("latency_s".into(), c.latency_s.into());
    m.insert(
        "vector_reads".into(),
        (c.reads.0 as f64 / c.images as f64).into(),
    );
    m
}

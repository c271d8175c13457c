//! Energy, latency and area of a model realized on a device preset, counted from a real run
//! (`epsim cost`).
//!
//! The laws are `devices::cost` (parameters in the preset's `[cost]` table, `--set` overrides); the
//! counts come from the realization ([`Counts`]: `ep::substrate::Realized::array_use`, vector reads
//! per array, direction and tile, bound-management re-reads and Σ x² of the inputs included;
//! `spike_counts`; the free phases and their steps; update pulses). A cost is per unit of work —
//! an inference, or a training step — over the counts of a window of a run ([`Counts::since`]):
//!
//! * **DAC / ADC**: every counted vector read of a tile drives its rows (forward; its columns
//!   transposed) and converts its columns (rows transposed); an array's reads are taken as spread
//!   evenly over its tiles (mean tile size).
//! * **array**: `Σ_i (x_i·V)² · G_i · t_int` per read over the driven rows, with `x_i` the DAC's
//!   actual output (after noise management; re-reads with their reduced inputs), accumulated by
//!   the reads as Σ x² per array and direction (`ArrayUse::forward_sumsq`), and `G_i` a row's
//!   share of the tile's realized conductances (both cells of every pair): the mean tile's ΣG /
//!   rows forward, ΣG / cols transposed.
//! * **neurons**: one update per neuron and free-phase step (every population), plus the spikes.
//! * **pulses**: the update pulses counted by on-substrate training (0 for inference).
//! * **latency** (the free phase in physical time): tiles work in parallel, each tile's vector
//!   reads one after the other, arrays in parallel within a step: the reads take the largest over
//!   arrays of (reads per tile × read latency); a step also lasts at least the neurons' settling
//!   time `neuron_step_s`, so latency = max(reads' time, steps × neuron_step_s) per unit.
//! * **area**: every tile's cells, DACs and ADCs (neurons and digital periphery not modelled).
//!
//! Arrays read exactly (transparent converters, no read noise, no IR drop — e.g. `ideal`) are read
//! digitally and not counted: their DAC, array and ADC terms are 0 (their area is counted).

use anyhow::{Result, ensure};
use devices::{CostParams, Preset};
use ep::substrate::ArrayUse;

/// The parts of the energy, in the order printed.
pub const PARTS: [&str; 5] = ["DAC", "array", "ADC", "neurons", "pulses"];

/// What a realization counted over a window of a run (see the module doc).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Per array: its tiles and reads.
    pub uses: Vec<ArrayUse>,
    /// Free-phase steps run, summed over the free phases (a batch of n images over T steps: n·T).
    pub steps: u64,
    /// Neuron updates (neurons × steps).
    pub neuron_updates: u64,
    /// Spikes fired.
    pub spikes: u64,
    /// Device update pulses.
    pub pulses: u64,
}

impl Counts {
    /// The counts of reads `uses`, `steps` free-phase steps of a network of `neurons` neurons (one
    /// update each per step), `spikes` spikes and `pulses` update pulses.
    pub fn new(uses: Vec<ArrayUse>, steps: u64, neurons: u64, spikes: u64, pulses: u64) -> Self {
        Counts {
            uses,
            steps,
            neuron_updates: steps * neurons,
            spikes,
            pulses,
        }
    }

    /// The counts made after `earlier` (a snapshot of the same realization): every counter's
    /// difference, the tiles as they are now.
    pub fn since(&self, earlier: &Counts) -> Counts {
        let uses = self
            .uses
            .iter()
            .map(|u| match earlier.uses.iter().find(|e| e.name == u.name) {
                Some(e) => u.since(e),
                None => u.clone(),
            })
            .collect();
        Counts {
            uses,
            steps: self.steps - earlier.steps,
            neuron_updates: self.neuron_updates - earlier.neuron_updates,
            spikes: self.spikes - earlier.spikes,
            pulses: self.pulses - earlier.pulses,
        }
    }
}

/// The cost of a run (see the module doc); energies in J per unit (inference or training step).
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    /// Units of work the counts are divided by (images evaluated, or training steps).
    pub images: u64,
    /// Energy per unit by part ([`PARTS`]), J.
    pub energy_j: [f64; 5],
    /// Latency per unit (the free phases in physical time), s.
    pub latency_s: f64,
    /// Of it, the reads' time (without the neurons' settling floor), s.
    pub read_latency_s: f64,
    /// Free-phase steps per unit.
    pub steps: f64,
    /// The neurons' settling time per step, s.
    pub neuron_step_s: f64,
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

/// The indices of the points (energy, accuracy) that no other point dominates (no more energy
/// and at least the accuracy, one of them strictly better), in index order: the Pareto front of
/// a co-design choice.
pub fn pareto_front(pts: &[(f64, f64)]) -> Vec<usize> {
    (0..pts.len())
        .filter(|&i| {
            let (e, a) = pts[i];
            !pts.iter()
                .any(|&(f, b)| f <= e && b >= a && (f < e || b > a))
        })
        .collect()
}

/// The neurons of a netlist (every population's size): one update each per free-phase step.
pub fn neuron_count(nl: &sim::netlist::Netlist) -> u64 {
    nl.populations
        .iter()
        .map(|p| p.shape.iter().product::<usize>() as u64)
        .sum()
}

/// The cost per unit of `images` units of work (inferences, or training steps) that made the
/// counts `k`, with the laws and converters of `preset`.
pub fn cost_of(preset: &Preset, k: &Counts, images: u64) -> Result<Cost> {
    ensure!(images > 0, "no images were evaluated");
    let uses = &k.uses;
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
        // The mean square drive of a row (column) over the reads, from the accumulated Σ x².
        if fr > 0.0 {
            e[1] += fr * p.array_energy_mean(g, u.forward_sumsq / (fr * rows.max(1.0)));
        }
        if br > 0.0 {
            e[1] += br * p.array_energy_mean(g, u.transposed_sumsq / (br * cols.max(1.0)));
        }
        e[2] += fr * p.adc_energy(adc, cols.round() as usize)
            + br * p.adc_energy(adc, rows.round() as usize);
        let (ri, ci) = (rows.round() as usize, cols.round() as usize);
        let per_tile = u.tiles.len().max(1) as f64;
        let t = (fr * p.read_latency(dac, adc, ri, ci, r_wire)
            + br * p.read_latency(dac, adc, ci, ri, r_wire))
            / per_tile;
        latency = latency.max(t);
    }
    e[3] = k.neuron_updates as f64 * p.neuron_update_j + k.spikes as f64 * p.spike_j;
    let g_max = preset.cell.g_range_us().1;
    let pulse_j = p.pulse_energy(g_max);
    e[4] = k.pulses as f64 * pulse_j;
    let n = images as f64;
    let steps = k.steps as f64 / n;
    Ok(Cost {
        images,
        energy_j: e.map(|v| v / n),
        latency_s: (latency / n).max(steps * p.neuron_step_s),
        read_latency_s: latency / n,
        steps,
        neuron_step_s: p.neuron_step_s,
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
    s += &format!(
        "  (array: from the DAC outputs of every read; pulses: 0 in inference, {:.3e} J per \
         pulse)\n",
        c.pulse_j
    );
    s += &format!(
        "latency per inference (the free phase in physical time): {:.6e} s = {} steps × max(reads \
         {:.6e} s, neuron settling {:.3e} s) per step\n",
        c.latency_s,
        steps,
        c.read_latency_s / steps.max(1) as f64,
        c.neuron_step_s
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

/// A cost as the fields of a JSON record, each key with `prefix`: `energy_j` (total per unit),
/// `energy_parts_j` (per part of [`PARTS`]), `latency_s`, `vector_reads` (counted reads per
/// unit, re-reads included) and `free_phase_steps` (per unit).
pub fn record_fields(c: &Cost, prefix: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| m.insert(format!("{prefix}{k}"), v);
    put("energy_j", c.total_j().into());
    let parts: serde_json::Map<String, serde_json::Value> = PARTS
        .iter()
        .zip(c.energy_j)
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    put("energy_parts_j", parts.into());
    put("latency_s", c.latency_s.into());
    put("vector_reads", (c.reads.0 as f64 / c.images as f64).into());
    put("free_phase_steps", c.steps.into());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pareto_front_keeps_the_undominated_points() {
        // 2 is beaten by 1 (less energy, more accuracy); 4 by 0 (less energy, same accuracy).
        let pts = [(1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (4.0, 0.9), (1.5, 0.5)];
        assert_eq!(pareto_front(&pts), vec![0, 1, 3]);
        // Equal points dominate neither: both stay.
        assert_eq!(pareto_front(&[(1.0, 0.5), (1.0, 0.5)]), vec![0, 1]);
    }

    /// One tile of uniform cells read with known inputs: the array term is the closed form
    /// Σ_i (x_i·V)² · (row conductance) · t_int of `devices::cost`, from the accumulated Σ x²
    /// (not every row at full scale), and the transposed reads use the column's share.
    #[test]
    fn the_array_term_is_v2_g_t_of_the_actual_inputs() {
        let preset = Preset::builtin("pcm").unwrap();
        let p = &preset.cost;
        let (rows, cols, g) = (4usize, 3usize, 10.0f64);
        let x = [1.0, 0.5, 0.0, -1.0];
        let xt = [0.25, -0.5, 1.0];
        let cells = vec![g; rows * cols];
        // Two forward reads of x and one transposed read of xt, per image, for 2 images.
        let use_ = ArrayUse {
            name: "syn0".into(),
            tiles: vec![(rows, cols, g * (rows * cols) as f64)],
            crossbar: true,
            forward_reads: 4,
            forward_rereads: 0,
            transposed_reads: 2,
            transposed_rereads: 0,
            forward_sumsq: 4.0 * x.iter().map(|v| v * v).sum::<f64>(),
            transposed_sumsq: 2.0 * xt.iter().map(|v| v * v).sum::<f64>(),
        };
        let k = Counts {
            uses: vec![use_],
            ..Default::default()
        };
        let c = cost_of(&preset, &k, 2).unwrap();
        let fwd = p.array_energy(&cells, &x);
        // Transposed: the columns are driven, each over its `rows` cells.
        let bwd = p.array_energy(&vec![g; rows * cols], &xt);
        let want = 2.0 * fwd + bwd;
        assert!(
            (c.energy_j[1] - want).abs() <= 1e-12 * want,
            "{} vs {want}",
            c.energy_j[1]
        );
        // Below the full-scale bound, which every row at x = 1 would give.
        let full = 2.0 * p.array_energy(&cells, &[1.0; 4]) + p.array_energy(&cells, &[1.0; 3]);
        assert!(c.energy_j[1] < full);
    }

    /// The free phase in physical time: reads alone give the read latency; a step lasts at least
    /// the neurons' settling time, so slow neurons set the latency (steps × neuron_step_s).
    #[test]
    fn a_step_lasts_at_least_the_neurons_settling() {
        let mut preset = Preset::builtin("pcm").unwrap();
        let use_ = ArrayUse {
            name: "syn0".into(),
            tiles: vec![(16, 8, 100.0)],
            crossbar: true,
            forward_reads: 10,
            forward_rereads: 0,
            transposed_reads: 0,
            transposed_rereads: 0,
            forward_sumsq: 10.0,
            transposed_sumsq: 0.0,
        };
        let k = Counts {
            uses: vec![use_],
            steps: 10,
            ..Default::default()
        };
        let c = cost_of(&preset, &k, 1).unwrap();
        let p = &preset.cost;
        let read =
            10.0 * p.read_latency(&preset.dac, &preset.adc, 16, 8, preset.ir_drop.r_wire_ohm);
        assert!((c.read_latency_s - read).abs() <= 1e-15, "{c:?}");
        assert_eq!(c.latency_s, read.max(10.0 * p.neuron_step_s));
        assert_eq!(c.steps, 10.0);
        preset.cost.neuron_step_s = 1e-3;
        let slow = cost_of(&preset, &k, 1).unwrap();
        assert_eq!(slow.latency_s, 10.0 * 1e-3);
        assert_eq!(slow.read_latency_s, c.read_latency_s);
    }
}

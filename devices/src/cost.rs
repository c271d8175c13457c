//! Cost laws: energy, latency and area of the parts of a realized network.
//!
//! [`CostParams`] is the `[cost]` table of a [`Preset`](crate::Preset) (every key settable with
//! `--set`, e.g. `--set adc_fom_j=5e-15`); the converters' resolutions come from the preset's own
//! [`Dac`] and [`Adc`] (one place for the bits). All laws are per **vector read of one tile**: one
//! input vector driven into the tile's `rows` inputs, its `cols` outputs sensed.
//!
//! | part | law | unit |
//! | --- | --- | --- |
//! | DAC | `rows · bits_dac · dac_bit_energy_j` (bit-serial drive, one 1-bit conversion per input bit) | J |
//! | array | `Σ_cells V_i² G_ij t_int` over the driven cells (both cells of each pair), V_i = x_i · `v_read_v` | J |
//! | ADC | `cols · adc_fom_j · 2^bits_adc` (Walden figure of merit with the nominal bits) | J |
//! | neuron | `neuron_update_j` per neuron and step; `spike_j` per spike | J |
//! | free-phase step | `max(reads of the step, neuron_step_s)`: a step ends when its reads are converted and the neurons have settled to their new values | s |
//! | pulse | `v_write_v² · g_max · t_pulse_s` per update pulse | J |
//! | latency | `bits_dac · dac_bit_time_s + max(t_int_s, settle) + ⌈cols/cols_per_adc⌉ / adc_rate_hz` | s |
//! | area | `2 · rows · cols · cell_area_f2 · feature_m²` + `rows` DACs + `⌈cols/cols_per_adc⌉` ADCs | mm² |
//!
//! `settle` is the array's RC settling to half an ADC step: the Elmore delay of a distributed line
//! of `n = max(rows, cols)` cells, `τ = 0.38 · (n·r_wire)·(n·c_wire_cell_f)` (r_wire from the
//! preset's `ir_drop.r_wire_ohm`), times `ln 2^(bits_adc+1)`. Converters with `bits = 0`
//! (transparent) cost nothing.
//!
//! ## Defaults and their sources
//!
//! * `v_read_v = 0.5`, `t_int_s = 10 ns`: NeuroSim's read voltage and read pulse width
//!   (`neurosim/DNN_NeuroSim_V1.4:Inference_pytorch/NeuroSIM/Param.cpp`, `readVoltage`,
//!   `readPulseWidth`).
//! * `cell_area_f2 = 4`, `feature_m = 22 nm`: NeuroSim's crossbar cell (2F × 2F,
//!   `heightInFeatureSizeCrossbar`, `widthInFeatureSizeCrossbar`) at its default node (`tech = 5`:
//!   22 nm). `cols_per_adc = 8`: NeuroSim's `numColMuxed` (8 columns share one ADC).
//! * `adc_fom_j = 10.1 fJ/step`, `adc_rate_hz = 1.2 GHz`: Kull et al., "A 3.1 mW 8b 1.2 GS/s
//!   single-channel asynchronous SAR ADC with alternate comparators for enhanced speed in 32 nm
//!   digital SOI CMOS", IEEE JSSC 48(12), 2013 (the ADC ISAAC builds on): 3.1 mW / 1.2 GS/s =
//!   2.58 pJ per 8-bit conversion = 10.1 fJ · 2⁸. The Walden law `E = FoM · 2^bits` is the one
//!   B. Murmann's "ADC Performance Survey 1997–2024" (Stanford) tabulates (with ENOB; here the
//!   nominal bits).
//! * `adc_area_mm2 = 0.0012`, `dac_area_mm2 = 1.66e-7`, `dac_bit_energy_j = 0.39 pJ`,
//!   `dac_bit_time_s = 100 ns`: ISAAC (Shafiee et al., ISCA 2016, Table I: 8 ADCs 0.0096 mm²;
//!   8 × 128 1-bit DACs 4 mW and 0.00017 mm² at a 100 ns cycle → 0.39 pJ per 1-bit conversion).
//!   These were transcribed from the paper's table as recalled, not re-checked here.
//! * `neuron_update_j = 52 pJ`, `spike_j = 1.7 pJ`: Loihi (Davies et al., IEEE Micro 38(1), 2018,
//!   Table 1: energy per neuron update, within-tile spike energy), a digital neuron: an upper
//!   bound for an analog integrator. As recalled, not re-checked here.
//! * `neuron_step_s = 20 ns`: the time an analog neuron (integrator and amplifier) takes to settle
//!   to one step's new value, a few amplifier-limited time constants. Bacvanski, You, Hopfield and
//!   Krotov, "Dense Associative Memories with Analog Circuits", arXiv:2512.15002 (2025), estimate
//!   amplifier-limited time constants that let a whole analog relaxation settle in tens to hundreds
//!   of nanoseconds; 20 ns per discrete step is taken from that range (an assumption, not a
//!   measured circuit).
//! * `v_write_v = 2`: NeuroSim's `writeVoltage`; `t_pulse_s = 10 ns`: assumed equal to the read
//!   pulse width (no cited value). `c_wire_cell_f = 0.2 fF`: a typical on-chip wire
//!   capacitance (~0.2 fF/µm) over a ~1 µm cell pitch (an assumption, not from a source).

use serde::{Deserialize, Serialize};
use sim::Result;

use crate::check;
use crate::converters::{Adc, Dac};

fn v_read() -> f64 {
    0.5
}
fn t_int() -> f64 {
    10e-9
}
fn dac_bit_energy() -> f64 {
    0.39e-12
}
fn dac_bit_time() -> f64 {
    100e-9
}
fn adc_fom() -> f64 {
    3.1e-3 / 1.2e9 / 256.0
}
fn adc_rate() -> f64 {
    1.2e9
}
fn cols_per_adc() -> u32 {
    8
}
fn c_wire_cell() -> f64 {
    0.2e-15
}
fn neuron_update() -> f64 {
    52e-12
}
fn neuron_step() -> f64 {
    20e-9
}
fn spike() -> f64 {
    1.7e-12
}
fn v_write() -> f64 {
    2.0
}
fn t_pulse() -> f64 {
    10e-9
}
fn feature() -> f64 {
    22e-9
}
fn cell_area_f2() -> f64 {
    4.0
}
fn adc_area() -> f64 {
    0.0096 / 8.0
}
fn dac_area() -> f64 {
    0.00017 / 1024.0
}

/// The cost parameters of a preset (module doc: laws, units and sources).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostParams {
    /// Full-scale read voltage (input 1.0), V.
    #[serde(default = "v_read")]
    pub v_read_v: f64,
    /// Read (integration) time of the array per vector, s.
    #[serde(default = "t_int")]
    pub t_int_s: f64,
    /// DAC energy per input bit (bit-serial 1-bit conversion), J.
    #[serde(default = "dac_bit_energy")]
    pub dac_bit_energy_j: f64,
    /// DAC time per input bit, s.
    #[serde(default = "dac_bit_time")]
    pub dac_bit_time_s: f64,
    /// ADC Walden figure of merit, J per conversion step.
    #[serde(default = "adc_fom")]
    pub adc_fom_j: f64,
    /// ADC sample rate, conversions per second.
    #[serde(default = "adc_rate")]
    pub adc_rate_hz: f64,
    /// Columns sharing one ADC.
    #[serde(default = "cols_per_adc")]
    pub cols_per_adc: u32,
    /// Wire capacitance per cell along a line, F.
    #[serde(default = "c_wire_cell")]
    pub c_wire_cell_f: f64,
    /// Energy per neuron update (per neuron and step), J.
    #[serde(default = "neuron_update")]
    pub neuron_update_j: f64,
    /// Energy per spike, J.
    #[serde(default = "spike")]
    pub spike_j: f64,
    /// Time for the neurons to settle to one free-phase step's new values, s.
    #[serde(default = "neuron_step")]
    pub neuron_step_s: f64,
    /// Write (programming pulse) voltage, V.
    #[serde(default = "v_write")]
    pub v_write_v: f64,
    /// Write pulse width, s.
    #[serde(default = "t_pulse")]
    pub t_pulse_s: f64,
    /// Feature size F, m.
    #[serde(default = "feature")]
    pub feature_m: f64,
    /// Area of one cell in F².
    #[serde(default = "cell_area_f2")]
    pub cell_area_f2: f64,
    /// Area of one ADC, mm².
    #[serde(default = "adc_area")]
    pub adc_area_mm2: f64,
    /// Area of one DAC (per input row), mm².
    #[serde(default = "dac_area")]
    pub dac_area_mm2: f64,
}

impl Default for CostParams {
    fn default() -> Self {
        CostParams {
            v_read_v: v_read(),
            t_int_s: t_int(),
            dac_bit_energy_j: dac_bit_energy(),
            dac_bit_time_s: dac_bit_time(),
            adc_fom_j: adc_fom(),
            adc_rate_hz: adc_rate(),
            cols_per_adc: cols_per_adc(),
            c_wire_cell_f: c_wire_cell(),
            neuron_update_j: neuron_update(),
            spike_j: spike(),
            neuron_step_s: neuron_step(),
            v_write_v: v_write(),
            t_pulse_s: t_pulse(),
            feature_m: feature(),
            cell_area_f2: cell_area_f2(),
            adc_area_mm2: adc_area(),
            dac_area_mm2: dac_area(),
        }
    }
}

/// The number of ADCs of a tile with `cols` columns.
fn adcs(cols: usize, per: u32) -> usize {
    cols.div_ceil(per.max(1) as usize)
}

impl CostParams {
    /// Check every parameter; the error names the field.
    pub fn validate(&self) -> Result<()> {
        for (k, v) in [
            ("v_read_v", self.v_read_v),
            ("t_int_s", self.t_int_s),
            ("dac_bit_energy_j", self.dac_bit_energy_j),
            ("dac_bit_time_s", self.dac_bit_time_s),
            ("adc_fom_j", self.adc_fom_j),
            ("c_wire_cell_f", self.c_wire_cell_f),
            ("neuron_update_j", self.neuron_update_j),
            ("spike_j", self.spike_j),
            ("neuron_step_s", self.neuron_step_s),
            ("v_write_v", self.v_write_v),
            ("t_pulse_s", self.t_pulse_s),
            ("feature_m", self.feature_m),
            ("cell_area_f2", self.cell_area_f2),
            ("adc_area_mm2", self.adc_area_mm2),
            ("dac_area_mm2", self.dac_area_mm2),
        ] {
            check::non_negative("cost", k, v)?;
        }
        check::positive("cost", "adc_rate_hz", self.adc_rate_hz)?;
        if self.cols_per_adc == 0 {
            return Err(sim::Error::param("cost", "`cols_per_adc` = 0 must be ≥ 1"));
        }
        Ok(())
    }

    /// DAC energy of one vector read of a tile with `rows` inputs, J.
    pub fn dac_energy(&self, dac: &Dac, rows: usize) -> f64 {
        rows as f64 * dac.bits as f64 * self.dac_bit_energy_j
    }

    /// ADC energy of one conversion, J: the Walden law `FoM · 2^bits` (0 without quantization).
    pub fn adc_conversion_energy(&self, adc: &Adc) -> f64 {
        if adc.bits == 0 {
            0.0
        } else {
            self.adc_fom_j * (1u64 << adc.bits) as f64
        }
    }

    /// ADC energy of one vector read of a tile with `cols` outputs, J.
    pub fn adc_energy(&self, adc: &Adc, cols: usize) -> f64 {
        cols as f64 * self.adc_conversion_energy(adc)
    }

    /// Array energy of one read, J: `Σ_ij (x_i·v_read)² G_ij t_int` over the driven cells, with
    /// `g_us` the cells' conductances in µS, row-major `[rows, cols]` (both cells of a pair are
    /// separate cells: pass them as separate columns or call twice), `x` the normalized inputs.
    pub fn array_energy(&self, g_us: &[f64], x: &[f64]) -> f64 {
        let cols = g_us.len() / x.len().max(1);
        let mut e = 0.0;
        for (i, xi) in x.iter().enumerate() {
            let v = xi * self.v_read_v;
            let g: f64 = g_us[i * cols..(i + 1) * cols].iter().sum();
            e += v * v * g * 1e-6 * self.t_int_s;
        }
        e
    }

    /// Array energy of one read from the sum of the tile's conductances `g_sum_us` (µS) and the
    /// mean square input `mean_x2` (1 = every row at full scale: an upper bound), J.
    pub fn array_energy_mean(&self, g_sum_us: f64, mean_x2: f64) -> f64 {
        self.v_read_v * self.v_read_v * mean_x2 * g_sum_us * 1e-6 * self.t_int_s
    }

    /// Energy of one update pulse on a cell of maximal conductance `g_max_us`, J.
    pub fn pulse_energy(&self, g_max_us: f64) -> f64 {
        self.v_write_v * self.v_write_v * g_max_us * 1e-6 * self.t_pulse_s
    }

    /// Latency of one vector read of a `rows × cols` tile, s (module doc), with wire resistance
    /// `r_wire_ohm` per cell.
    pub fn read_latency(
        &self,
        dac: &Dac,
        adc: &Adc,
        rows: usize,
        cols: usize,
        r_wire_ohm: f64,
    ) -> f64 {
        let n = rows.max(cols) as f64;
        let tau = 0.38 * (n * r_wire_ohm) * (n * self.c_wire_cell_f);
        let settle = tau * ((adc.bits + 1) as f64) * std::f64::consts::LN_2;
        let t_adc = if adc.bits == 0 {
            0.0
        } else {
            adcs(cols, self.cols_per_adc) as f64 / self.adc_rate_hz
        };
        dac.bits as f64 * self.dac_bit_time_s + self.t_int_s.max(settle) + t_adc
    }

    /// Area of one `rows × cols` tile of differential pairs (2 cells each), its DACs (one per row)
    /// and ADCs, mm²: (cells, DACs, ADCs).
    pub fn tile_area(&self, dac: &Dac, adc: &Adc, rows: usize, cols: usize) -> (f64, f64, f64) {
        let f2_mm2 = (self.feature_m * 1e3) * (self.feature_m * 1e3);
        let cells = 2.0 * (rows * cols) as f64 * self.cell_area_f2 * f2_mm2;
        let dacs = if dac.bits == 0 {
            0.0
        } else {
            rows as f64 * self.dac_area_mm2
        };
        let adcs_mm2 = if adc.bits == 0 {
            0.0
        } else {
            adcs(cols, self.cols_per_adc) as f64 * self.adc_area_mm2
        };
        (cells, dacs, adcs_mm2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One tile, known conductances and inputs: Σ V² G t by hand.
    #[test]
    fn array_energy_is_v2gt() {
        let p = CostParams {
            v_read_v: 0.2,
            t_int_s: 1e-8,
            ..CostParams::default()
        };
        // 2 rows × 3 cells, µS.
        let g = [10.0, 20.0, 0.0, 5.0, 5.0, 5.0];
        let x = [1.0, -0.5];
        // row 0: V = 0.2, ΣG = 30 µS; row 1: V = −0.1, ΣG = 15 µS.
        let want = 0.04 * 30e-6 * 1e-8 + 0.01 * 15e-6 * 1e-8;
        let got = p.array_energy(&g, &x);
        assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
        // Full-scale inputs: the mean law with mean x² = 1 equals the exact sum.
        let full = p.array_energy(&g, &[1.0, 1.0]);
        let mean = p.array_energy_mean(45.0, 1.0);
        assert!((full - mean).abs() <= 1e-12 * full);
    }

    /// ADC energy doubles per bit and is FoM · 2^bits; no quantization, no cost.
    #[test]
    fn adc_energy_follows_walden() {
        let p = CostParams::default();
        let e = |bits| {
            p.adc_conversion_energy(&Adc {
                bits,
                ..Adc::default()
            })
        };
        for b in 2..16 {
            assert!((e(b + 1) / e(b) - 2.0).abs() < 1e-12, "bits {b}");
        }
        // Kull et al. 2013: 3.1 mW at 1.2 GS/s, 8 bits.
        assert!((e(8) - 3.1e-3 / 1.2e9).abs() < 1e-18);
        assert_eq!(e(0), 0.0);
        assert_eq!(p.adc_energy(&Adc::default(), 64), 64.0 * e(9));
    }

    /// Latency and area add up per tile: two tiles of half the columns have the area of one tile
    /// (cells, DACs twice); DAC energy is linear in rows and bits.
    #[test]
    fn latency_and_area_add_up() {
        let p = CostParams::default();
        let (d, a) = (Dac::default(), Adc::default());
        let (c1, d1, a1) = p.tile_area(&d, &a, 128, 128);
        let (c2, d2, a2) = p.tile_area(&d, &a, 128, 64);
        assert!((c1 - 2.0 * c2).abs() < 1e-15);
        assert!((a1 - 2.0 * a2).abs() < 1e-15);
        assert_eq!(d1, d2);
        // 128 × 128 cells × 2 × 4 F² at 22 nm.
        let want = 2.0 * 128.0 * 128.0 * 4.0 * (22e-6f64).powi(2);
        assert!((c1 - want).abs() < 1e-12 * want);
        // Without wire resistance: DAC bits, then the integration, then 16 ADC conversions.
        let t = p.read_latency(&d, &a, 128, 128, 0.0);
        let want = 7.0 * 100e-9 + 10e-9 + 16.0 / 1.2e9;
        assert!((t - want).abs() < 1e-18, "{t} vs {want}");
        // A resistive line slows settling beyond t_int.
        assert!(p.read_latency(&d, &a, 512, 512, 100.0) > t);
        assert_eq!(p.dac_energy(&d, 10), 70.0 * 0.39e-12);
        assert!(p.validate().is_ok());
    }
}

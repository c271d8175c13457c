//! Realization of a netlist as a settling network of physical parts: the `netlist:<preset>`
//! substrate.
//!
//! [`Realized::new`] programs every crossbar once: each tile's block of the weight matrix is mapped
//! to differential conductance pairs, programmed (programming noise, levels, stuck-at faults), aged
//! to the inference time (drift, accumulated 1/f noise) and drift-compensated by the `devices`
//! cell model. The resulting **programmed weights** are kept as an [`EpNet`] whose ops (conv with
//! im2col, linear, pooling) give the digital periphery and the exact arrays. With IR drop (the
//! device's `ir_drop` resistances) each tile's response matrices in the two read directions are
//! computed from its conductance pairs (`devices::irdrop`; exact up to the solver tolerance, since
//! the resistive network is linear in the applied voltages) and replace its weights in the forward
//! resp. transposed reads, so every read sees the interconnect (forward ≠ transposedᵀ: such arrays
//! always take the host reads below). The programmed weights (without IR drop) remain the
//! converters' units (abs-max), the per-read noise's, the digital model's ([`effective_weights`])
//! and, in gradients, those of the adjoint of the reads and of the softmax nudge.
//!
//! Each step of the dynamics then reads every array. Arrays with converters, per-read noise or IR
//! drop are read by the backend's crossbar read (`Backend::xbar_read` of the array's
//! `sim::analog::ReadPlan` per direction: the CPU's host kernels, or the GPU's device kernels with
//! the same law and streams but other draws) as a set of **input vectors**, each read on its own
//! with the same programmed cells: one per sample for a dense array; for a conv array one per
//! sample and output position (unrolled: the forward read drives a K = C_in·kh·kw patch, the
//! transposed read the C_out vector of the pooled-back state at that position). Per input block of tiles (the tiles' row ranges
//! forward, their column ranges transposed):
//!
//! * **noise management** (aihwkit's, per vector and per tile): the vector's block slice is divided
//!   by its scale α (abs-max of the slice, see `devices::converters`) and the result multiplied by α;
//!   an all-zero slice reads exactly zero (noise-free DAC);
//! * **DAC**, then the block's partial sums on its slice only (one GEMM per block over all vectors),
//!   plus the per-read conductance noise (output-referred: a device noise σ_g on both cells of a pair
//!   gives an output noise of variance `Σ_i 2 (σ_g/s)² x_i²`, exact in distribution), normalized by
//!   the array's abs-max weight (the units of `devices::converters`);
//! * **ADC** per tile (the block's outputs in the tile's sensed range) with its noise (the read noise
//!   and the ADC noise are independent Gaussians before the ADC's curve, so each output takes one
//!   draw of their sum, σ = √(σ_read² + σ_adc²): the same law as two draws at half the cost); iterative
//!   **bound management** re-reads a saturated (vector, tile) alone with its input divided by
//!   r = 2, 4, … (every round its own DAC, read and ADC draws), keeping the first read that does not
//!   saturate (or the last one allowed) times r; [`Realized::read_counts`] counts these vector reads
//!   and re-reads;
//! * the converted partial sums times α·r are added over the blocks (in block order), times the
//!   abs-max weight. Forward: plus the digital bias, then pooling (first maximum wins). Transposed
//!   conv: each position's digitized K-vector is summed onto the input grid (col2im) only then.
//!
//! The first array's read of the input is the same at every step up to its ADC and read noise when
//! its DAC is noise-free: its patch rows, scales and pre-ADC sums are computed once per query.
//! The CPU's host kernels run in fixed chunks of rows in parallel, so results do not depend on the
//! thread count; their Gaussian draws come from `sim::Stream::fill_normal_fast` (the GPU's from
//! Philox normals of the same streams and indices). Then, per population:
//!
//! * **neurons**: `y = σ(g·(a + o) + ξ·noise_std/σ')`, with fixed per-neuron gain `g` and offset `o`;
//!   a spiking population (`kind = "spiking"`, `devices::neurons::IntegrateFire`) instead feeds the
//!   same argument z as the current `c = s·z + b` (σ(z) = clamp(s·z + b, 0, 1)) to an
//!   integrate-and-fire neuron for `window` ticks and outputs `spikes / window`; its initial
//!   potential (random phase) is draw `i` of the step's neuron stream's child `phase`.
//!   [`Realized::spike_counts`] counts the spikes.
//!
//! Every random draw comes from named streams of the realization's seed: `netlist.program`
//! (per array, per tile), `netlist.neurons` (per population) and `netlist.read` (per query, then
//! per array and direction, per block, per step), at the element's index; a query is therefore a
//! pure function of (seed, query number, input batch). Arrays whose reads are exact (transparent
//! converters, no per-read noise, no IR drop) use the digital ops directly, so `netlist:ideal` equals the
//! digital engine up to the conductance round trip of the weights.
//!
//! The realization is programming, bookkeeping and counters (this file) plus reads (module
//! `reads`): [`Realized::reads`] / [`Realized::query`] give its
//! [`SynapseReads`](crate::dynamics::SynapseReads) under one read-noise stream, and the one
//! [`Dynamics`](crate::dynamics::Dynamics) runs on them (steps, free and nudged phases, readout,
//! BPTT).
//!
//! Gradients ([`Dynamics::free_phase_bptt`](crate::dynamics::Dynamics::free_phase_bptt) on
//! [`Realized::query`]) are BPTT through the *noisy* trajectory of one query:
//! the steps are recomputed from checkpoints with the same noise (the draws are counter-based),
//! pooling switches and activation derivatives are taken at the noisy values, the converters are
//! straight-through and the additive noises constants. Spiking neurons are straight-through too:
//! the surrogate derivative of the rate is σ'(z)/θ at the noisy argument (the leak and the
//! discreteness of the count are ignored).
//!
//! Not realized yet: winner-take-all comparator offsets, the preset's nominal neuron
//! transfer curve (the activation comes from the model). On-substrate training (nudged phases
//! [`Dynamics::relax`](crate::dynamics::Dynamics::relax) on [`Realized::reads`], local updates of
//! the programmed devices) is in `crate::subtrain`.

use std::sync::atomic::{AtomicU64, Ordering};

use devices::converters::bound_management_last_reduction;
use devices::{Adc, BoundManagement, CellModel, Dac, IntegrateFire};
use sim::analog::{Io, ReadPlan, SUMSQ_UNIT};
use sim::netlist::{Converter, Loaded, NResult, NetlistError, tiles, unit_linear};
use sim::{Act, Backend, Error, Result, Stream, Tensor};

use crate::compile::{DeviceSpec, model_of};

pub mod feedforward;
mod reads;
use crate::model::EpNet;
pub use reads::{InputCache, QueryReads};

fn io_of(dac: Option<&Converter>, adc: Option<&Converter>) -> Io {
    let bm = adc.and_then(|a| a.bound_management).unwrap_or_default();
    let clips = adc.is_some_and(|a| a.bound.is_some());
    Io {
        nm: dac.and_then(|d| d.noise_management).unwrap_or_default(),
        nm_thres: dac.and_then(|d| d.nm_thres).unwrap_or(0.0),
        last_r: match (bm, adc) {
            (BoundManagement::Iterative, Some(a)) if clips => bound_management_last_reduction(
                a.max_bm_factor.unwrap_or(1000),
                a.max_bm_res.unwrap_or(0.25),
                dac.map_or(0, |d| d.bits),
            ),
            _ => 1,
        },
    }
}

/// How a synapse is read, chosen per array when the netlist is realized.
enum SynapseRead {
    /// Transparent converters, no per-read noise, no IR drop: the digital ops on the programmed
    /// weights (the exact read of [`EpNet`]).
    Exact,
    /// The crossbar read (`Backend::xbar_read`): the forward read (rows driven: input blocks = the tiles'
    /// row ranges of `weff`) and the transposed read (columns driven: input blocks = the tiles'
    /// column ranges of `weff_t`).
    Crossbar {
        fwd: Box<ReadPlan>,
        bwd: Box<ReadPlan>,
    },
}

struct ArrayRt {
    name: String,
    wmax: f32,
    read: SynapseRead,
    /// Per tile: (rows, cols, Σ of both cells' realized conductances in µS).
    tiles: Vec<(usize, usize, f64)>,
    /// Vector reads and re-reads through converters: [forward, forward re-reads, transposed,
    /// transposed re-reads] (their sums are [`Realized::read_counts`]), then Σ x² of the driven
    /// inputs over the forward and the transposed reads (fixed point, [`SUMSQ_UNIT`]).
    counts: [AtomicU64; 6],
}

/// How one array of a realization was used (see [`Realized::array_use`]): its tiles and its vector
/// reads through converters per direction, for the cost model (`devices::cost`).
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayUse {
    /// Array name.
    pub name: String,
    /// Per tile: (rows, cols, Σ of the realized conductances of both cells of every pair, µS).
    pub tiles: Vec<(usize, usize, f64)>,
    /// Whether the array is read through the crossbar path (converters, noise or IR drop); exact
    /// arrays are read digitally and their reads are not counted.
    pub crossbar: bool,
    /// Forward vector reads (one input vector on one tile), re-reads included.
    pub forward_reads: u64,
    /// Of those, bound-management re-reads.
    pub forward_rereads: u64,
    /// Transposed vector reads, re-reads included.
    pub transposed_reads: u64,
    /// Of those, bound-management re-reads.
    pub transposed_rereads: u64,
    /// Σ over the forward reads of Σ x² of the driven inputs (DAC outputs, 1 = the full-scale
    /// read voltage), re-reads with their own inputs.
    pub forward_sumsq: f64,
    /// The same over the transposed reads.
    pub transposed_sumsq: f64,
}

impl ArrayUse {
    /// The reads made after `earlier` (a snapshot of the same array): every counter's difference,
    /// the tiles as they are now.
    pub fn since(&self, earlier: &ArrayUse) -> ArrayUse {
        ArrayUse {
            forward_reads: self.forward_reads - earlier.forward_reads,
            forward_rereads: self.forward_rereads - earlier.forward_rereads,
            transposed_reads: self.transposed_reads - earlier.transposed_reads,
            transposed_rereads: self.transposed_rereads - earlier.transposed_rereads,
            forward_sumsq: self.forward_sumsq - earlier.forward_sumsq,
            transposed_sumsq: self.transposed_sumsq - earlier.transposed_sumsq,
            ..self.clone()
        }
    }
}

struct NeuronRt {
    act: Act,
    gain: Option<Vec<f32>>,
    offset: Option<Vec<f32>>,
    noise_std: f32,
    /// A spiking population: its neuron and σ's linear map `(s, b)` (z ↦ current `s·z + b`).
    spiking: Option<(IntegrateFire, (f64, f64))>,
    /// Spikes fired so far (see [`Realized::spike_counts`]).
    spikes: AtomicU64,
}

impl NeuronRt {
    fn ideal(&self) -> bool {
        self.gain.is_none()
            && self.offset.is_none()
            && self.noise_std == 0.0
            && self.spiking.is_none()
    }
}

/// The spiking part of a population's neuron model, with its activation's linear map (checked by
/// the netlist validation; a realization of an unvalidated netlist still gets an error at `path`).
fn spiking_of(
    m: &sim::netlist::NeuronModel,
    path: &str,
) -> NResult<Option<(IntegrateFire, (f64, f64))>> {
    let Some(sp) = IntegrateFire::from_netlist(m) else {
        return Ok(None);
    };
    sp.validate().map_err(at(path.to_string()))?;
    let lin = unit_linear(m.act).ok_or_else(|| {
        NetlistError::at(
            format!("{path}.act"),
            format!("a spiking neuron cannot realize the activation {:?}", m.act),
        )
    })?;
    Ok(Some((sp, lin)))
}

/// A netlist realized on its devices (see the module doc).
pub struct Realized<B: Backend> {
    /// The network with the programmed effective weights (digital biases).
    pub net: EpNet<B>,
    arrays: Vec<ArrayRt>,
    neurons: Vec<NeuronRt>,
    seed: u64,
    stochastic: bool,
    /// Vector reads through converters (see [`Realized::read_counts`]).
    reads: AtomicU64,
    /// Of those, the re-reads of the bound management.
    rereads: AtomicU64,
}

/// The transfer curve of a DAC part, `None` when it is transparent (its management is in [`Io`]).
fn dac_of(c: Option<&Converter>) -> Option<Dac> {
    let c = c?;
    let d = Dac {
        bits: c.bits,
        bound: c.bound.unwrap_or(f64::INFINITY),
        noise_std: c.noise_std,
        ..Dac::ideal()
    };
    (!d.is_transparent()).then_some(d)
}

/// The transfer curve of an ADC part, `None` when it is transparent (its management is in [`Io`]).
fn adc_of(c: Option<&Converter>) -> Option<Adc> {
    let c = c?;
    let d = Adc {
        bits: c.bits,
        bound: c.bound.unwrap_or(f64::INFINITY),
        noise_std: c.noise_std,
        ..Adc::ideal()
    };
    (!d.is_transparent()).then_some(d)
}

/// σ of the per-read conductance noise of one device, in µS.
fn per_read_sigma_us(cell: &CellModel) -> f64 {
    match cell {
        CellModel::Ideal(_) => 0.0,
        CellModel::Pcm(c) => c.per_read_noise_gmax_frac * c.g_max_us,
        CellModel::Rram(c) => c.read_noise_scale * c.per_read_noise_gmax_frac * c.g_max_us,
    }
}

fn at(path: String) -> impl Fn(Error) -> NetlistError {
    move |e| NetlistError::at(path.clone(), e.to_string())
}

impl<B: Backend> Realized<B> {
    /// Program a validated netlist's arrays and instantiate its neurons from `seed` (see the module
    /// doc). Errors name the JSON path of the offending part.
    pub fn new(be: &B, l: &Loaded, seed: u64) -> NResult<Self> {
        Self::programmed_with(be, l, seed, Stream::new(seed, "netlist.program"))
    }

    /// As [`Realized::new`], but the programming (and aging) draws come from `program` instead of
    /// `netlist.program` of `seed`; neuron spreads and read noise still come from `seed`. Used by
    /// on-substrate training (`crate::subtrain`) to re-program the arrays after an update with
    /// fresh programming noise while the rest of the realization stays the same.
    pub fn programmed_with(be: &B, l: &Loaded, seed: u64, program: Stream) -> NResult<Self> {
        Self::build(be, l, seed, program).map_err(|mut e| {
            e.file = l.origin.file.clone();
            e
        })
    }

    fn build(be: &B, l: &Loaded, seed: u64, program: Stream) -> NResult<Self> {
        let nl = &l.netlist;
        let (spec, ws, bs) = model_of(l)?;
        let mut eff = Vec::with_capacity(ws.len());
        let mut arrays = Vec::with_capacity(ws.len());
        let mut stochastic = false;
        for (i, a) in nl.arrays.iter().enumerate() {
            let p = format!("$.arrays[{i}]");
            let dpath = format!("$.devices.{}", a.device);
            let dev = DeviceSpec::from_json(&nl.devices[&a.device], &dpath)?;
            let w = &ws[i];
            let shape = w.shape().to_vec();
            let out = shape[0];
            let inp: usize = shape[1..].iter().product();
            let flatw: Vec<f32> = w.iter().copied().collect();
            // The programmed weights (the digital model's, `effective_weights`), and the effective
            // weights seen by the forward read (rows driven, columns sensed) and by the transposed
            // read (columns driven, rows sensed): with IR drop the tile's response matrices in the
            // two directions (`devices::irdrop`), without it all three are the programmed weights.
            let ir = &dev.ir_drop;
            let mut wprog = vec![0.0f32; out * inp];
            let mut weff = vec![0.0f32; out * inp];
            let mut weff_t = vec![0.0f32; out * inp];
            let mut var = vec![0.0f32; out * inp];
            let sig_g = per_read_sigma_us(&dev.cell);
            let ts = tiles(out, inp, a.tile);
            let st_arr = program.child(&a.name);
            let mut tile_use = Vec::with_capacity(ts.len());
            for t in &ts {
                let (nr, nc) = (t.n_rows(), t.n_cols());
                let mut block = Vec::with_capacity(nr * nc);
                for o in t.cols.0..t.cols.1 {
                    block.extend_from_slice(&flatw[o * inp + t.rows.0..o * inp + t.rows.1]);
                }
                let st = st_arr.sub(t.index as u64);
                let tp = format!("{p} (tile {})", t.index);
                let arr = dev
                    .cell
                    .program(&block, nc, nr, dev.mapping.scale, st)
                    .map_err(at(tp.clone()))?;
                let now = dev
                    .cell
                    .age(&arr, dev.inference.t_inference_s, st)
                    .map_err(at(tp.clone()))?;
                let f = dev
                    .cell
                    .compensation(&arr, &now, dev.inference.drift_compensation)
                    .map_err(at(tp.clone()))?;
                let wb = arr
                    .weights(&now.g_pos_us, &now.g_neg_us, &f)
                    .map_err(at(tp.clone()))?;
                let g_sum: f64 = now
                    .g_pos_us
                    .iter()
                    .chain(&now.g_neg_us)
                    .map(|&g| g as f64)
                    .sum();
                tile_use.push((nr, nc, g_sum));
                let (wf, wt) = if ir.is_ideal() {
                    (None, None)
                } else {
                    use devices::irdrop::Direction::{Forward, Transposed};
                    let read = |d, name: &str| {
                        ir.pair_weights(&arr, &now.g_pos_us, &now.g_neg_us, &f, d)
                            .map_err(|e| {
                                NetlistError::at(
                                    format!("{tp} ({name} read of array `{}`)", a.name),
                                    e.to_string(),
                                )
                            })
                    };
                    (
                        Some(read(Forward, "forward")?),
                        Some(read(Transposed, "transposed")?),
                    )
                };
                let wf = wf.as_deref().unwrap_or(&wb);
                let wt = wt.as_deref().unwrap_or(&wb);
                for (bo, o) in (t.cols.0..t.cols.1).enumerate() {
                    let fo = devices::mapping::scale_of(&f, bo);
                    let sw = sig_g / arr.targets.scale_of(bo) * fo;
                    for (bi, ii) in (t.rows.0..t.rows.1).enumerate() {
                        wprog[o * inp + ii] = wb[bo * nr + bi];
                        weff[o * inp + ii] = wf[bo * nr + bi];
                        weff_t[o * inp + ii] = wt[bo * nr + bi];
                        var[o * inp + ii] = (2.0 * sw * sw) as f32;
                    }
                }
            }
            for w in [&wprog, &weff, &weff_t] {
                if let Some(k) = w.iter().position(|v| !v.is_finite()) {
                    return Err(NetlistError::at(
                        p,
                        format!(
                            "programmed weight {k} is not finite (device model produced {})",
                            w[k]
                        ),
                    ));
                }
            }
            // The converters' units: the abs-max of the programmed weights (IR drop attenuates
            // the reads within the same ADC range).
            let wmax = wprog.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let wmax = if wmax > 0.0 { wmax } else { 1.0 };
            let conv = |name: &Option<String>| name.as_deref().and_then(|n| nl.converter(n));
            let dac_f = dac_of(conv(&a.forward.dac));
            let adc_f = adc_of(conv(&a.forward.adc));
            let dac_b = dac_of(conv(&a.transposed.dac));
            let adc_b = adc_of(conv(&a.transposed.adc));
            let io_f = io_of(conv(&a.forward.dac), conv(&a.forward.adc));
            let io_b = io_of(conv(&a.transposed.dac), conv(&a.transposed.adc));
            let noisy = sig_g > 0.0;
            // With IR drop the reads differ from the digital ops on the programmed weights (and
            // forward ≠ transposedᵀ): the block-read path.
            let exact = dac_f.is_none()
                && adc_f.is_none()
                && dac_b.is_none()
                && adc_b.is_none()
                && !noisy
                && ir.is_ideal();
            stochastic |= !exact
                && ((noisy)
                    || [
                        &dac_f.as_ref().map(|d| d.noise_std),
                        &dac_b.as_ref().map(|d| d.noise_std),
                    ]
                    .iter()
                    .any(|s| s.is_some_and(|s| s > 0.0))
                    || [
                        &adc_f.as_ref().map(|d| d.noise_std),
                        &adc_b.as_ref().map(|d| d.noise_std),
                    ]
                    .iter()
                    .any(|s| s.is_some_and(|s| s > 0.0)));
            let mut read = SynapseRead::Exact;
            if !exact {
                let mut rows: Vec<(usize, usize)> = ts.iter().map(|t| t.rows).collect();
                rows.dedup();
                let mut cols: Vec<(usize, usize)> = ts.iter().map(|t| t.cols).collect();
                cols.sort();
                cols.dedup();
                let w2 = wmax * wmax;
                let s2f = |o: usize, k: usize| var[o * inp + k] / w2;
                let s2b = |k: usize, o: usize| var[o * inp + k] / w2;
                let fwd = ReadPlan::new(
                    inp,
                    out,
                    &rows,
                    &cols,
                    |o, k| weff[o * inp + k] / wmax,
                    noisy.then_some(&s2f as &dyn Fn(usize, usize) -> f32),
                    dac_f.as_ref().map(Dac::engine),
                    adc_f.as_ref().map(Adc::engine),
                    io_f,
                )
                .map_err(at(p.clone()))?;
                let bwd = ReadPlan::new(
                    out,
                    inp,
                    &cols,
                    &rows,
                    |k, o| weff_t[o * inp + k] / wmax,
                    noisy.then_some(&s2b as &dyn Fn(usize, usize) -> f32),
                    dac_b.as_ref().map(Dac::engine),
                    adc_b.as_ref().map(Adc::engine),
                    io_b,
                )
                .map_err(at(p.clone()))?;
                read = SynapseRead::Crossbar {
                    fwd: Box::new(fwd),
                    bwd: Box::new(bwd),
                };
            }
            eff.push(sim::tensor(&shape, wprog).map_err(at(p.clone()))?);
            arrays.push(ArrayRt {
                name: a.name.clone(),
                wmax,
                read,
                tiles: tile_use,
                counts: Default::default(),
            });
        }
        let neuron_stream = Stream::new(seed, "netlist.neurons");
        let mut neurons = Vec::new();
        for (k, p) in nl.populations.iter().enumerate() {
            let n: usize = p.shape.iter().product();
            let s = neuron_stream.child(&p.name);
            let m = &p.neuron;
            let draw = |name: &str, sd: f64, base: f64| -> Option<Vec<f32>> {
                (sd > 0.0).then(|| {
                    let st = s.child(name);
                    (0..n as u64)
                        .map(|i| (base + sd * st.normal(i) as f64) as f32)
                        .collect()
                })
            };
            let spiking = spiking_of(m, &format!("$.populations[{k}].neuron"))?;
            stochastic |= m.noise_std > 0.0
                || spiking.is_some_and(|(sp, _)| sp.phase == devices::neurons::SpikePhase::Random);
            neurons.push(NeuronRt {
                act: m.act,
                gain: draw("gain", m.gain_dtod, 1.0),
                offset: draw("offset", m.offset_dtod, 0.0),
                noise_std: m.noise_std as f32,
                spiking,
                spikes: AtomicU64::new(0),
            });
        }
        let net = EpNet::from_host(be, spec, &eff, &bs).map_err(at("$.arrays".into()))?;
        Ok(Realized {
            net,
            arrays,
            neurons,
            seed,
            stochastic,
            reads: AtomicU64::new(0),
            rereads: AtomicU64::new(0),
        })
    }

    /// Whether two queries of the same input can differ (any per-read, converter or neuron noise).
    pub fn stochastic(&self) -> bool {
        self.stochastic
    }

    /// (vector reads, bound-management re-reads) made so far through converters: a vector is one
    /// input vector's (a sample's, for a conv at one output position) outputs of one tile in one
    /// step (all-zero vectors under noise management are not read); reads of exact arrays are not
    /// counted. Gradient recomputation counts too.
    pub fn read_counts(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::Relaxed),
            self.rereads.load(Ordering::Relaxed),
        )
    }

    /// Per array: its tiles and the vector reads made so far through converters, per direction
    /// (what [`Realized::read_counts`] sums), for the cost model.
    pub fn array_use(&self) -> Vec<ArrayUse> {
        self.arrays
            .iter()
            .map(|a| {
                let c = |k: usize| a.counts[k].load(Ordering::Relaxed);
                ArrayUse {
                    name: a.name.clone(),
                    tiles: a.tiles.clone(),
                    crossbar: matches!(a.read, SynapseRead::Crossbar { .. }),
                    forward_reads: c(0),
                    forward_rereads: c(1),
                    transposed_reads: c(2),
                    transposed_rereads: c(3),
                    forward_sumsq: c(4) as f64 / SUMSQ_UNIT,
                    transposed_sumsq: c(5) as f64 / SUMSQ_UNIT,
                }
            })
            .collect()
    }

    /// Spikes fired so far per population (0 for analog ones): the energy proxy of spiking
    /// neurons. Counts every step evaluated, gradient recomputation included.
    pub fn spike_counts(&self) -> Vec<u64> {
        self.neurons
            .iter()
            .map(|n| n.spikes.load(Ordering::Relaxed))
            .collect()
    }

    /// The read-noise stream of query `query`.
    pub fn query_stream(&self, query: u64) -> Stream {
        Stream::new(self.seed, "netlist.read").sub(query)
    }
}

/// Host copy of the effective (programmed) weights of every array, for inspection and tests.
pub fn effective_weights<B: Backend>(r: &Realized<B>, be: &B) -> Result<Vec<Tensor>> {
    r.net.weights.iter().map(|w| be.download(w)).collect()
}

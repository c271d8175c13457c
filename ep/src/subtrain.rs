//! Training on the substrate with EP's local update rule (`netlist:<preset>` training).
//!
//! One batch ([`SubstrateTrainer::train_batch`]):
//!
//! 1. **free phase** of T1 steps on the realized network ([`Realized::free_phase`], query
//!    `batch_index`, so every read has its own noise draw), predictions from the realized logits;
//! 2. **nudged phases** of T2 steps from the free fixed point with ±β (random sign per batch, as
//!    [`crate::train::train_batch`]) on the same realization with the same kind of noisy reads
//!    ([`Dynamics::relax`] on [`Realized::reads`], read-noise streams `query.child("nudge").sub(0|1)`); vanilla EP uses
//!    (s⁰, 0) and (s^β, β);
//! 3. **local update**: per crossbar, ∂Φ/∂W at the measured states — outer products of the pre-
//!    and post-synaptic neuron states, for a conv array summed over the output positions (routed
//!    through the pooling switches of the state), exactly [`EpNet::phi_param_grads`] on the
//!    effective weights — combined into the EP estimate ([`EpNet::ep_grads`]). The configured
//!    optimizer turns it into the requested change ΔW (plain SGD is the local rule; momentum or
//!    Adam keep their per-weight state in the digital periphery);
//! 4. **applied to the programmed devices**:
//!    * update-capable device (the preset's `[update]` section, [`PulsedCell`]): one pulsed device
//!      per weight holding the signed normalized weight `w_n` (aihwkit's convention: symmetry point
//!      at 0), read as a differential pair against a reference at the symmetry point, G⁺ = g_ref +
//!      s·w_n, G⁻ = g_ref, so w = (G⁺ − G⁻)/s as in `devices::mapping`. The array weight is
//!      W = α·w_n with a fixed per-array α chosen at instantiation so that the initial abs-max
//!      weight uses half of the device range (`INIT_RANGE_FRACTION` of min(w_max, −w_min)). The
//!      request ΔW/α becomes a pulse count per device, ΔW/(α·dw_min) rounded ([`Rounding`]),
//!      clipped to ±max_pulses, and applied with [`PulsedArray::pulse`] (soft bounds, up/down
//!      asymmetry, device-to-device and cycle-to-cycle variation). The effective weights α·w_n
//!      are then read out through the preset's cell model (ecram: ideal);
//!    * non-updatable devices (pcm, rram, ideal without `[update]`): **re-programming** — every
//!      array is programmed again to its current effective weights plus ΔW, with the cell's
//!      programming noise (and aging, drift compensation) drawn from
//!      `subtrain.reprogram.sub(update)`; the error of one re-programming therefore accumulates
//!      over updates as a random walk, like write-verify-free reprogramming of real PCM/RRAM.
//!      Re-programming is not counted as pulses.
//!
//!    Biases are digital (peripheral): they are updated exactly by the optimizer.
//!
//! Every random draw comes from seeded streams: device-to-device variation from
//! `subtrain.devices.<array>`, cycle-to-cycle noise from `subtrain.c2c.<array>` at the update
//! counter, stochastic rounding from `subtrain.round.<array>` at the update counter and the cell
//! index — a run is a pure function of its seeds regardless of the thread count.

use devices::pulsed::{PulsedArray, PulsedCell};
use serde::{Deserialize, Serialize};
use sim::netlist::Loaded;
use sim::{Backend, Error, Result, Stream, Tensor};

use crate::model::{EpNet, State, Target};
use crate::optim::Optimizer;
use crate::settle::{Settle, Settler};
use crate::substrate::Realized;
use crate::train::{BatchStats, EpConfig, argmax_rows, optimizer_step};

/// Fraction of the device range min(w_max, −w_min) the initial abs-max weight of an array maps to.
pub const INIT_RANGE_FRACTION: f64 = 0.5;

/// How a requested change becomes an integer number of pulses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// `round(Δw / dw_min)` ([`PulsedArray::pulses_for`]): changes below dw_min/2 are lost.
    Nearest,
    /// `floor(Δw / dw_min + u)`, u uniform in [0, 1) (seeded): unbiased, the expected count is
    /// Δw / dw_min (in the spirit of aihwkit's stochastic pulse trains).
    #[default]
    Stochastic,
}

/// The device state of the programmed arrays.
#[derive(Debug, Clone)]
pub enum Devices {
    /// Update-capable pulsed devices: one [`PulsedArray`] per crossbar with its weight scale α.
    Pulsed {
        /// The device parameters.
        cell: PulsedCell,
        /// Per crossbar, its devices (weights in normalized units, `[out, in]` row-major).
        arrays: Vec<PulsedArray>,
        /// Per crossbar, weight units per normalized device unit.
        alpha: Vec<f32>,
    },
    /// Non-updatable devices, re-programmed after every update.
    Reprogram,
}

/// Pulse counts requesting normalized changes `dw` on `arr` with device step `dw_min`; stochastic
/// rounding draws from `round` at the cell index. Counts are clipped to ±`max_pulses`.
pub fn pulse_counts(
    dw: &[f32],
    dw_min: f64,
    max_pulses: u32,
    rounding: Rounding,
    round: &Stream,
) -> Result<Vec<i32>> {
    if let Some(i) = dw.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: "substrate update: requested weight change".into(),
            detail: format!("index {i} is {}", dw[i]),
        });
    }
    let m = max_pulses as f64;
    Ok(dw
        .iter()
        .enumerate()
        .map(|(j, &d)| {
            let r = d as f64 / dw_min;
            let n = match rounding {
                Rounding::Nearest => r.round(),
                Rounding::Stochastic => (r + round.uniform(j as u64) as f64).floor(),
            };
            n.clamp(-m, m) as i32
        })
        .collect())
}

/// A realized network being trained on its devices (see the module doc).
pub struct SubstrateTrainer<B: Backend> {
    /// The netlist; its weights are the current effective weights, its biases the digital ones.
    pub loaded: Loaded,
    /// The current realization (re-realized after every update).
    pub realized: Realized<B>,
    /// The device state.
    pub devices: Devices,
    /// Rounding of pulse counts.
    pub rounding: Rounding,
    /// Updates applied so far (the counter of the per-update streams).
    pub updates: u64,
    /// Device pulses applied so far (Σ |count| over devices and updates, after clipping).
    pub pulses: u64,
    /// What the last training step read and wrote (for the cost model).
    pub last_step: StepUse,
    seed: u64,
}

/// What one training step did on the substrate: the reads of its free and nudged phases per
/// array, the spikes, the free-phase steps (images × steps over every phase) and the update
/// pulses. The EP gradient and the optimizer step are computed digitally and not counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepUse {
    /// Per array: its tiles and the step's reads.
    pub uses: Vec<crate::substrate::ArrayUse>,
    /// Spikes fired.
    pub spikes: u64,
    /// Free-phase steps, summed over the images and the phases.
    pub steps: u64,
    /// Device pulses of the update.
    pub pulses: u64,
}

impl<B: Backend> SubstrateTrainer<B> {
    /// Realize `loaded` from `seed` and instantiate the update devices: pulsed devices of `update`
    /// when given (set to the realized effective weights), else re-programming.
    pub fn new(
        be: &B,
        loaded: Loaded,
        seed: u64,
        update: Option<PulsedCell>,
        rounding: Rounding,
    ) -> Result<Self> {
        let realized = Realized::new(be, &loaded, seed).map_err(|e| Error::Other(e.to_string()))?;
        let mut t = SubstrateTrainer {
            loaded,
            realized,
            devices: Devices::Reprogram,
            rounding,
            updates: 0,
            pulses: 0,
            last_step: StepUse::default(),
            seed,
        };
        if let Some(cell) = update {
            cell.validate()?;
            let eff = t.effective_weights(be)?;
            let range = cell.w_max.min(-cell.w_min) * INIT_RANGE_FRACTION;
            let root = Stream::new(seed, "subtrain.devices");
            let mut arrays = Vec::new();
            let mut alpha = Vec::new();
            for (i, w) in eff.iter().enumerate() {
                let name = t.loaded.netlist.arrays[i].name.clone();
                let mut a = cell.instantiate(w.len(), root.child(&name))?;
                let amax = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let al = if amax > 0.0 {
                    (amax as f64 / range) as f32
                } else {
                    1.0
                };
                let wn: Vec<f32> = w.iter().map(|v| v / al).collect();
                a.set_weights(&wn)?;
                arrays.push(a);
                alpha.push(al);
            }
            t.devices = Devices::Pulsed {
                cell,
                arrays,
                alpha,
            };
            let ws = t.device_weights()?;
            let bs = t.loaded.biases.clone();
            t.realize(be, ws, bs, None)?;
        }
        Ok(t)
    }

    /// The effective (programmed) weights of every array, host copies.
    pub fn effective_weights(&self, be: &B) -> Result<Vec<Tensor>> {
        crate::substrate::effective_weights(&self.realized, be)
    }

    /// The realized network (effective weights, digital biases).
    pub fn net(&self) -> &EpNet<B> {
        &self.realized.net
    }

    /// α·w_n of the pulsed devices, in the arrays' weight shapes.
    fn device_weights(&self) -> Result<Vec<Tensor>> {
        let Devices::Pulsed { arrays, alpha, .. } = &self.devices else {
            return Err(Error::Other(
                "device_weights: not a pulsed substrate".into(),
            ));
        };
        arrays
            .iter()
            .zip(alpha)
            .zip(&self.loaded.weights)
            .map(|((a, &al), w)| sim::tensor(w.shape(), a.w.iter().map(|v| v * al).collect()))
            .collect()
    }

    /// Re-realize with new weights/biases; `program` = the programming stream (None: the first
    /// programming stream of the seed, used when the cell read-out is the pulsed state).
    fn realize(
        &mut self,
        be: &B,
        ws: Vec<Tensor>,
        bs: Vec<Tensor>,
        program: Option<Stream>,
    ) -> Result<()> {
        self.loaded.weights = ws;
        self.loaded.biases = bs;
        let program = program.unwrap_or_else(|| Stream::new(self.seed, "netlist.program"));
        self.realized = Realized::programmed_with(be, &self.loaded, self.seed, program)
            .map_err(|e| Error::Other(e.to_string()))?;
        Ok(())
    }

    /// One EP training step on the substrate (see the module doc); `batch_index` (global) is the
    /// query number of the reads and picks the β sign from `sign_stream` as the digital trainer.
    /// Returns the free-phase accuracy counts on the substrate.
    #[allow(clippy::too_many_arguments)]
    pub fn train_batch(
        &mut self,
        be: &B,
        opt: &mut Optimizer,
        cfg: &EpConfig,
        x: &B::Tensor,
        labels: &[usize],
        sign_stream: &Stream,
        batch_index: u64,
    ) -> Result<BatchStats> {
        if cfg.beta == 0.0 {
            return Err(Error::param("ep", "β must be non-zero"));
        }
        let real = &self.realized;
        let net = &real.net;
        let n = net.check_input(be, x)?;
        // The realization's counters before the step (evaluations may have read since the last
        // update re-realized it).
        let uses0 = real.array_use();
        let spikes0: u64 = real.spike_counts().iter().sum();
        if labels.len() != n {
            return Err(Error::shape(
                "ep",
                format!("{n} inputs but {} labels", labels.len()),
            ));
        }
        let target = Target::new(be, labels, net.spec.n_classes())?;
        let (t1, t2) = (net.spec.t1, net.spec.t2);
        let settle = &cfg.settle;
        let free = real.query(batch_index).free_phase_with(be, x, t1, settle)?;
        let mut sample_steps: usize = free.per_sample_steps().sum();
        let logits = real.logits(be, &free.state, batch_index, free.steps as u64)?;
        let free = free.state;
        let pred = argmax_rows(&be.download(&logits)?);
        let correct = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
        let sign = if cfg.random_sign && sign_stream.below(batch_index, 2) == 0 {
            -1.0
        } else {
            1.0
        };
        let beta = sign * cfg.beta;
        let q = real.query_stream(batch_index).child("nudge");
        let mut nudged = |k: u64, b: f32, from: State<B>| -> Result<State<B>> {
            let s = real
                .reads(q.sub(k))
                .relax_with(be, x, from, t2, Some((b, &target)), settle)?;
            sample_steps += s.per_sample_steps().sum::<usize>();
            Ok(s.state)
        };
        let plus = nudged(0, beta, free.clone())?;
        let grads = if cfg.symmetric {
            let minus = nudged(1, -beta, free)?;
            net.ep_grads(be, x, (&plus, beta), (&minus, -beta), &target)?
        } else {
            net.ep_grads(be, x, (&free, 0.0), (&plus, beta), &target)?
        };
        // The requested changes: the optimizer's step on a copy of the effective weights.
        let mut step = StepUse {
            uses: real
                .array_use()
                .iter()
                .zip(&uses0)
                .map(|(u, e)| u.since(e))
                .collect(),
            spikes: real.spike_counts().iter().sum::<u64>() - spikes0,
            steps: sample_steps as u64,
            pulses: 0,
        };
        let (ws, bs) = net.to_host(be)?;
        let (new_ws, new_bs) = optimizer_step(be, opt, ws.clone(), bs, grads)?;
        let dws = new_ws
            .iter()
            .zip(&ws)
            .map(|(p, old)| {
                let d: Vec<f32> = p.iter().zip(old.iter()).map(|(a, b)| a - b).collect();
                sim::tensor(old.shape(), d)
            })
            .collect::<Result<Vec<_>>>()?;
        step.pulses = self.apply(be, &dws, new_bs)?;
        self.last_step = step;
        Ok(BatchStats {
            n,
            correct,
            sample_steps,
        })
    }

    /// Apply requested weight changes `dws` (weight units, one per array) to the devices and set
    /// the digital biases to `biases`; then re-realize. Returns the pulses of this update.
    pub fn apply(&mut self, be: &B, dws: &[Tensor], biases: Vec<Tensor>) -> Result<u64> {
        let u = self.updates;
        if dws.len() != self.loaded.weights.len() {
            return Err(Error::shape(
                "substrate update",
                format!(
                    "{} weight changes for {} arrays",
                    dws.len(),
                    self.loaded.weights.len()
                ),
            ));
        }
        let names: Vec<String> = self
            .loaded
            .netlist
            .arrays
            .iter()
            .map(|a| a.name.clone())
            .collect();
        let mut pulses = 0u64;
        let rounding = self.rounding;
        let seed = self.seed;
        match &mut self.devices {
            Devices::Pulsed {
                cell,
                arrays,
                alpha,
            } => {
                for (i, d) in dws.iter().enumerate() {
                    let al = alpha[i];
                    let dn: Vec<f32> = d.iter().map(|v| v / al).collect();
                    let round = Stream::new(seed, "subtrain.round").child(&names[i]).sub(u);
                    let counts = pulse_counts(&dn, cell.dw_min, cell.max_pulses, rounding, &round)?;
                    pulses += counts.iter().map(|c| c.unsigned_abs() as u64).sum::<u64>();
                    arrays[i].pulse(
                        &counts,
                        u,
                        Stream::new(seed, "subtrain.c2c").child(&names[i]),
                    )?;
                }
                let ws = self.device_weights()?;
                self.realize(be, ws, biases, None)?;
            }
            Devices::Reprogram => {
                let eff = self.effective_weights(be)?;
                let ws = eff
                    .iter()
                    .zip(dws)
                    .map(|(w, d)| {
                        sim::tensor(
                            w.shape(),
                            w.iter().zip(d.iter()).map(|(a, b)| a + b).collect(),
                        )
                    })
                    .collect::<Result<Vec<_>>>()?;
                for (i, w) in ws.iter().enumerate() {
                    sim::check_finite(&format!("re-programmed weights of array {}", names[i]), w)?;
                }
                let program = Stream::new(seed, "subtrain.reprogram").sub(u);
                self.realize(be, ws, biases, Some(program))?;
            }
        }
        self.updates += 1;
        self.pulses += pulses;
        Ok(pulses)
    }

    /// Correct predictions on a batch by a free phase on the substrate settled by `settle` (T1:
    /// the plain steps, or the cap), and the free-phase steps summed over its images; query
    /// `query`: use numbers disjoint from the training batches' to get independent noise draws.
    pub fn correct(
        &self,
        be: &B,
        x: &B::Tensor,
        labels: &[usize],
        query: u64,
        settle: &Settle,
    ) -> Result<(usize, usize)> {
        let t1 = self.realized.net.spec.t1;
        let st = self
            .realized
            .query(query)
            .free_phase_with(be, x, t1, settle)?;
        let logits = self
            .realized
            .logits(be, &st.state, query, st.steps as u64)?;
        let pred = argmax_rows(&be.download(&logits)?);
        if pred.len() != labels.len() {
            return Err(Error::shape(
                "substrate eval",
                format!("{} inputs but {} labels", pred.len(), labels.len()),
            ));
        }
        let right = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
        Ok((right, st.per_sample_steps().sum()))
    }

    /// The weights the arrays were last programmed to (pulsed: α·w_n), one per array: with the
    /// biases, [`Self::pulsed_state`] and the counters, what an exact resume needs.
    pub fn targets(&self) -> &[Tensor] {
        &self.loaded.weights
    }

    /// The pulsed devices' normalized weights and the per-array α (None when re-programming).
    pub fn pulsed_state(&self) -> Option<(Vec<Vec<f32>>, Vec<f32>)> {
        match &self.devices {
            Devices::Pulsed { arrays, alpha, .. } => {
                Some((arrays.iter().map(|a| a.w.clone()).collect(), alpha.clone()))
            }
            Devices::Reprogram => None,
        }
    }

    /// Restore a state saved from a trainer built the same way (same netlist structure, seed and
    /// update device): the programmed targets, the digital biases, the pulsed devices' weights and
    /// α (required exactly for a pulsed trainer), and the counters. The realization is rebuilt
    /// with the programming stream of the last update, so the run continues with the same bits.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        &mut self,
        be: &B,
        targets: Vec<Tensor>,
        biases: Vec<Tensor>,
        pulsed: Option<(Vec<Vec<f32>>, Vec<f32>)>,
        updates: u64,
        pulses: u64,
    ) -> Result<()> {
        let n = self.loaded.weights.len();
        if targets.len() != n || biases.len() != n {
            return Err(Error::shape(
                "substrate restore",
                format!(
                    "{} targets and {} biases for {n} arrays",
                    targets.len(),
                    biases.len()
                ),
            ));
        }
        for (i, (t, w)) in targets.iter().zip(&self.loaded.weights).enumerate() {
            if t.shape() != w.shape() {
                return Err(Error::shape(
                    "substrate restore",
                    format!(
                        "target {i} has shape {:?}, array expects {:?}",
                        t.shape(),
                        w.shape()
                    ),
                ));
            }
        }
        self.updates = updates;
        self.pulses = pulses;
        match (&mut self.devices, pulsed) {
            (Devices::Pulsed { arrays, alpha, .. }, Some((ws, al))) => {
                if ws.len() != n || al.len() != n {
                    return Err(Error::shape(
                        "substrate restore",
                        format!(
                            "{} device arrays and {} α for {n} arrays",
                            ws.len(),
                            al.len()
                        ),
                    ));
                }
                if let Some(i) = al.iter().position(|a| !(a.is_finite() && *a > 0.0)) {
                    return Err(Error::param(
                        "substrate restore",
                        format!("α of array {i} is {} (must be finite and > 0)", al[i]),
                    ));
                }
                for (a, w) in arrays.iter_mut().zip(&ws) {
                    a.set_weights(w)?;
                }
                *alpha = al;
                let ws = self.device_weights()?;
                self.realize(be, ws, biases, None)
            }
            (Devices::Reprogram, None) => {
                let program = updates
                    .checked_sub(1)
                    .map(|u| Stream::new(self.seed, "subtrain.reprogram").sub(u));
                self.realize(be, targets, biases, program)
            }
            (Devices::Pulsed { .. }, None) => Err(Error::param(
                "substrate restore",
                "a pulsed substrate needs the devices' weights and α",
            )),
            (Devices::Reprogram, Some(_)) => Err(Error::param(
                "substrate restore",
                "device weights given for a re-programmed (non-pulsed) substrate",
            )),
        }
    }
}

//! Substrates a model can be realized on, as [`Classifier`]s: `digital` (the EP engine) and
//! `netlist:<preset>` (the model compiled with a device preset and realized on simulated hardware,
//! [`NetlistClassifier`]). `--set key=value` overrides preset values (see
//! [`devices::Preset::set_str`]; `t_inference` is an alias of `inference.t_inference_s`, and
//! `nonideality_scale=s` multiplies every non-ideality by `s`).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use devices::Preset;
use ep::compile::{CompileOptions, compile};
use ep::substrate::Realized;
use ep::substrate::feedforward::Layout;
use ep::{Dynamics, EpNet, Settle, Settler};
use sim::Tensor;
use sim::netlist::{Loaded, Netlist, Origin, TileSize};

use super::load::HostModel;
use super::{Classifier, EpClassifier, LossFn, Normalize, per_image_steps_grad, with_host_loss};
use crate::cost::{Cost, Counts, cost_of};
use crate::device::Engine;

/// A device preset by built-in name or TOML file, with `key=value` overrides applied in order.
pub fn load_preset(device: &str, sets: &[String]) -> Result<Preset> {
    let mut p = if device.ends_with(".toml") || Path::new(device).is_file() {
        let text = std::fs::read_to_string(device)
            .with_context(|| format!("reading device preset {device}"))?;
        Preset::from_toml(&text, device)?
    } else {
        Preset::builtin(device)?
    };
    for kv in sets {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected key=value"))?;
        let k = k.trim();
        if k == "nonideality_scale" {
            let s: f64 = v
                .trim()
                .parse()
                .with_context(|| format!("--set {kv}: not a number"))?;
            p.scale_nonidealities(s)?;
            continue;
        }
        let k = if k == "t_inference" {
            "t_inference_s"
        } else {
            k
        };
        p.set_str(k, v).with_context(|| format!("--set {kv}"))?;
    }
    Ok(p)
}

/// Parse a tile size `RxC` (e.g. `512x512`).
pub fn parse_tile(s: &str) -> Result<TileSize> {
    let (r, c) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("tile size {s:?}: expected ROWSxCOLS, e.g. 512x512"))?;
    let t = TileSize {
        rows: r
            .trim()
            .parse()
            .with_context(|| format!("tile rows {r:?}"))?,
        cols: c
            .trim()
            .parse()
            .with_context(|| format!("tile cols {c:?}"))?,
    };
    if t.rows == 0 || t.cols == 0 {
        bail!("tile size {s}: rows and columns must be ≥ 1");
    }
    Ok(t)
}

/// Compile an EP model with a preset into a validated, loaded netlist.
pub fn compile_model(m: &HostModel, preset: &Preset, tile: TileSize) -> Result<Loaded> {
    let nl = compile(
        &m.spec,
        &m.weights,
        &m.biases,
        preset,
        &CompileOptions {
            tile,
            name: format!("epsim:{}", preset.name),
        },
    )?;
    Ok(Netlist::from_json(&nl.to_json(), Origin::memory())?)
}

/// A realized netlist as a classifier: predictions from a free phase of `t_predict` steps, input
/// gradients by BPTT through the noisy free phase of `t_attack` steps. Every call (`logits` or
/// `loss_grad`) is one query with its own noise draw (query counter), so a stochastic substrate
/// gives a fresh draw each time and attacks average with EOT.
pub struct NetlistClassifier<B: Engine> {
    /// The backend the realization computes on.
    pub be: B,
    /// The realization.
    pub real: Realized<B>,
    /// Normalization applied inside the model.
    pub norm: Normalize,
    /// Free-phase steps for predictions.
    pub t_predict: usize,
    /// Free-phase steps the gradient is taken through.
    pub t_attack: usize,
    /// How predictions settle (`t_predict`: the plain steps, or the cap).
    pub settle: Settle,
    /// For reports, e.g. `netlist:pcm`.
    pub label: String,
    queries: AtomicU64,
    /// What the cost model needs: the preset's laws and the netlist's neuron count (see
    /// [`NetlistClassifier::with_cost`]).
    cost_basis: Option<(Box<Preset>, u64)>,
    /// Images through `logits` (free phases for predictions).
    images: AtomicU64,
    /// Free-phase steps of those predictions, summed over the images.
    image_steps: AtomicU64,
    /// Images through `loss_grad` (free phases with BPTT recomputation).
    grad_images: AtomicU64,
    /// Free-phase steps of those gradients, summed over the images (each image's own steps
    /// under a settle to a tolerance, else `t_attack`).
    grad_steps: AtomicU64,
    /// A feed-forward realization (a backprop baseline): its digital layout and its kind
    /// (`bp_cnn`, `adv_cnn`); None for an EP network.
    ff: Option<(Layout, &'static str)>,
}

impl<B: Engine> NetlistClassifier<B> {
    /// Realize `l` on `be` from `seed` (programming, neuron spreads, read noise streams).
    pub fn new(
        be: &B,
        l: &Loaded,
        seed: u64,
        label: &str,
        t_predict: Option<usize>,
    ) -> Result<Self> {
        let real = Realized::new(be, l, seed)?;
        let norm = Normalize::of_model(&real.net.spec);
        let t = t_predict.unwrap_or(real.net.spec.t1);
        Ok(NetlistClassifier {
            be: be.clone(),
            real,
            norm,
            t_predict: t,
            t_attack: t,
            settle: Settle::default(),
            label: label.to_string(),
            queries: AtomicU64::new(0),
            cost_basis: None,
            images: AtomicU64::new(0),
            image_steps: AtomicU64::new(0),
            grad_images: AtomicU64::new(0),
            grad_steps: AtomicU64::new(0),
            ff: None,
        })
    }

    /// Realize `l`, the compiled [`ep::baselines::FeedForward`] form of a backprop baseline of
    /// `kind`, on `be` from `seed`: one read of every synapse per inference, `layout` digital in
    /// between, straight-through gradients (see [`ep::substrate::feedforward`]).
    pub fn feed_forward(
        be: &B,
        l: &Loaded,
        layout: Layout,
        kind: &'static str,
        seed: u64,
        label: &str,
    ) -> Result<Self> {
        let mut c = Self::new(be, l, seed, label, Some(1))?;
        layout.check(&c.real)?;
        c.ff = Some((layout, kind));
        Ok(c)
    }

    /// Keep the cost model of `preset` (the preset `l` was compiled from), so that the counted
    /// reads of this realization turn into energy and latency ([`Self::cost_so_far`]).
    pub fn with_cost(mut self, preset: &Preset, l: &Loaded) -> Self {
        let neurons = crate::cost::neuron_count(&l.netlist);
        self.cost_basis = Some((Box::new(preset.clone()), neurons));
        self
    }

    /// Settle predictions with `settle` (see [`ep::settle`]; the noise is drawn per step taken).
    pub fn with_settle(mut self, settle: Settle) -> Self {
        self.settle = settle;
        self
    }

    /// The cost per inference of the `images` predictions made so far, from the counted reads
    /// and spikes and the free-phase steps (one neuron update per neuron and step).
    pub fn cost_so_far(&self, images: u64) -> Result<Cost> {
        let (preset, k) = self
            .counts()
            .context("this realization carries no cost model (a compiled netlist file?)")?;
        cost_of(preset, &k, images)
    }

    /// The preset and the counts so far (see [`Classifier::cost_counts`]): the free phases of
    /// predictions and of gradients (the steps each image took).
    fn counts(&self) -> Option<(&Preset, Counts)> {
        let (preset, neurons) = self.cost_basis.as_ref()?;
        let steps =
            self.image_steps.load(Ordering::Relaxed) + self.grad_steps.load(Ordering::Relaxed);
        Some((
            preset,
            Counts::new(
                self.real.array_use(),
                steps,
                *neurons,
                self.real.spike_counts().iter().sum(),
                0,
            ),
        ))
    }

    fn next_query(&self) -> u64 {
        self.queries.fetch_add(1, Ordering::Relaxed)
    }
}

impl<B: Engine> Classifier for NetlistClassifier<B> {
    /// The label and settings; once reads were made through converters with bound management,
    /// also the share of re-reads; with spiking neurons, the spikes fired (per image and step when
    /// only predictions were made).
    fn describe(&self) -> String {
        let (reads, rereads) = self.real.read_counts();
        let spikes: u64 = self.real.spike_counts().iter().sum();
        let images = self.images.load(Ordering::Relaxed);
        let spiking = if spikes == 0 {
            String::new()
        } else if images > 0 && self.grad_images.load(Ordering::Relaxed) == 0 {
            let per = spikes as f64 / images as f64;
            let steps = self.image_steps.load(Ordering::Relaxed) as f64 / images as f64;
            format!(
                ", spiking neurons: {spikes} spikes, {per:.0} per image, {:.0} per image and step",
                per / steps.max(1.0)
            )
        } else {
            format!(", spiking neurons: {spikes} spikes")
        };
        let what = match &self.ff {
            Some((_, kind)) => format!("{kind} (feed-forward, one read per synapse)"),
            None if self.settle.is_default() => {
                format!("T_predict {}, T_attack {}", self.t_predict, self.t_attack)
            }
            None => {
                let images = self.images.load(Ordering::Relaxed).max(1) as f64;
                format!(
                    "settle {}: {:.2} steps per image, T_attack {}",
                    self.settle.describe(self.t_predict),
                    self.image_steps.load(Ordering::Relaxed) as f64 / images,
                    self.t_attack
                )
            }
        };
        format!(
            "{} on {} ({} synapses, {what}{}{}{spiking})",
            self.ff.as_ref().map_or("EP", |f| f.1),
            self.label,
            self.real.net.spec.n_synapses(),
            if self.real.stochastic() {
                ", stochastic"
            } else {
                ""
            },
            if rereads > 0 {
                format!(
                    ", bound management: {rereads} re-reads in {reads} vector reads ({:.1} %)",
                    100.0 * rereads as f64 / reads as f64
                )
            } else {
                String::new()
            }
        )
    }
    fn num_classes(&self) -> usize {
        self.real.net.spec.n_classes()
    }
    fn input_shape(&self) -> [usize; 3] {
        self.real.net.spec.input
    }
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let be = &self.be;
        let q = self.next_query();
        self.images
            .fetch_add(x.shape()[0] as u64, Ordering::Relaxed);
        let xn = be.upload_owned(self.norm.forward(x)?)?;
        if let Some((ff, _)) = &self.ff {
            // One read of every synapse: one step per image.
            self.image_steps
                .fetch_add(x.shape()[0] as u64, Ordering::Relaxed);
            return Ok(be.download(&ff.logits(&self.real, be, &xn, q)?)?);
        }
        let st = self
            .real
            .query(q)
            .free_phase_with(be, &xn, self.t_predict, &self.settle)?;
        self.image_steps.fetch_add(
            st.per_sample_steps().sum::<usize>() as u64,
            Ordering::Relaxed,
        );
        Ok(be.download(&self.real.logits(be, &st.state, q, st.steps as u64)?)?)
    }
    fn loss_grad(&self, x: &Tensor, loss: LossFn<'_>) -> Result<(Tensor, Tensor)> {
        let be = &self.be;
        let q = self.next_query();
        self.grad_images
            .fetch_add(x.shape()[0] as u64, Ordering::Relaxed);
        let xn = be.upload_owned(self.norm.forward(x)?)?;
        let n = x.shape()[0] as u64;
        if let Some((ff, _)) = &self.ff {
            self.grad_steps.fetch_add(n, Ordering::Relaxed);
            let (logits, dx) = with_host_loss(be, loss, |lg| {
                ff.input_grad(&self.real, be, &xn, q, |l| Ok(lg(l)?.1))
            })?;
            let dx = be.download(&dx)?;
            return Ok((be.download(&logits)?, self.norm.backward(&dx)));
        }
        if !self.settle.is_default() && self.t_attack == self.t_predict {
            // Settled to a tolerance: each image's gradient through the steps it took.
            let reads = self.real.query(q);
            let st = reads.free_phase_with(be, &xn, self.t_predict, &self.settle)?;
            let logits = be.download(&self.real.logits(be, &st.state, q, st.steps as u64)?)?;
            let steps: Vec<usize> = st.per_sample_steps().collect();
            self.grad_steps
                .fetch_add(steps.iter().sum::<usize>() as u64, Ordering::Relaxed);
            let dx = per_image_steps_grad(be, &xn, &logits, &steps, loss, |xg, k, dg| {
                let b = reads.free_phase_bptt(be, xg, k, 0, false, |_| Ok((0.0, dg.clone())))?;
                Ok(b.dx)
            })?;
            return Ok((logits, self.norm.backward(&dx)));
        }
        self.grad_steps
            .fetch_add(n * self.t_attack as u64, Ordering::Relaxed);
        let r = with_host_loss(be, loss, |lg| {
            self.real
                .query(q)
                .free_phase_bptt(be, &xn, self.t_attack, 0, false, lg)
        })?;
        let dx = be.download(&r.dx)?;
        Ok((be.download(&r.logits)?, self.norm.backward(&dx)))
    }
    fn stochastic(&self) -> bool {
        self.real.stochastic()
    }
    fn cost_counts(&self) -> Option<(&Preset, Counts)> {
        self.counts()
    }
    fn free_phase_steps(&self) -> Option<u64> {
        (!self.settle.is_default()).then(|| self.image_steps.load(Ordering::Relaxed))
    }
}

/// A backprop baseline (BP-CNN, AdvCNN) realized on the device preset of `substrate` from `seed`,
/// as its feed-forward form (batch norm folded; see [`ep::baselines::feedforward`]), carrying the
/// preset's cost model. The digital substrate and compiled netlist files are refused (a netlist
/// file holds an EP network's dynamics).
pub fn baseline_classifier<B: Engine>(
    be: &B,
    m: &ep::baselines::Baseline,
    substrate: &SubstrateSpec,
    seed: u64,
) -> Result<Box<dyn Classifier>> {
    let SubstrateSpec::Netlist {
        preset,
        overrides,
        tile,
    } = substrate
    else {
        bail!("the digital substrate runs a baseline as it is (BaselineClassifier)");
    };
    if substrate.netlist_file().is_some() {
        bail!(
            "a compiled netlist file holds an EP network; realize a baseline from a device preset \
             (netlist:pcm, netlist:rram, ... or a preset TOML)"
        );
    }
    let (host, layout) = feed_forward_host(m)?;
    let preset = load_preset(preset, overrides)?;
    let l = compile_model(&host, &preset, *tile)?;
    let c =
        NetlistClassifier::feed_forward(be, &l, layout, m.spec.kind(), seed, &substrate.name())?;
    Ok(Box::new(c.with_cost(&preset, &l)))
}

/// A backprop baseline's feed-forward form (see [`ep::baselines::feedforward`]) as the host model
/// the netlist compiler takes, with what stays digital between its synapses.
pub fn feed_forward_host(m: &ep::baselines::Baseline) -> Result<(HostModel, Layout)> {
    let ff = m.feed_forward()?;
    Ok((
        HostModel {
            spec: ff.spec,
            weights: ff.weights,
            biases: ff.biases,
        },
        Layout { act: ff.act },
    ))
}

/// A substrate as chosen on the command line (`--substrate`, `--set`, `--tile`) or in a config,
/// checked: the digital engine, or a netlist realization of a device preset (built-in name or
/// preset TOML, with `key=value` overrides, compiled onto tiles of `tile`) or of a compiled
/// netlist file (`.json`; the model is then not needed and overrides are refused).
#[derive(Debug, Clone, PartialEq)]
pub enum SubstrateSpec {
    /// The EP engine, exact.
    Digital,
    /// `netlist:<preset|preset.toml|netlist.json>`.
    Netlist {
        /// Preset name, preset TOML or compiled netlist JSON (without `netlist:`).
        preset: String,
        /// Preset overrides `key=value`, applied in order.
        overrides: Vec<String>,
        /// Physical array size.
        tile: TileSize,
    },
}

impl SubstrateSpec {
    /// The substrate a transfer attack crafts its examples on (`--transfer-from`,
    /// `transfer_from = ...`): `digital` or `netlist:<…>`, without overrides, default tiles.
    pub fn transfer_source(s: &str) -> Result<Self> {
        Self::parse(s, &[], "512x512")
    }

    /// Parse `--substrate` (`digital` or `netlist:<…>`) with its `--set` overrides and `--tile`.
    pub fn parse(substrate: &str, overrides: &[String], tile: &str) -> Result<Self> {
        if substrate == "digital" {
            if !overrides.is_empty() {
                bail!("--set applies to netlist substrates only");
            }
            return Ok(SubstrateSpec::Digital);
        }
        let Some(preset) = substrate.strip_prefix("netlist:") else {
            bail!(
                "unknown substrate {substrate:?}: use digital or netlist:<preset|preset.toml|netlist.json>"
            );
        };
        Ok(SubstrateSpec::Netlist {
            preset: preset.to_string(),
            overrides: overrides.to_vec(),
            tile: parse_tile(tile)?,
        })
    }

    /// Whether this is the digital engine.
    pub fn is_digital(&self) -> bool {
        matches!(self, SubstrateSpec::Digital)
    }

    /// The compiled netlist file this substrate realizes, if it names one.
    pub fn netlist_file(&self) -> Option<&Path> {
        match self {
            SubstrateSpec::Netlist { preset, .. } if preset.ends_with(".json") => {
                Some(Path::new(preset))
            }
            _ => None,
        }
    }

    /// The name: `digital` or `netlist:<preset>`.
    pub fn name(&self) -> String {
        match self {
            SubstrateSpec::Digital => "digital".into(),
            SubstrateSpec::Netlist { preset, .. } => format!("netlist:{preset}"),
        }
    }

    /// The name with its overrides, as results record it: `netlist:pcm --set a=1,b=2`.
    pub fn label(&self) -> String {
        match self {
            SubstrateSpec::Netlist { overrides, .. } if !overrides.is_empty() => {
                format!("{} --set {}", self.name(), overrides.join(","))
            }
            _ => self.name(),
        }
    }
}

/// The classifier for a model on a substrate: the digital engine, a device preset (compiled on
/// the fly with its overrides) or a compiled netlist file (the model is then not needed).
/// Predictions (and gradients) take `steps` free-phase steps (default: the model's T1); the
/// classifier computes on `be`.
pub fn classifier<B: Engine>(
    be: &B,
    net: Option<EpNet<B>>,
    substrate: &SubstrateSpec,
    seed: u64,
    steps: Option<usize>,
    settle: &Settle,
) -> Result<Box<dyn Classifier>> {
    let SubstrateSpec::Netlist {
        preset,
        overrides,
        tile,
    } = substrate
    else {
        let net = net.context("the digital substrate needs a model")?;
        let t = steps.unwrap_or(net.spec.t1);
        return Ok(Box::new(
            EpClassifier::new(be, net, t, t).with_settle(*settle),
        ));
    };
    let loaded = if let Some(file) = substrate.netlist_file() {
        if !overrides.is_empty() {
            bail!("--set cannot change a compiled netlist file; compile again with --set");
        }
        Netlist::read(file)?
    } else {
        let net = net.context("netlist:<preset> needs a model (--model)")?;
        let preset = load_preset(preset, overrides)?;
        let loaded = compile_model(&HostModel::of_net(be, &net)?, &preset, *tile)?;
        return Ok(Box::new(
            NetlistClassifier::new(be, &loaded, seed, &substrate.name(), steps)?
                .with_cost(&preset, &loaded)
                .with_settle(*settle),
        ));
    };
    Ok(Box::new(
        NetlistClassifier::new(be, &loaded, seed, &substrate.name(), steps)?.with_settle(*settle),
    ))
}

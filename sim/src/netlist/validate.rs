//! Reading, validating and summarizing a netlist: JSON text or file → checked [`Netlist`] with its
//! tensors loaded ([`Loaded`]); every error names the file and the JSON path of the offending
//! value.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::error::{NResult, NetlistError};
use super::tiles;
use super::types::*;
use crate::{Act, Conv2dParams, Tensor};

/// Deserialize `v` as `T`, turning serde's message into an error at `path`.
fn part<T: serde::de::DeserializeOwned>(v: &serde_json::Value, path: &str) -> NResult<T> {
    serde_json::from_value(v.clone())
        .map_err(|e| NetlistError::at(path, crate::suggest::did_you_mean(&e.to_string())))
}

/// Deserialize a population; a bad neuron entry is reported at its field
/// (`$.populations[1].neuron.window`) rather than at the population.
fn population(v: &serde_json::Value, path: &str) -> NResult<Population> {
    part(v, path).map_err(|e| {
        let Some(n) = v.get("neuron") else { return e };
        let np = format!("{path}.neuron");
        if let Some(obj) = n.as_object() {
            for (k, f) in obj {
                let fp = format!("{np}.{k}");
                let r = match k.as_str() {
                    "act" => part::<Act>(f, &fp).err(),
                    "kind" => part::<NeuronKind>(f, &fp).err(),
                    "phase" => part::<SpikePhase>(f, &fp).err(),
                    "window" => part::<u32>(f, &fp).err(),
                    "gain_dtod" | "offset_dtod" | "noise_std" | "threshold" | "leak" => {
                        part::<f64>(f, &fp).err()
                    }
                    _ => None,
                };
                if let Some(r) = r {
                    return r;
                }
            }
        }
        part::<NeuronModel>(n, &np).err().unwrap_or(e)
    })
}

/// The spiking parameters of a neuron model: only with `kind = "spiking"`, in range, and an
/// activation a spike rate can realize.
fn check_neuron(m: &NeuronModel, path: &str) -> NResult<()> {
    let given = [
        ("window", m.window.is_some()),
        ("threshold", m.threshold.is_some()),
        ("leak", m.leak.is_some()),
        ("phase", m.phase.is_some()),
    ];
    match m.kind {
        NeuronKind::Analog => {
            if let Some((k, _)) = given.iter().find(|(_, g)| *g) {
                return Err(NetlistError::at(
                    format!("{path}.{k}"),
                    format!("`{k}` is a spiking-neuron parameter; it needs `kind` = \"spiking\""),
                ));
            }
            Ok(())
        }
        NeuronKind::Spiking => {
            if unit_linear(m.act).is_none() {
                return Err(NetlistError::at(
                    format!("{path}.act"),
                    format!(
                        "a spiking neuron's rate realizes only an activation with range [0, 1] \
                         that is linear between its clamps (hard_sigmoid, my_hard_sig, \
                         clamp 0..1), not {:?}",
                        m.act
                    ),
                ));
            }
            check_spiking(
                m.window.unwrap_or(DEFAULT_SPIKE_WINDOW),
                m.threshold.unwrap_or(1.0),
                m.leak.unwrap_or(0.0),
            )
            .map_err(|(k, msg)| NetlistError::at(format!("{path}.{k}"), msg))
        }
    }
}

impl Netlist {
    /// Parse and validate netlist JSON text, loading its tensors; every error names `origin.file`
    /// and a JSON path.
    pub fn from_json(text: &str, origin: Origin) -> NResult<Loaded> {
        let file = origin.file.clone();
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| NetlistError::at("$", format!("not valid JSON: {e}")).in_file(&file))?;
        let n = Self::from_value(&v).map_err(|e| e.in_file(&file))?;
        n.load(origin)
    }

    /// Read, parse, validate and load a netlist file.
    pub fn read(path: &Path) -> NResult<Loaded> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            NetlistError::at("$", format!("cannot read: {e}")).in_file(&path.display().to_string())
        })?;
        Self::from_json(&text, Origin::file(path))
    }

    /// Structured parse of a JSON value, section by section so that errors carry a path.
    fn from_value(v: &serde_json::Value) -> NResult<Netlist> {
        let obj = v
            .as_object()
            .ok_or_else(|| NetlistError::at("$", "a netlist is a JSON object"))?;
        const KNOWN: [&str; 9] = [
            "format_version",
            "name",
            "input",
            "populations",
            "arrays",
            "converters",
            "pools",
            "devices",
            "dynamics",
        ];
        for k in obj.keys() {
            if !KNOWN.contains(&k.as_str()) {
                return Err(NetlistError::at(
                    format!("$.{k}"),
                    format!("unknown part `{k}`; expected one of {}", KNOWN.join(", ")),
                ));
            }
        }
        let fv = obj
            .get("format_version")
            .ok_or_else(|| NetlistError::at("$.format_version", "missing"))?;
        let fv: u32 = part(fv, "$.format_version")?;
        if fv != FORMAT_VERSION {
            return Err(NetlistError::at(
                "$.format_version",
                format!("unsupported format_version {fv} (this build reads {FORMAT_VERSION})"),
            ));
        }
        let req = |k: &str| {
            obj.get(k)
                .ok_or_else(|| NetlistError::at(format!("$.{k}"), "missing"))
        };
        let list = |k: &str, required: bool| -> NResult<Vec<serde_json::Value>> {
            match obj.get(k) {
                None if !required => Ok(vec![]),
                None => Err(NetlistError::at(format!("$.{k}"), "missing")),
                Some(serde_json::Value::Array(a)) => Ok(a.clone()),
                Some(_) => Err(NetlistError::at(format!("$.{k}"), "must be a JSON array")),
            }
        };
        let each = |k: &str, required: bool| -> NResult<Vec<(String, serde_json::Value)>> {
            Ok(list(k, required)?
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("$.{k}[{i}]"), v))
                .collect())
        };
        let populations = each("populations", true)?
            .iter()
            .map(|(p, v)| population(v, p))
            .collect::<NResult<_>>()?;
        let arrays = each("arrays", true)?
            .iter()
            .map(|(p, v)| part(v, p))
            .collect::<NResult<_>>()?;
        let converters = each("converters", false)?
            .iter()
            .map(|(p, v)| part(v, p))
            .collect::<NResult<_>>()?;
        let pools = each("pools", false)?
            .iter()
            .map(|(p, v)| part(v, p))
            .collect::<NResult<_>>()?;
        let devices = match obj.get("devices") {
            None => BTreeMap::new(),
            Some(d) => part(d, "$.devices")?,
        };
        Ok(Netlist {
            format_version: fv,
            name: match obj.get("name") {
                None => String::new(),
                Some(n) => part(n, "$.name")?,
            },
            input: part(req("input")?, "$.input")?,
            populations,
            arrays,
            converters,
            pools,
            devices,
            dynamics: part(req("dynamics")?, "$.dynamics")?,
        })
    }

    /// Serialize to pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("netlist serializes")
    }

    /// Validate the structure and load every tensor (checking shapes and finiteness).
    pub fn load(self, origin: Origin) -> NResult<Loaded> {
        let file = origin.file.clone();
        let r = (|| {
            self.validate_structure()?;
            let mut weights = Vec::new();
            let mut biases = Vec::new();
            for (i, a) in self.arrays.iter().enumerate() {
                let p = format!("$.arrays[{i}]");
                let w = a.weight.load(&origin.dir, &format!("{p}.weight"))?;
                let expect = if a.to == LOGITS {
                    let src: usize = self.net_shape(&a.from).expect("validated").iter().product();
                    vec![w.shape().first().copied().unwrap_or(0).max(1), src]
                } else {
                    self.weight_shape(i)?
                };
                if w.shape() != expect.as_slice() {
                    return Err(NetlistError::at(
                        format!("{p}.weight"),
                        format!(
                            "shape mismatch: weight has shape {:?}, the nets it joins need {:?}",
                            w.shape(),
                            expect
                        ),
                    ));
                }
                let b = match &a.bias {
                    Some(b) => {
                        let b = b.load(&origin.dir, &format!("{p}.bias"))?;
                        if b.shape() != [expect[0]] {
                            return Err(NetlistError::at(
                                format!("{p}.bias"),
                                format!(
                                    "shape mismatch: bias has shape {:?}, expected [{}]",
                                    b.shape(),
                                    expect[0]
                                ),
                            ));
                        }
                        b
                    }
                    None => Tensor::zeros(ndarray::IxDyn(&[expect[0]])),
                };
                weights.push(w);
                biases.push(b);
            }
            Ok((weights, biases))
        })();
        let (weights, biases) = r.map_err(|e: NetlistError| e.in_file(&file))?;
        Ok(Loaded {
            netlist: self,
            weights,
            biases,
            origin,
        })
    }

    /// Number of arrays inside the dynamics (all but the readout).
    pub fn n_dynamic_arrays(&self) -> usize {
        self.arrays.len() - usize::from(self.dynamics.readout.is_some())
    }

    /// Shape of the net called `name` (without the batch axis).
    pub fn net_shape(&self, name: &str) -> Option<Vec<usize>> {
        if name == self.input.name {
            return Some(self.input.shape.to_vec());
        }
        self.populations
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.shape.clone())
    }

    /// The weight shape array `i` must have, given the nets it joins (validated structure).
    pub fn weight_shape(&self, i: usize) -> NResult<Vec<usize>> {
        let a = &self.arrays[i];
        let p = format!("$.arrays[{i}]");
        let src = self
            .net_shape(&a.from)
            .ok_or_else(|| NetlistError::at(format!("{p}.from"), "dangling net"))?;
        match a.geometry {
            Geometry::Dense => {
                let out = if a.to == LOGITS {
                    self.readout_classes(i)?
                } else {
                    let dst = self
                        .net_shape(&a.to)
                        .ok_or_else(|| NetlistError::at(format!("{p}.to"), "dangling net"))?;
                    dst.iter().product()
                };
                Ok(vec![out, src.iter().product()])
            }
            Geometry::Conv { kernel, .. } => {
                let dst = self
                    .net_shape(&a.to)
                    .ok_or_else(|| NetlistError::at(format!("{p}.to"), "dangling net"))?;
                Ok(vec![dst[0], src[0], kernel, kernel])
            }
        }
    }

    /// Number of classes of a readout array: the leading dim of its weight (inline shape or file).
    fn readout_classes(&self, i: usize) -> NResult<usize> {
        self.arrays[i].weight.leading_dim().ok_or_else(|| {
            NetlistError::at(
                format!("$.arrays[{i}].weight"),
                "cannot determine the number of classes of the readout",
            )
        })
    }

    /// Conv parameters of array `i` (None for dense).
    pub fn conv_params(&self, i: usize) -> Option<Conv2dParams> {
        match self.arrays[i].geometry {
            Geometry::Conv {
                stride, padding, ..
            } => Some(Conv2dParams::new(stride, padding)),
            Geometry::Dense => None,
        }
    }

    /// The pooling part of array `i`, if any.
    pub fn pool_of(&self, i: usize) -> Option<&PoolPart> {
        let name = self.arrays[i].pool.as_ref()?;
        self.pools.iter().find(|p| &p.name == name)
    }

    /// The converter called `name`.
    pub fn converter(&self, name: &str) -> Option<&Converter> {
        self.converters.iter().find(|c| c.name == name)
    }

    /// Check names, references, the layered topology, geometries, shapes and parameter ranges
    /// (tensors are checked by [`Netlist::load`]).
    pub fn validate_structure(&self) -> NResult<()> {
        let mut names: HashMap<String, String> = HashMap::new();
        let mut claim = |name: &str, path: String| -> NResult<()> {
            if name.is_empty() {
                return Err(NetlistError::at(format!("{path}.name"), "empty name"));
            }
            if name == LOGITS {
                return Err(NetlistError::at(
                    format!("{path}.name"),
                    format!("`{LOGITS}` is reserved for the readout output"),
                ));
            }
            if let Some(prev) = names.insert(name.to_string(), path.clone()) {
                return Err(NetlistError::at(
                    format!("{path}.name"),
                    format!("duplicate name `{name}` (also at {prev})"),
                ));
            }
            Ok(())
        };
        claim(&self.input.name, "$.input".into())?;
        if self.input.shape.contains(&0) {
            return Err(NetlistError::at(
                "$.input.shape",
                format!(
                    "out-of-range parameter: zero dimension in {:?}",
                    self.input.shape
                ),
            ));
        }
        if let Some(n) = &self.input.norm {
            let c = self.input.shape[0];
            if n.mean.len() != c || n.std.len() != c {
                return Err(NetlistError::at(
                    "$.input.norm",
                    format!("shape mismatch: mean/std need {c} entries (one per channel)"),
                ));
            }
            if let Some((j, s)) = n.std.iter().enumerate().find(|(_, s)| {
                s.partial_cmp(&&0.0) != Some(std::cmp::Ordering::Greater) || !s.is_finite()
            }) {
                return Err(NetlistError::at(
                    format!("$.input.norm.std[{j}]"),
                    format!("out-of-range parameter: {s} (must be > 0)"),
                ));
            }
        }
        for (i, p) in self.populations.iter().enumerate() {
            let path = format!("$.populations[{i}]");
            claim(&p.name, path.clone())?;
            if p.shape.is_empty() || p.shape.len() == 2 || p.shape.len() > 3 || p.shape.contains(&0)
            {
                return Err(NetlistError::at(
                    format!("{path}.shape"),
                    format!(
                        "out-of-range parameter: {:?} (use [n] or [C, H, W], no zeros)",
                        p.shape
                    ),
                ));
            }
            for (k, v) in [
                ("gain_dtod", p.neuron.gain_dtod),
                ("offset_dtod", p.neuron.offset_dtod),
                ("noise_std", p.neuron.noise_std),
            ] {
                if !(v >= 0.0 && v.is_finite()) {
                    return Err(NetlistError::at(
                        format!("{path}.neuron.{k}"),
                        format!("out-of-range parameter: {v} (must be finite and ≥ 0)"),
                    ));
                }
            }
            check_neuron(&p.neuron, &format!("{path}.neuron"))?;
        }
        for (i, c) in self.converters.iter().enumerate() {
            let path = format!("$.converters[{i}]");
            claim(&c.name, path.clone())?;
            if c.bits == 1 || c.bits > 24 {
                return Err(NetlistError::at(
                    format!("{path}.bits"),
                    format!("out-of-range parameter: {} (0 = none, else 2..=24)", c.bits),
                ));
            }
            match c.bound {
                Some(b) if !(b > 0.0 && b.is_finite()) => {
                    return Err(NetlistError::at(
                        format!("{path}.bound"),
                        format!("out-of-range parameter: {b} (must be finite and > 0, or null)"),
                    ));
                }
                None if c.bits > 0 => {
                    return Err(NetlistError::at(
                        format!("{path}.bound"),
                        "a quantizing converter (bits > 0) needs a finite bound",
                    ));
                }
                _ => {}
            }
            if !(c.noise_std >= 0.0 && c.noise_std.is_finite()) {
                return Err(NetlistError::at(
                    format!("{path}.noise_std"),
                    format!("out-of-range parameter: {} (must be ≥ 0)", c.noise_std),
                ));
            }
            let wrong_kind = match c.kind {
                ConverterKind::Dac => [
                    ("bound_management", c.bound_management.is_some()),
                    ("max_bm_factor", c.max_bm_factor.is_some()),
                    ("max_bm_res", c.max_bm_res.is_some()),
                ],
                ConverterKind::Adc => [
                    ("noise_management", c.noise_management.is_some()),
                    ("nm_thres", c.nm_thres.is_some()),
                    ("", false),
                ],
            };
            if let Some((k, _)) = wrong_kind.iter().find(|(_, set)| *set) {
                return Err(NetlistError::at(
                    format!("{path}.{k}"),
                    format!(
                        "`{k}` is an option of {} (noise management scales DAC inputs, bound \
                         management re-reads when the ADC saturates)",
                        if c.kind == ConverterKind::Dac {
                            "ADCs, not DACs"
                        } else {
                            "DACs, not ADCs"
                        }
                    ),
                ));
            }
            if let Some(v) = c.nm_thres
                && !(v >= 0.0 && v.is_finite())
            {
                return Err(NetlistError::at(
                    format!("{path}.nm_thres"),
                    format!("out-of-range parameter: {v} (must be finite and ≥ 0)"),
                ));
            }
            if c.max_bm_factor == Some(0) {
                return Err(NetlistError::at(
                    format!("{path}.max_bm_factor"),
                    "out-of-range parameter: 0 (must be ≥ 1)",
                ));
            }
            if let Some(v) = c.max_bm_res
                && !(v > 0.0 && v.is_finite())
            {
                return Err(NetlistError::at(
                    format!("{path}.max_bm_res"),
                    format!("out-of-range parameter: {v} (must be finite and > 0)"),
                ));
            }
        }
        for (i, p) in self.pools.iter().enumerate() {
            let path = format!("$.pools[{i}]");
            claim(&p.name, path.clone())?;
            for (k, v) in [("kernel", p.kernel), ("stride", p.stride)] {
                if v == 0 {
                    return Err(NetlistError::at(
                        format!("{path}.{k}"),
                        "out-of-range parameter: 0 (must be ≥ 1)",
                    ));
                }
            }
        }
        for (i, a) in self.arrays.iter().enumerate() {
            claim(&a.name, format!("$.arrays[{i}]"))?;
        }
        if self.populations.is_empty() {
            return Err(NetlistError::at(
                "$.populations",
                "at least one population is needed",
            ));
        }
        if self.dynamics.t1 == 0 {
            return Err(NetlistError::at(
                "$.dynamics.t1",
                "out-of-range parameter: 0 (must be ≥ 1)",
            ));
        }
        // Readout.
        let n_dyn = match &self.dynamics.readout {
            None => self.arrays.len(),
            Some(r) => {
                let Some(k) = self.arrays.iter().position(|a| &a.name == r) else {
                    return Err(NetlistError::at(
                        "$.dynamics.readout",
                        format!("dangling net: no array named `{r}`"),
                    ));
                };
                if k + 1 != self.arrays.len() {
                    return Err(NetlistError::at(
                        "$.dynamics.readout",
                        "the readout must be the last array",
                    ));
                }
                self.arrays.len() - 1
            }
        };
        if n_dyn != self.populations.len() {
            return Err(NetlistError::at(
                "$.arrays",
                format!(
                    "{} arrays inside the dynamics for {} populations: each population is driven by exactly one array",
                    n_dyn,
                    self.populations.len()
                ),
            ));
        }
        let mut seen_dense = false;
        for (i, a) in self.arrays.iter().enumerate() {
            let p = format!("$.arrays[{i}]");
            // Layered topology: array k joins net k-1 to population k.
            let want_from = if i == 0 {
                self.input.name.as_str()
            } else {
                self.populations[i - 1].name.as_str()
            };
            if self.net_shape(&a.from).is_none() {
                return Err(NetlistError::at(
                    format!("{p}.from"),
                    format!(
                        "dangling net `{}`: no input port or population of that name",
                        a.from
                    ),
                ));
            }
            if a.from != want_from {
                return Err(NetlistError::at(
                    format!("{p}.from"),
                    format!(
                        "array {i} must be driven by `{want_from}` (layered network), got `{}`",
                        a.from
                    ),
                ));
            }
            let want_to = if i < n_dyn {
                self.populations[i].name.as_str()
            } else {
                LOGITS
            };
            if a.to != LOGITS && self.net_shape(&a.to).is_none() {
                return Err(NetlistError::at(
                    format!("{p}.to"),
                    format!("dangling net `{}`: no population of that name", a.to),
                ));
            }
            if a.to != want_to {
                return Err(NetlistError::at(
                    format!("{p}.to"),
                    format!("array {i} must drive `{want_to}`, got `{}`", a.to),
                ));
            }
            if !self.devices.contains_key(&a.device) {
                return Err(NetlistError::at(
                    format!("{p}.device"),
                    format!("dangling reference: no device `{}` in $.devices", a.device),
                ));
            }
            for (dir, rp) in [("forward", &a.forward), ("transposed", &a.transposed)] {
                for (k, want, name) in [
                    ("dac", ConverterKind::Dac, &rp.dac),
                    ("adc", ConverterKind::Adc, &rp.adc),
                ] {
                    if let Some(n) = name {
                        match self.converter(n) {
                            None => {
                                return Err(NetlistError::at(
                                    format!("{p}.{dir}.{k}"),
                                    format!("dangling reference: no converter `{n}`"),
                                ));
                            }
                            Some(c) if c.kind != want => {
                                return Err(NetlistError::at(
                                    format!("{p}.{dir}.{k}"),
                                    format!("converter `{n}` is a {:?}, a {k} is needed", c.kind),
                                ));
                            }
                            _ => {}
                        }
                    }
                }
            }
            if a.tile.rows == 0
                || a.tile.cols == 0
                || a.tile.rows > 1 << 20
                || a.tile.cols > 1 << 20
            {
                return Err(NetlistError::at(
                    format!("{p}.tile"),
                    format!(
                        "out-of-range parameter: {}x{} (each in 1..=2^20)",
                        a.tile.rows, a.tile.cols
                    ),
                ));
            }
            let src = self.net_shape(&a.from).expect("checked");
            match a.geometry {
                Geometry::Dense => {
                    seen_dense = true;
                    if a.pool.is_some() {
                        return Err(NetlistError::at(
                            format!("{p}.pool"),
                            "pooling is only supported after conv arrays",
                        ));
                    }
                    if a.to != LOGITS {
                        let dst = self.net_shape(&a.to).expect("checked");
                        if dst.len() != 1 {
                            return Err(NetlistError::at(
                                format!("{p}.to"),
                                format!(
                                    "shape mismatch: a dense array drives a flat population, `{}` has shape {dst:?}",
                                    a.to
                                ),
                            ));
                        }
                    }
                }
                Geometry::Conv {
                    kernel,
                    stride,
                    padding: _,
                } => {
                    if seen_dense {
                        return Err(NetlistError::at(
                            format!("{p}.geometry"),
                            "conv arrays must come before every dense array",
                        ));
                    }
                    if kernel == 0 || stride == 0 {
                        return Err(NetlistError::at(
                            format!("{p}.geometry"),
                            "out-of-range parameter: kernel and stride must be ≥ 1",
                        ));
                    }
                    if src.len() != 3 {
                        return Err(NetlistError::at(
                            format!("{p}.from"),
                            format!(
                                "shape mismatch: a conv array reads a [C, H, W] net, `{}` has shape {src:?}",
                                a.from
                            ),
                        ));
                    }
                    if a.to == LOGITS {
                        return Err(NetlistError::at(
                            format!("{p}.geometry"),
                            "the readout must be dense",
                        ));
                    }
                    let dst = self.net_shape(&a.to).expect("checked");
                    let cp = self.conv_params(i).expect("conv");
                    let (ho, wo) = cp
                        .output_hw("netlist", (src[1], src[2]), (kernel, kernel))
                        .map_err(|e| {
                            NetlistError::at(
                                format!("{p}.geometry"),
                                format!("out-of-range parameter: {e}"),
                            )
                        })?;
                    let (hp, wp) = match &a.pool {
                        None => (ho, wo),
                        Some(name) => {
                            let pp = self.pool_of(i).ok_or_else(|| {
                                NetlistError::at(
                                    format!("{p}.pool"),
                                    format!("dangling reference: no pool `{name}`"),
                                )
                            })?;
                            pp.params().output_hw("netlist", (ho, wo)).map_err(|e| {
                                NetlistError::at(
                                    format!("{p}.pool"),
                                    format!("out-of-range parameter: {e}"),
                                )
                            })?
                        }
                    };
                    if dst.len() != 3 || dst[1] != hp || dst[2] != wp {
                        return Err(NetlistError::at(
                            format!("{p}.to"),
                            format!(
                                "shape mismatch: conv output (after pooling) is [C, {hp}, {wp}], population `{}` has shape {dst:?}",
                                a.to
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Human-readable summary (one line per array), for `epsim netlist check`. Weight shapes of
    /// arrays whose tensors live in files are shown as derived from the nets (see
    /// [`Loaded::summary`] for the loaded shapes).
    pub fn summary(&self) -> String {
        self.summary_with(&|i| self.weight_shape(i).unwrap_or_default())
    }

    fn summary_with(&self, shape_of: &dyn Fn(usize) -> Vec<usize>) -> String {
        let mut s = format!(
            "netlist `{}` (format {}): input {} {:?}, {} populations, {} arrays, {} converters, {} pools, {} devices; T1 {}\n",
            self.name,
            self.format_version,
            self.input.name,
            self.input.shape,
            self.populations.len(),
            self.arrays.len(),
            self.converters.len(),
            self.pools.len(),
            self.devices.len(),
            self.dynamics.t1
        );
        for (i, a) in self.arrays.iter().enumerate() {
            let shape = shape_of(i);
            let out = shape.first().copied().unwrap_or(0);
            let inp: usize = shape.iter().skip(1).product();
            let t = tiles(out, inp, a.tile);
            s += &format!(
                "  array {} : {} -> {} {:?} weight {:?}, {} tile(s) of <= {}x{}, device {}\n",
                a.name,
                a.from,
                a.to,
                a.geometry,
                shape,
                t.len(),
                a.tile.rows,
                a.tile.cols,
                a.device
            );
        }
        s
    }
}

impl Loaded {
    /// Human-readable summary with the loaded weight shapes.
    pub fn summary(&self) -> String {
        self.netlist
            .summary_with(&|i| self.weights[i].shape().to_vec())
    }
}

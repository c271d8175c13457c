//! Checkpoints in safetensors, as bytes (files are the caller's business).
//!
//! Tensors are named as the reference PyTorch code names them — `synapses.{i}.weight`,
//! `synapses.{i}.bias` — in PyTorch layouts; the model spec is JSON under the metadata key
//! `epsim.spec`. A training checkpoint adds the optimizer state (`optimizer.{j}.buf1|buf2`) and a
//! JSON training state under `epsim.train`; loading a model ignores those extras, so a training
//! checkpoint is also a model file. A plain PyTorch state dict saved with safetensors loads too, when
//! the spec is given separately.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sim::{Error, Result, Tensor};

use crate::spec::ModelSpec;

/// Metadata key of the model spec.
pub const SPEC_KEY: &str = "epsim.spec";
/// Metadata key of the training state.
pub const TRAIN_KEY: &str = "epsim.train";
/// Metadata key of the per-tensor checksums (JSON: name → FNV-1a 64 of the stored bytes, hex),
/// written with every file and checked on reading when present (PyTorch's files have none).
pub const CHECKSUM_KEY: &str = "epsim.checksums";

/// FNV-1a 64 of a tensor's stored bytes, as 16 hex digits.
fn checksum(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A set of named host tensors plus string metadata: the content of one safetensors file.
#[derive(Debug, Clone, Default)]
pub struct TensorFile {
    /// Tensors by name.
    pub tensors: Vec<(String, Tensor)>,
    /// Metadata.
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Serialize to safetensors bytes (f32, little endian).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bufs: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .tensors
            .iter()
            .map(|(n, t)| {
                let bytes: Vec<u8> = t
                    .as_standard_layout()
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect();
                (n.clone(), bytes, t.shape().to_vec())
            })
            .collect();
        let views = bufs
            .iter()
            .map(|(n, b, s)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Other(format!("safetensors: {e}")))?;
        let mut meta = self.metadata.clone();
        let sums: std::collections::BTreeMap<&str, String> = bufs
            .iter()
            .map(|(n, b, _)| (n.as_str(), checksum(b)))
            .collect();
        meta.insert(
            CHECKSUM_KEY.into(),
            serde_json::to_string(&sums).map_err(|e| Error::Other(format!("checksums: {e}")))?,
        );
        let meta = Some(meta);
        let bytes = safetensors::serialize(views, meta)
            .map_err(|e| Error::Other(format!("safetensors: {e}")))?;
        canonical_header(bytes)
    }

    /// Parse safetensors bytes. Only f32 tensors are accepted (f64/f16/bf16 are converted to f32).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::Other(format!("not a valid safetensors file: {e}")))?;
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Other(format!("not a valid safetensors file: {e}")))?;
        let mut metadata = meta.metadata().clone().unwrap_or_default();
        if !metadata.contains_key(CHECKSUM_KEY) && metadata.contains_key(SPEC_KEY) {
            tracing::info!(
                "an epsim file written before checksums: its tensor data is not integrity-checked (save it again to add them)"
            );
        }
        let sums: Option<HashMap<String, String>> = metadata
            .remove(CHECKSUM_KEY)
            .map(|j| {
                serde_json::from_str(&j).map_err(|e| {
                    Error::Other(format!(
                        "metadata {CHECKSUM_KEY} is not a map of checksums: {e}"
                    ))
                })
            })
            .transpose()?;
        let mut tensors = Vec::new();
        let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
        names.sort();
        for name in names {
            let v = st
                .tensor(&name)
                .map_err(|e| Error::Other(format!("tensor {name}: {e}")))?;
            let data = v.data();
            if let Some(sums) = &sums {
                let got = checksum(data);
                match sums.get(&name) {
                    Some(want) if *want == got => {}
                    Some(want) => {
                        return Err(Error::Other(format!(
                            "tensor {name}: its data is corrupt (checksum {got}, the file records {want})"
                        )));
                    }
                    None => {
                        return Err(Error::Other(format!(
                            "tensor {name}: not among the file's recorded checksums (a tensor added or renamed after writing?)"
                        )));
                    }
                }
            }
            let vals: Vec<f32> = match v.dtype() {
                Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F64 => data
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                    .collect(),
                other => {
                    return Err(Error::Other(format!(
                        "tensor {name}: dtype {other:?} is not supported (use float32)"
                    )));
                }
            };
            tensors.push((name, sim::tensor(v.shape(), vals)?));
        }
        Ok(TensorFile { tensors, metadata })
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as i32;
    let mant = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        // zero or subnormal: mant · 2⁻²⁴
        let v = mant as f32 * (1.0 / 16_777_216.0);
        return if sign != 0 { -v } else { v };
    } else if exp == 31 {
        sign | 0x7f80_0000 | (mant << 13)
    } else {
        sign | (((exp - 15 + 127) as u32) << 23) | (mant << 13)
    };
    f32::from_bits(bits)
}

/// Model parameters `(spec, weights, biases)` from a tensor file. The spec comes from the metadata,
/// or from `spec_override` (required for a plain PyTorch state dict).
pub fn model_from_file(
    f: &TensorFile,
    spec_override: Option<ModelSpec>,
) -> Result<(ModelSpec, Vec<Tensor>, Vec<Tensor>)> {
    let spec = match spec_override {
        Some(s) => s,
        None => {
            let j = f.metadata.get(SPEC_KEY).ok_or_else(|| {
                Error::Other(format!("no model spec in the metadata (key {SPEC_KEY}); for a plain PyTorch state dict pass the spec separately (--spec)"))
            })?;
            serde_json::from_str(j).map_err(|e| {
                Error::Other(format!(
                    "metadata {SPEC_KEY} is not a valid model spec: {e}"
                ))
            })?
        }
    };
    let geom = spec.geometry()?;
    let mut ws = Vec::new();
    let mut bs = Vec::new();
    for i in 0..geom.weight_shapes.len() {
        for (suffix, out) in [("weight", &mut ws), ("bias", &mut bs)] {
            let name = format!("synapses.{i}.{suffix}");
            let t = f.get(&name).ok_or_else(|| {
                Error::Other(format!(
                    "tensor {name} is missing (the spec has {} synapses)",
                    geom.weight_shapes.len()
                ))
            })?;
            out.push(t.clone());
        }
    }
    Ok((spec, ws, bs))
}

/// A tensor file holding a model (spec in metadata).
pub fn model_to_file(
    spec: &ModelSpec,
    weights: &[Tensor],
    biases: &[Tensor],
) -> Result<TensorFile> {
    let mut f = TensorFile::default();
    for (i, (w, b)) in weights.iter().zip(biases).enumerate() {
        f.tensors.push((format!("synapses.{i}.weight"), w.clone()));
        f.tensors.push((format!("synapses.{i}.bias"), b.clone()));
    }
    f.metadata.insert(
        SPEC_KEY.to_string(),
        serde_json::to_string(spec).map_err(|e| Error::Other(e.to_string()))?,
    );
    Ok(f)
}

/// Safetensors bytes with the header's JSON keys sorted (the crate writes the metadata map in hash
/// order, so the same model gave different bytes run to run); tensor data and offsets unchanged,
/// the header padded with spaces to keep the data 8-byte aligned, as the format allows.
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>> {
    let bad = |m: &str| Error::Other(format!("safetensors: {m}"));
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or_else(|| bad("short file"))?;
    let head = bytes.get(8..8 + n).ok_or_else(|| bad("short header"))?;
    let v: serde_json::Value =
        serde_json::from_slice(head).map_err(|e| bad(&format!("header: {e}")))?;
    let mut h = serde_json::to_vec(&v).map_err(|e| bad(&format!("header: {e}")))?;
    while (8 + h.len()) % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_preserves_tensors_and_spec() {
        let spec = ModelSpec::cifar10_reference();
        let geom = spec.geometry().unwrap();
        let ws: Vec<Tensor> = geom
            .weight_shapes
            .iter()
            .enumerate()
            .map(|(i, s)| sim::gradcheck::test_tensor(s, i as u64, 0.1))
            .collect();
        let bs: Vec<Tensor> = geom
            .weight_shapes
            .iter()
            .enumerate()
            .map(|(i, s)| sim::gradcheck::test_tensor(&s[..1], 100 + i as u64, 0.1))
            .collect();
        let bytes = model_to_file(&spec, &ws, &bs).unwrap().to_bytes().unwrap();
        let back = TensorFile::from_bytes(&bytes).unwrap();
        let (s2, w2, b2) = model_from_file(&back, None).unwrap();
        assert_eq!(s2, spec);
        assert_eq!(w2, ws);
        assert_eq!(b2, bs);
    }

    #[test]
    fn garbage_and_missing_tensors_are_errors() {
        assert!(TensorFile::from_bytes(b"not a safetensors file").is_err());
        let f = TensorFile::default();
        let e = model_from_file(&f, Some(ModelSpec::cifar10_reference()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("synapses.0.weight"), "{e}");
        let e = model_from_file(&f, None).unwrap_err().to_string();
        assert!(e.contains("--spec"), "{e}");
    }

    #[test]
    fn f16_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
    }

    #[test]
    fn the_same_file_gives_the_same_bytes_whatever_the_metadata_map_order() {
        let t = sim::tensor(&[2, 3], vec![1.0, -2.0, 3.5, 0.0, 5.0, 6.0]).unwrap();
        let make = || TensorFile {
            tensors: vec![("b".into(), t.clone()), ("a".into(), t.clone())],
            // A fresh map (fresh hash seed) each time.
            metadata: (0..12)
                .map(|i| (format!("key{i}"), format!("v{i}")))
                .collect(),
        };
        let first = make().to_bytes().unwrap();
        for _ in 0..20 {
            assert_eq!(make().to_bytes().unwrap(), first);
        }
        assert_eq!(
            (8 + u64::from_le_bytes(first[..8].try_into().unwrap())) % 8,
            0
        );
        let back = TensorFile::from_bytes(&first).unwrap();
        assert_eq!(back.metadata, make().metadata);
        let a = back.tensors.iter().find(|(n, _)| n == "a").unwrap();
        assert_eq!(a.1, t);
    }

    #[test]
    fn flipped_bytes_in_tensor_data_are_named_and_files_without_checksums_load() {
        let w = sim::gradcheck::test_tensor(&[8, 16], 1, 1.0);
        let b = sim::gradcheck::test_tensor(&[8], 2, 1.0);
        let f = TensorFile {
            tensors: vec![("w".into(), w.clone()), ("b".into(), b.clone())],
            metadata: HashMap::new(),
        };
        let bytes = f.to_bytes().unwrap();
        assert!(TensorFile::from_bytes(&bytes).is_ok());
        // The data section is the last 4·(128 + 8) bytes; "b" is stored before "w" (sorted).
        let n = bytes.len();
        let mut bad = bytes.clone();
        bad[n - 100] ^= 0x5a;
        let e = TensorFile::from_bytes(&bad).unwrap_err().to_string();
        assert!(e.contains("tensor w") && e.contains("corrupt"), "{e}");
        let mut bad = bytes.clone();
        bad[n - 4 * 136 + 3] ^= 0x01;
        let e = TensorFile::from_bytes(&bad).unwrap_err().to_string();
        assert!(e.contains("tensor b") && e.contains("corrupt"), "{e}");
        // A file written elsewhere (a PyTorch state dict) has no checksums and loads as it is.
        let views = vec![(
            "w".to_string(),
            TensorView::new(Dtype::F32, vec![8, 16], &bytes[n - 4 * 128..]).unwrap(),
        )];
        let plain = safetensors::serialize(views, None).unwrap();
        let back = TensorFile::from_bytes(&plain).unwrap();
        assert_eq!(back.get("w").unwrap(), &w);
        assert!(back.metadata.is_empty());
    }
}

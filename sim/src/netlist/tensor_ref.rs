//! Tensors referenced by a netlist: inline JSON (`{"shape": [...], "data": [...]}`) or a `.npy`
//! file (`{"npy": "weights/conv1.npy"}`, float32, resolved against the netlist's directory).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{NResult, NetlistError};
use crate::Tensor;

/// A tensor stored inline or in a `.npy` file next to the netlist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TensorRef {
    /// Inline values, row-major. `null` entries (how JSON writers spell NaN/inf) are rejected.
    Inline {
        /// Shape.
        shape: Vec<usize>,
        /// Values, row-major.
        data: Vec<Option<f32>>,
    },
    /// A float32 `.npy` file, relative to the netlist's directory (or absolute).
    File {
        /// Path of the file.
        npy: String,
    },
}

impl TensorRef {
    /// An inline reference holding `t`.
    pub fn inline(t: &Tensor) -> Self {
        TensorRef::Inline {
            shape: t.shape().to_vec(),
            data: t.iter().map(|&v| Some(v)).collect(),
        }
    }

    /// The leading dimension when it is known without reading a file.
    pub fn leading_dim(&self) -> Option<usize> {
        match self {
            TensorRef::Inline { shape, .. } => shape.first().copied(),
            TensorRef::File { .. } => None,
        }
    }

    /// Load and check finiteness; errors name `path` (the JSON path of this reference).
    pub fn load(&self, dir: &Path, path: &str) -> NResult<Tensor> {
        let t = match self {
            TensorRef::Inline { shape, data } => {
                let n: usize = shape.iter().product();
                if n != data.len() {
                    return Err(NetlistError::at(
                        format!("{path}.data"),
                        format!(
                            "shape mismatch: shape {shape:?} holds {n} values, data has {}",
                            data.len()
                        ),
                    ));
                }
                let mut v = Vec::with_capacity(n);
                for (i, x) in data.iter().enumerate() {
                    match x {
                        Some(x) => v.push(*x),
                        None => {
                            return Err(NetlistError::at(
                                format!("{path}.data[{i}]"),
                                "null (NaN or infinite) value",
                            ));
                        }
                    }
                }
                crate::tensor(shape, v).map_err(|e| NetlistError::at(path, e.to_string()))?
            }
            TensorRef::File { npy } => {
                use ndarray_npy::ReadNpyExt;
                let p = dir.join(npy);
                let f = std::fs::File::open(&p).map_err(|e| {
                    NetlistError::at(
                        format!("{path}.npy"),
                        format!("cannot open {}: {e}", p.display()),
                    )
                })?;
                let a = ndarray::ArrayD::<f32>::read_npy(f).map_err(|e| {
                    NetlistError::at(
                        format!("{path}.npy"),
                        format!("{}: not a float32 .npy array: {e}", p.display()),
                    )
                })?;
                a.as_standard_layout().into_owned()
            }
        };
        if let Some((i, v)) = t.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(NetlistError::at(
                path,
                format!("non-finite value {v} at flat index {i}"),
            ));
        }
        Ok(t)
    }
}

//! The netlist IR: a JSON description of an energy-based network as hardware parts — neuron
//! populations, crossbar arrays (conv or dense geometry, tiled onto physical arrays of at most
//! R×C cells), converters (DAC/ADC), pooling parts and the dynamics — with validation whose errors
//! name the file and the JSON path of the offending value. The format is documented in
//! `docs/netlist.md`.
//!
//! This module is plain data plus checks: device physics (what a `device` entry means, how
//! conductances are programmed and read) lives in the `devices` crate and the realization of a
//! netlist as a settling network (`ep::substrate`) lives above it, because dependencies point down
//! (`sim` ← `devices` ← `ep`). Device entries are therefore kept here as opaque JSON values that
//! the realizing layer validates, again with JSON paths.

//!
//! Files: [`types`] (the format's parts), [`validate`] (reading, checks, summaries),
//! `tensor_ref` (inline or `.npy` tensors), `tiling` (tiles of a matrix on physical arrays).

pub mod error;
mod tensor_ref;
mod tiling;
pub mod types;
pub mod validate;

pub use error::{NResult, NetlistError};
pub use tensor_ref::TensorRef;
pub use tiling::{Tile, tiles};
pub use types::*;

#[cfg(test)]
mod tests;

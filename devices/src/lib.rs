//! # devices — physical part models
//!
//! Role: crossbar cells (ideal, RRAM, PCM, ECRAM-like), neurons (analog hard-sigmoid, spiking),
//! converters (DAC/ADC), interconnect (IR drop), each a plain serde struct with documented units, and
//! named presets in TOML citing their sources.
//!
//! Dependencies: `sim` only (tensors, random streams).

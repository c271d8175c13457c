//! Errors of the engine. Every user-reachable failure (a shape that does not fit an op, a bad
//! parameter) is an `Error` naming the op and the shapes involved, never a panic.

use thiserror::Error;

/// Result alias used across `sim`.
pub type Result<T> = std::result::Result<T, Error>;

/// An engine error.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// Operands whose shapes do not fit the op.
    #[error("{op}: shape mismatch: {detail}")]
    Shape {
        /// The op that refused the operands, e.g. `conv2d`.
        op: &'static str,
        /// What was expected and what was given, with the shapes.
        detail: String,
    },
    /// A parameter outside its domain (zero stride, kernel larger than the padded input, ...).
    #[error("{op}: invalid parameter: {detail}")]
    Param {
        /// The op that refused the parameter.
        op: &'static str,
        /// Which parameter and why.
        detail: String,
    },
    /// NaN or infinity where finite values are required.
    #[error("{what}: non-finite value: {detail}")]
    NonFinite {
        /// Where it was found.
        what: String,
        /// Details (index, value).
        detail: String,
    },
    /// Anything else the engine cannot do (e.g. a backend that lacks a device).
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Shorthand for a shape error.
    pub fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op,
            detail: detail.into(),
        }
    }
    /// Shorthand for a parameter error.
    pub fn param(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Param {
            op,
            detail: detail.into(),
        }
    }
}

//! Netlist errors: what is wrong, at which JSON path, in which file.

use std::fmt;

/// A netlist error: the file (or `<memory>`), the JSON path (`$.arrays[2].weight`) and what is
/// wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct NetlistError {
    /// File the netlist came from.
    pub file: String,
    /// JSON path of the offending value (`$` is the root).
    pub path: String,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for NetlistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.path, self.msg)
    }
}

impl std::error::Error for NetlistError {}

impl NetlistError {
    /// An error at `path` (the file is filled in by [`super::Netlist::validate`] / [`super::Netlist::from_json`]).
    pub fn at(path: impl Into<String>, msg: impl Into<String>) -> Self {
        NetlistError {
            file: "<memory>".into(),
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub(crate) fn in_file(mut self, file: &str) -> Self {
        self.file = file.to_string();
        self
    }
}

/// Result of netlist operations.
pub type NResult<T> = std::result::Result<T, NetlistError>;

//! Parameter checks shared by the part models: every failure is a `sim::Error::Param` naming the
//! op (the part), the field and the problem.

use sim::{Error, Result};

/// `value` must be finite and within `[lo, hi]` (either end may be infinite).
pub(crate) fn range(op: &'static str, field: &str, value: f64, lo: f64, hi: f64) -> Result<()> {
    if value.is_nan() || !(lo..=hi).contains(&value) {
        return Err(Error::param(
            op,
            format!("`{field}` = {value} is outside the allowed range [{lo}, {hi}]"),
        ));
    }
    Ok(())
}

/// `value` must be finite and ≥ 0.
pub(crate) fn non_negative(op: &'static str, field: &str, value: f64) -> Result<()> {
    if !value.is_finite() || value < 0.0 {
        return Err(Error::param(
            op,
            format!("`{field}` = {value} must be finite and ≥ 0"),
        ));
    }
    Ok(())
}

/// `value` must be finite and > 0.
pub(crate) fn positive(op: &'static str, field: &str, value: f64) -> Result<()> {
    if !value.is_finite() || value <= 0.0 {
        return Err(Error::param(
            op,
            format!("`{field}` = {value} must be finite and > 0"),
        ));
    }
    Ok(())
}

/// `value` must be > 0 (infinity allowed, meaning "unbounded").
pub(crate) fn positive_or_inf(op: &'static str, field: &str, value: f64) -> Result<()> {
    if value.is_nan() || value <= 0.0 {
        return Err(Error::param(
            op,
            format!("`{field}` = {value} must be > 0 (or inf for unbounded)"),
        ));
    }
    Ok(())
}

/// A probability in [0, 1].
pub(crate) fn probability(op: &'static str, field: &str, value: f64) -> Result<()> {
    range(op, field, value, 0.0, 1.0)
}

/// Shape check for a flat `rows × cols` buffer.
pub(crate) fn len(
    op: &'static str,
    what: &str,
    got: usize,
    rows: usize,
    cols: usize,
) -> Result<()> {
    if got != rows * cols {
        return Err(Error::shape(
            op,
            format!(
                "{what} has {got} elements, expected {rows}×{cols} = {}",
                rows * cols
            ),
        ));
    }
    Ok(())
}

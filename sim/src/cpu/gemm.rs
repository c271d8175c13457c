//! SGEMM on row-major slices, over the `gemm` crate (faer's GEMM, 0.19).
//!
//! Determinism: `gemm` splits the *output* among threads and reduces over `k` in the same blocked
//! order whatever the thread count (its `kc` blocking depends only on m, n, k), so one output
//! element is the same chain of FMAs for 1, 2 or n threads. `tests/conv_linear.rs` checks this bit
//! for bit with 1- and 2-thread rayon pools.

use crate::error::{Error, Result};

/// Transpose flags and sizes of one GEMM call: C[m,n] = alpha·op(A)[m,k]·op(B)[k,n] + beta·C.
#[derive(Debug, Clone, Copy)]
pub struct Gemm {
    /// Rows of C.
    pub m: usize,
    /// Columns of C.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// A is stored as [k, m] (row-major) when set.
    pub trans_a: bool,
    /// B is stored as [n, k] (row-major) when set.
    pub trans_b: bool,
}

/// How a GEMM call may use threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Par {
    /// Single-threaded (the caller is already parallel over independent GEMMs).
    Seq,
    /// Split the output over the current rayon pool.
    Pool,
}

/// C = alpha·op(A)·op(B) + beta·C on row-major slices, using every thread of the current rayon pool.
///
/// When `beta == 0`, C is not read (NaNs in it do not propagate), as in BLAS. Slices shorter than the
/// sizes require give [`Error::Shape`]; longer slices are fine (only the prefix is used).
pub fn sgemm(g: Gemm, alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) -> Result<()> {
    sgemm_par(g, alpha, a, b, beta, c, Par::Pool)
}

/// [`sgemm`] with an explicit threading choice (results are identical either way).
pub(crate) fn sgemm_par(
    g: Gemm,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    par: Par,
) -> Result<()> {
    let Gemm {
        m,
        n,
        k,
        trans_a,
        trans_b,
    } = g;
    let need = |r: usize, s: usize| r.checked_mul(s);
    let (na, nb, nc) = match (need(m, k), need(k, n), need(m, n)) {
        (Some(x), Some(y), Some(z)) => (x, y, z),
        _ => return Err(Error::shape("sgemm", format!("sizes overflow: {g:?}"))),
    };
    if a.len() < na || b.len() < nb || c.len() < nc {
        return Err(Error::shape(
            "sgemm",
            format!(
                "{g:?} needs A ≥ {na}, B ≥ {nb}, C ≥ {nc} elements; got A {}, B {}, C {}",
                a.len(),
                b.len(),
                c.len()
            ),
        ));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let c = &mut c[..nc];
    if k == 0 {
        if beta == 0.0 {
            c.fill(0.0);
        } else {
            c.iter_mut().for_each(|v| *v *= beta);
        }
        return Ok(());
    }
    // Strides (column stride, row stride) of op(A)[m,k] and op(B)[k,n] in their storage.
    let (a_cs, a_rs) = if trans_a { (m, 1) } else { (1, k) };
    let (b_cs, b_rs) = if trans_b { (k, 1) } else { (1, n) };
    let threads = rayon::current_num_threads();
    let parallelism = match par {
        Par::Pool if threads > 1 => gemm::Parallelism::Rayon(threads),
        _ => gemm::Parallelism::None,
    };
    // SAFETY: the slices hold at least m·k, k·n and m·n elements (checked above), and every index
    // the strides reach is below those sizes; C is exclusively borrowed and does not alias A or B.
    // The `gemm` crate computes dst := alpha_g·dst + beta_g·lhs·rhs, reading dst only if
    // `read_dst`; so our (alpha, beta) map to its (beta, alpha).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

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
pub enum Par {
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
pub fn sgemm_par(
    g: Gemm,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    par: Par,
) -> Result<()> {
    let lda = if g.trans_a { g.m } else { g.k };
    let ldb = if g.trans_b { g.k } else { g.n };
    sgemm_ld(g, alpha, (a, lda), (b, ldb), beta, (c, g.n), par)
}

/// Elements a row-major `[rows, cols]` matrix with row stride `ld` spans (`None` on overflow).
fn span(rows: usize, cols: usize, ld: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1).checked_mul(ld)?.checked_add(cols)
}

/// [`sgemm_par`] on strided operands: each of A, B, C is `(slice, leading dimension)`, the
/// leading dimension being the distance between consecutive stored rows (≥ the stored row
/// length). A is stored `[m, k]` (or `[k, m]` if `trans_a`), B `[k, n]` (or `[n, k]`), C `[m, n]`.
/// Used to run GEMMs on interleaved sub-matrices without copying them out. Strides too small for
/// the row length, or slices too short for the strided extent, give [`Error::Shape`].
pub(crate) fn sgemm_ld(
    g: Gemm,
    alpha: f32,
    (a, lda): (&[f32], usize),
    (b, ldb): (&[f32], usize),
    beta: f32,
    (c, ldc): (&mut [f32], usize),
    par: Par,
) -> Result<()> {
    let Gemm {
        m,
        n,
        k,
        trans_a,
        trans_b,
    } = g;
    // Stored shapes (rows, cols) of A and B.
    let (ar, ac) = if trans_a { (k, m) } else { (m, k) };
    let (br, bc) = if trans_b { (n, k) } else { (k, n) };
    if m.checked_mul(k).is_none() || k.checked_mul(n).is_none() || m.checked_mul(n).is_none() {
        return Err(Error::shape("sgemm", format!("sizes overflow: {g:?}")));
    }
    if (ar > 1 && lda < ac) || (br > 1 && ldb < bc) || (m > 1 && ldc < n) {
        return Err(Error::shape(
            "sgemm",
            format!("{g:?}: leading dimensions ({lda}, {ldb}, {ldc}) shorter than the rows"),
        ));
    }
    let (na, nb, nc) = match (span(ar, ac, lda), span(br, bc, ldb), span(m, n, ldc)) {
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
    if k == 0 {
        for i in 0..m {
            let row = &mut c[i * ldc..i * ldc + n];
            if beta == 0.0 {
                row.fill(0.0);
            } else {
                row.iter_mut().for_each(|v| *v *= beta);
            }
        }
        return Ok(());
    }
    // Strides (column stride, row stride) of op(A)[m,k] and op(B)[k,n] in their storage.
    let (a_cs, a_rs) = if trans_a { (lda, 1) } else { (1, lda) };
    let (b_cs, b_rs) = if trans_b { (ldb, 1) } else { (1, ldb) };
    let threads = rayon::current_num_threads();
    let parallelism = match par {
        Par::Pool if threads > 1 => gemm::Parallelism::Rayon(threads),
        _ => gemm::Parallelism::None,
    };
    // SAFETY: every index the strides reach lies below the spans checked above (the last stored
    // row starts at (rows − 1)·ld and has `cols` elements); C is exclusively borrowed and does not
    // alias A or B, and its rows do not overlap (ldc ≥ n). The `gemm` crate computes
    // dst := alpha_g·dst + beta_g·lhs·rhs, reading dst only if `read_dst`; so our (alpha, beta)
    // map to its (beta, alpha).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic test values.
    fn vals(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn strided_gemm_matches_naive_and_rejects_short_strides() {
        let (m, n, k) = (5, 7, 4);
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (ar, ac) = if ta { (k, m) } else { (m, k) };
            let (br, bc) = if tb { (n, k) } else { (k, n) };
            let (lda, ldb, ldc) = (ac + 3, bc + 2, n + 5);
            let a = vals((ar - 1) * lda + ac, 1);
            let b = vals((br - 1) * ldb + bc, 2);
            let c0 = vals((m - 1) * ldc + n, 3);
            let mut c = c0.clone();
            let g = Gemm {
                m,
                n,
                k,
                trans_a: ta,
                trans_b: tb,
            };
            sgemm_ld(g, 2.0, (&a, lda), (&b, ldb), 0.5, (&mut c, ldc), Par::Seq).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let mut acc = 0.0f64;
                    for l in 0..k {
                        let av = if ta { a[l * lda + i] } else { a[i * lda + l] };
                        let bv = if tb { b[j * ldb + l] } else { b[l * ldb + j] };
                        acc += av as f64 * bv as f64;
                    }
                    let want = 2.0 * acc + 0.5 * c0[i * ldc + j] as f64;
                    let got = c[i * ldc + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-5,
                        "({ta}, {tb}) [{i},{j}]: {got} vs {want}"
                    );
                }
                // Padding between C's rows is untouched.
                for j in n..ldc.min(c.len() - i * ldc) {
                    assert_eq!(c[i * ldc + j], c0[i * ldc + j]);
                }
            }
            // A stride shorter than a stored row, or a slice one element short, is an error.
            let r = sgemm_ld(
                g,
                1.0,
                (&a, ac - 1),
                (&b, ldb),
                0.0,
                (&mut c, ldc),
                Par::Seq,
            );
            assert!(matches!(r, Err(Error::Shape { .. })));
            let r = sgemm_ld(
                g,
                1.0,
                (&a, lda),
                (&b[1..], ldb),
                0.0,
                (&mut c, ldc),
                Par::Seq,
            );
            assert!(matches!(r, Err(Error::Shape { .. })));
            let mut short = c0[..c0.len() - 1].to_vec();
            let r = sgemm_ld(
                g,
                1.0,
                (&a, lda),
                (&b, ldb),
                0.0,
                (&mut short, ldc),
                Par::Seq,
            );
            assert!(matches!(r, Err(Error::Shape { .. })));
        }
    }
}

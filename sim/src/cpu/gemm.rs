//! SGEMM wrapper over the `gemm` crate. OWNER: conv helper. Placeholder to be replaced.

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

/// C = alpha·op(A)·op(B) + beta·C on row-major slices.
pub fn sgemm(_g: Gemm, _alpha: f32, _a: &[f32], _b: &[f32], _beta: f32, _c: &mut [f32]) {
    todo!("sgemm")
}

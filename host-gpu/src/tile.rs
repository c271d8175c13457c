//! The GEMM output tile, an option of the opened device: the context holds it (`Ctx::gemm_tile`)
//! and the GEMM template (`ops/gemm.rs`) generates its code and grid from it.

/// The output block one workgroup of the GEMM template computes, with 16×16 invocations either
/// way (a property of the opened device: `Gpu::new_with_gemm_tile`). Both give the same bits
/// wherever they split K alike (each output sums its k in the same order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GemmTile {
    /// 64×64 outputs, K in steps of 16: a 4×4 register block per invocation. The default.
    #[default]
    T64,
    /// 128×128 outputs, K in steps of 8: an 8×8 register block per invocation (four 4×4 blocks
    /// 64 rows and columns apart), twice the multiply-adds per shared-memory read of `T64` and a
    /// quarter of the workgroups; for the large GEMMs of the paper net's convolutions.
    T128,
}

impl GemmTile {
    /// 4×4 register blocks per invocation along each axis.
    pub(crate) fn blocks(self) -> usize {
        match self {
            GemmTile::T64 => 1,
            GemmTile::T128 => 2,
        }
    }

    /// Output rows (and columns) of one workgroup.
    pub(crate) fn size(self) -> usize {
        64 * self.blocks()
    }

    /// The K step: the staged tiles hold 256 vec4 slots, one per invocation.
    pub(crate) fn bk(self) -> usize {
        256 * 4 / self.size()
    }
}

//! Per-thread scratch buffers of the CPU kernels (im2col patches, Winograd tiles), reused across
//! calls so the hot loops allocate nothing.

use std::cell::Cell;

type Bufs = (Vec<f32>, Vec<f32>, Vec<f32>);

thread_local! {
    /// Per-thread scratch buffers reused across calls (taken out while in use, so nested use is safe).
    static SCRATCH: Cell<Bufs> = const { Cell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Run `f` with three scratch buffers of exactly `l0`, `l1`, `l2` elements (contents unspecified).
pub(crate) fn with_scratch<R>(
    l0: usize,
    l1: usize,
    l2: usize,
    f: impl FnOnce(&mut [f32], &mut [f32], &mut [f32]) -> R,
) -> R {
    let (mut b0, mut b1, mut b2) = SCRATCH.with(|s| s.take());
    for (b, l) in [(&mut b0, l0), (&mut b1, l1), (&mut b2, l2)] {
        if b.len() < l {
            b.resize(l, 0.0);
        }
    }
    let r = f(&mut b0[..l0], &mut b1[..l1], &mut b2[..l2]);
    SCRATCH.with(|s| s.set((b0, b1, b2)));
    r
}

//! Allocation policy for large tensors.
//!
//! Every op returns a fresh tensor, and the EP dynamics allocate the same large tensors at every
//! step (the paper's CIFAR-10 net at batch 128: 33.5 MB for the second conv layer's output and for
//! its unpooled feedback). glibc serves any block above its mmap threshold — which it never raises
//! past 32 MiB — with a fresh `mmap`, so each such op page-faults its whole output in and `munmap`s
//! it again (with TLB shoot-downs to the other threads). [`keep_freed_memory`] turns that off: large
//! blocks then come from the heap and freed ones are reused by the next step, which is what
//! "buffers reused across steps" amounts to for a functional op set. Results are unaffected.

/// Make the C allocator keep freed large blocks for reuse (glibc: `M_MMAP_MAX = 0`, so no block
/// is served by its own `mmap`, and a 1 GiB trim threshold). Returns whether the policy was
/// applied (false on other platforms, where nothing is changed). Call it once, early, from a
/// binary's `main`; the `epsim` binary and the benchmarks do.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn policy_is_accepted_by_glibc() {
        assert!(super::keep_freed_memory());
        // A block above the old 32 MiB mmap ceiling is still allocated, written and freed.
        let v = vec![1.0f32; 9 << 20];
        assert_eq!(v.iter().sum::<f32>(), (9 << 20) as f32);
    }
}

//! The noisy half of a crossbar read (see the parent module doc): per-read conductance noise, the
//! ADC with its noise, iterative bound management (a saturated (row, block, tile) vector re-read
//! alone with its input divided by r = 2, 4, …) and the sum of the converted partial sums over the
//! blocks; the whole read ([`ReadPlan::read`]) and the grouped conv reads ([`ReadPlan::read_groups`]) built
//! on it. Rows are processed in fixed chunks of [`CHUNK`] in parallel, every draw indexed by (row,
//! element), so the result does not depend on the thread count.

use super::*;

impl ReadPlan {
    /// Per-read noise, ADC and bound management of a read prepared by [`ReadPlan::pre`] on the same
    /// `x`, step `t`: the outputs `[m, n_out]` summed over the blocks (normalized units), with the
    /// tally of (row, block, tile) vector reads, bound-management re-reads and Σ x².
    pub(super) fn finish(
        &self,
        pre: &Pre,
        x: &[f32],
        m: usize,
        s: &Stream,
        t: u64,
    ) -> (Vec<f32>, Tally) {
        self.run(Some(pre), x, m, s, t)
    }

    /// The whole read of the `m` rows of `x` (`[m, n_in]`) at step `t`: [`ReadPlan::pre`] and
    /// [`ReadPlan::finish`] fused chunk by chunk (the same arithmetic, so the same result, without the
    /// full-size intermediate arrays).
    pub(super) fn read(&self, x: &[f32], m: usize, s: &Stream, t: u64) -> (Vec<f32>, Tally) {
        self.run(None, x, m, s, t)
    }

    fn run(&self, pre: Option<&Pre>, x: &[f32], m: usize, s: &Stream, t: u64) -> (Vec<f32>, Tally) {
        let n_out = self.n_out;
        let mut acc = vec![0.0f32; m * n_out];
        if n_out == 0 {
            return (acc, Tally::default());
        }
        let (noise_s, dac_s) = self.streams(s, t);
        let tally = acc
            .par_chunks_mut(CHUNK * n_out)
            .enumerate()
            .map(|(c, ac)| {
                let r0 = c * CHUNK;
                let rows = ac.len() / n_out;
                let ctx = ChunkCtx {
                    pre,
                    x: &x[r0 * self.n_in..(r0 + rows) * self.n_in],
                    r0,
                    s,
                    t,
                    noise_s: &noise_s,
                    dac_s: &dac_s,
                };
                self.chunk(&ctx, ac)
            })
            .reduce(Tally::default, |a, b| a + b);
        (acc, tally)
    }

    /// The round-0 streams of every block: (noise before the ADC, DAC).
    fn streams(&self, s: &Stream, t: u64) -> (Vec<Stream>, Vec<Stream>) {
        let nblk = self.blocks.len();
        let noise_s = (0..nblk)
            .map(|b| round_stream(&s.child("adc"), "noise", b, 0, t))
            .collect();
        let dac_s = (0..nblk).map(|b| round_stream(s, "dac", b, 0, t)).collect();
        (noise_s, dac_s)
    }

    /// [`ReadPlan::finish_chunk`], AVX2 build where the CPU has it.
    #[inline(always)]
    fn chunk(&self, ctx: &ChunkCtx<'_>, ac: &mut [f32]) -> Tally {
        // (An AVX-512 build of the chunk kernel measured 12 % slower here than the AVX2 one.)
        #[cfg(target_arch = "x86_64")]
        if crate::simd::has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
            return unsafe { self.finish_chunk_avx2(ctx, ac) };
        }
        self.finish_chunk(ctx, ac)
    }

    /// The read of `m = groups·per` rows (group `g`: rows `g·per..(g + 1)·per`, e.g. one
    /// sample's conv positions), with the values of [`ReadPlan::read`] (`pre: None`) or [`ReadPlan::finish`]
    /// (`pre` prepared on the same rows), but without the `[m, n_out]` result array: each group is
    /// read in runs of at most [`CHUNK`] rows, in order, and each run's outputs `[rows, n_out]`
    /// (normalized, summed over the blocks) are handed, while in cache, to `sink(i0, acc, og)`
    /// with `i0` the run's first row within the group and `og` the group's equal share of `out`;
    /// groups shorter than [`CHUNK`] are read several at a time (one run, one GEMM per block), the
    /// sink still called once per group. Runs go in parallel; every draw is indexed by (row, element) as in [`ReadPlan::read`], so
    /// the result depends neither on the thread count nor on the run split. Returns the tally.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn read_groups(
        &self,
        pre: Option<&Pre>,
        rows: Rows<'_>,
        groups: usize,
        per: usize,
        s: &Stream,
        t: u64,
        out: &mut [f32],
        sink: &Sink<'_>,
    ) -> Tally {
        let (n_in, n_out) = (self.n_in, self.n_out);
        if n_out == 0 || groups == 0 || per == 0 || out.is_empty() {
            return Tally::default();
        }
        let (noise_s, dac_s) = self.streams(s, t);
        // Short groups are read several at a time (one run of up to CHUNK rows), long ones in
        // runs of CHUNK rows.
        let gpr = (CHUNK / per).max(1);
        let run = CHUNK.min(per) * gpr;
        let share = out.len() / groups;
        out.par_chunks_mut(share * gpr)
            .enumerate()
            .map(|(sg, osg)| {
                let mut ac = take_buf(run * n_out);
                let mut xb = match rows {
                    Rows::All(_) => Buf::empty(),
                    Rows::Fill(_) => take_buf(run * n_in),
                };
                let ng = osg.len() / share;
                let (first, last) = (sg * gpr * per, (sg * gpr + ng) * per);
                let mut tot = Tally::default();
                let mut r0 = first;
                while r0 < last {
                    // Within one group, or whole groups.
                    let nr = if gpr > 1 {
                        last - r0
                    } else {
                        run.min(per - r0 % per)
                    };
                    if let Rows::Fill(f) = rows {
                        f(r0, &mut xb[..nr * n_in]);
                    }
                    let x = match rows {
                        Rows::All(x) => &x[r0 * n_in..(r0 + nr) * n_in],
                        Rows::Fill(_) => &xb[..nr * n_in],
                    };
                    let acc = &mut ac[..nr * n_out];
                    let ctx = ChunkCtx {
                        pre,
                        x,
                        r0,
                        s,
                        t,
                        noise_s: &noise_s,
                        dac_s: &dac_s,
                    };
                    tot = tot + self.chunk(&ctx, acc);
                    // Hand each group's part of the run to the sink.
                    let mut r = r0;
                    while r < r0 + nr {
                        let (g, i0) = (r / per, r % per);
                        let k = (per - i0).min(r0 + nr - r);
                        let og = &mut osg[(g - sg * gpr) * share..(g - sg * gpr + 1) * share];
                        sink(i0, &acc[(r - r0) * n_out..(r - r0 + k) * n_out], og);
                        r += k;
                    }
                    r0 += nr;
                }
                give_buf(ac);
                give_buf(xb);
                tot
            })
            .reduce(Tally::default, |a, b| a + b)
    }

    /// [`ReadPlan::finish_chunk`] compiled for AVX2 (same operations, same bits).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn finish_chunk_avx2(&self, ctx: &ChunkCtx<'_>, ac: &mut [f32]) -> Tally {
        self.finish_chunk(ctx, ac)
    }

    /// [`ReadPlan::finish`] on the rows `r0..` of `ac` (overwritten): returns the chunk's tally (every
    /// tile read counts its row's Σ x², a re-read its own).
    #[inline(always)]
    fn finish_chunk(&self, ctx: &ChunkCtx<'_>, ac: &mut [f32]) -> Tally {
        let ChunkCtx {
            pre,
            x,
            r0,
            s,
            t,
            noise_s,
            dac_s,
        } = *ctx;
        let (n_in, n_out) = (self.n_in, self.n_out);
        let last_r = self.io.last_r;
        let (mut reads, mut rereads, mut sumsq) = (0u64, 0u64, 0u64);
        let rows = ac.len() / n_out;
        let adc_noisy = self.adc.is_some_and(|a| a.noise > 0.0);
        let noisy_w = self.blocks.iter().any(|b| b.s2.is_some());
        // The draws are made for a few rows at a time (about 16 KiB, so they stay in L1 until
        // used); one Gaussian per output carries the per-read noise and the ADC noise together
        // (their sum has σ = √(var + σ_adc²), which `pre_chunk` writes as the row's σ when there
        // is read noise).
        let rg = (4096 / n_out).clamp(1, rows.max(1));
        let mut nz = take_buf(if adc_noisy || noisy_w { rg * n_out } else { 0 });
        let mut q = take_buf(n_out);
        // Chunk-local round-0 results of the fused read.
        let (mut al_buf, mut ss_buf, mut y_buf, mut sd_buf) = match pre {
            Some(_) => (Buf::empty(), Buf::empty(), Buf::empty(), Buf::empty()),
            None => (
                take_buf(rows),
                take_buf(rows),
                take_buf(rows * n_out),
                take_buf(if noisy_w { rows * n_out } else { 0 }),
            ),
        };
        for (b, blk) in self.blocks.iter().enumerate() {
            let (alpha, ssb, yb, sdb): BlockRound<'_> = match pre {
                Some(p) => (
                    &p.alpha[b][r0..r0 + rows],
                    &p.ss[b][r0..r0 + rows],
                    &p.y[b][r0 * n_out..(r0 + rows) * n_out],
                    p.sd[b]
                        .as_ref()
                        .map(|v| &v[r0 * n_out..(r0 + rows) * n_out]),
                ),
                None => {
                    let pc = PreCtx {
                        blk,
                        x,
                        r0,
                        ns: &dac_s[b],
                    };
                    let sdc = blk.s2.as_ref().map(|_| &mut sd_buf[..]);
                    self.pre_chunk(&pc, (&mut al_buf, &mut ss_buf), &mut y_buf, sdc);
                    (
                        &al_buf,
                        &ss_buf,
                        &y_buf,
                        blk.s2.as_ref().map(|_| &sd_buf[..]),
                    )
                }
            };
            let noisy = adc_noisy || sdb.is_some();
            let first = b == 0;
            for g0 in (0..rows).step_by(rg) {
                let g1 = (g0 + rg).min(rows);
                if noisy {
                    // Indices (row, output), as a per-row fill would.
                    let nzg = &mut nz[..(g1 - g0) * n_out];
                    noise_s[b].fill_normal_fast(((r0 + g0) * n_out) as u64, nzg);
                }
                for j in g0..g1 {
                    let a = &mut ac[j * n_out..(j + 1) * n_out];
                    let al = alpha[j];
                    if al == 0.0 {
                        if first {
                            a.fill(0.0);
                        }
                        continue;
                    }
                    let y = &yb[j * n_out..(j + 1) * n_out];
                    let ss = fixed_sumsq(f64::from(ssb[j]));
                    let nzr = noisy.then(|| &nz[(j - g0) * n_out..(j - g0 + 1) * n_out]);
                    let sdr = sdb.map(|sd| &sd[j * n_out..(j + 1) * n_out]);
                    let Some(adc) = &self.adc else {
                        // No ADC: the values themselves (with their read noise).
                        match (nzr, sdr) {
                            (Some(nz), Some(sd)) => {
                                for o in 0..n_out {
                                    q[o] = y[o] + sd[o] * nz[o];
                                }
                            }
                            _ => q.copy_from_slice(y),
                        }
                        add_scaled(a, &q, al, first);
                        reads += self.outs.len() as u64;
                        sumsq += ss * self.outs.len() as u64;
                        continue;
                    };
                    for &(o0, o1) in &self.outs {
                        let ys = &y[o0..o1];
                        let noise = match (nzr, sdr) {
                            (Some(nz), Some(sd)) => Noise::Var(&sd[o0..o1], &nz[o0..o1]),
                            (Some(nz), None) => Noise::Const(adc.noise, &nz[o0..o1]),
                            _ => Noise::None,
                        };
                        // The first block writes q·α straight into the output; later blocks
                        // convert into `q` and add.
                        let (qs, scale) = if first {
                            (&mut a[o0..o1], al)
                        } else {
                            (&mut q[o0..o1], 1.0)
                        };
                        let peak = adc_tile(ys, noise, qs, &adc.q, scale);
                        reads += 1;
                        sumsq += ss;
                        let mut red = 1.0f32;
                        // A saturated tile is replaced by its bound-management result.
                        if peak > adc.bound && last_r > 1 {
                            let r = r0 + j;
                            let xr = &x[j * n_in..(j + 1) * n_in];
                            let qs = &mut q[o0..o1];
                            let (n, rd, rss) = self.reread(blk, b, xr, r, al, (o0, o1), s, t, qs);
                            reads += n;
                            rereads += n;
                            sumsq += rss;
                            red = rd as f32;
                            if first {
                                // As the sum of q·red and then ·α.
                                for (a, &v) in a[o0..o1].iter_mut().zip(qs.iter()) {
                                    *a = (v * red) * al;
                                }
                                continue;
                            }
                        } else if first {
                            continue;
                        }
                        let qs = &q[o0..o1];
                        let a = &mut a[o0..o1];
                        if red == 1.0 {
                            add_scaled(a, qs, al, false);
                        } else {
                            for (a, &v) in a.iter_mut().zip(qs) {
                                *a += (v * red) * al;
                            }
                        }
                    }
                }
            }
        }
        if self.blocks.is_empty() {
            ac.fill(0.0);
        }
        for b in [nz, q, al_buf, ss_buf, y_buf, sd_buf] {
            give_buf(b);
        }
        Tally {
            reads,
            rereads,
            sumsq,
        }
    }

    /// Iterative bound management of the saturated vector (row `r`, block `b`, outputs `o0..o1`):
    /// re-read with the input divided by α·2^k, k = 1, 2, … (own DAC, read and ADC draws per
    /// round) until nothing saturates or the last allowed reduction. Writes the last conversion
    /// into `q` and returns (re-reads made, its reduction r, Σ over them of Σ x² of the inputs,
    /// fixed point).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn reread(
        &self,
        blk: &InBlock,
        b: usize,
        xrow: &[f32],
        r: usize,
        alpha: f32,
        (o0, o1): (usize, usize),
        s: &Stream,
        t: u64,
        q: &mut [f32],
    ) -> (u64, u64, u64) {
        let (lo, hi) = (blk.lo, blk.hi);
        let nb = hi - lo;
        let adc = self.adc.as_ref().expect("bound management needs an ADC");
        let mut xq = vec![0.0f32; nb];
        let mut xq2 = vec![0.0f32; if blk.s2.is_some() { nb } else { 0 }];
        let mut nz = vec![0.0f32; o1 - o0];
        let n2 = self.adc_noise_var();
        let noisy = adc.noise > 0.0 || blk.s2.is_some();
        let base = (r * self.n_out + o0) as u64;
        let (mut red, mut k, mut n, mut ss) = (1u64, 0u32, 0u64, 0u64);
        loop {
            k += 1;
            red *= 2;
            n += 1;
            let ns = round_stream(s, "dac", b, k, t);
            self.dac_row(
                &xrow[lo..hi],
                alpha * red as f32,
                &ns,
                (r * self.n_in + lo) as u64,
                &mut xq,
            );
            ss += fixed_sumsq(f64::from(dot(&xq, &xq)));
            if blk.s2.is_some() {
                xq2.iter_mut().zip(&xq).for_each(|(a, v)| *a = v * v);
            }
            if noisy {
                round_stream(&s.child("adc"), "noise", b, k, t).fill_normal_fast(base, &mut nz);
            }
            let mut sat = false;
            for (j, o) in (o0..o1).enumerate() {
                let y = dot(&blk.w[o * nb..(o + 1) * nb], &xq);
                // One draw for the read noise and the ADC noise together, as in round 0.
                let sd = match &blk.s2 {
                    Some(s2) => (dot(&s2[o * nb..(o + 1) * nb], &xq2).max(0.0) + n2).sqrt(),
                    None => adc.noise,
                };
                let p = if noisy { y + sd * nz[j] } else { y };
                sat |= p.abs() > adc.bound;
                q[j] = adc.q.convert(p);
            }
            if !sat || red >= self.io.last_r {
                return (n, red, ss);
            }
        }
    }
}

/// One block's round-0 results on a chunk's rows: scales α, Σ x² of the converted inputs, pre-ADC
/// sums and their per-read noise σ.
type BlockRound<'a> = (&'a [f32], &'a [f32], &'a [f32], Option<&'a [f32]>);

/// `a = q·α` (`first`) or `a += q·α`.
#[inline(always)]
fn add_scaled(a: &mut [f32], q: &[f32], al: f32, first: bool) {
    match (first, al == 1.0) {
        (true, true) => a.copy_from_slice(q),
        (true, false) => a.iter_mut().zip(q).for_each(|(a, &v)| *a = v * al),
        (false, true) => a.iter_mut().zip(q).for_each(|(a, &v)| *a += v),
        (false, false) => a.iter_mut().zip(q).for_each(|(a, &v)| *a += v * al),
    }
}

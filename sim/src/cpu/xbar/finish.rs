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
        let n_out = self.n_out;
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
        let mut q = take_buf(rg * n_out);
        let mut ones = take_buf(rg);
        ones.fill(1.0);
        let mut peaks = take_buf(rg);
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
            // Saturated (row, tile) vectors of this block, re-read together after the rows.
            let mut pending: Vec<(usize, usize)> = Vec::new();
            for g0 in (0..rows).step_by(rg) {
                let g1 = (g0 + rg).min(rows);
                if noisy {
                    // Indices (row, output), as a per-row fill would.
                    let nzg = &mut nz[..(g1 - g0) * n_out];
                    noise_s[b].fill_normal_fast(((r0 + g0) * n_out) as u64, nzg);
                }
                let Some(adc) = &self.adc else {
                    // No ADC: the values themselves (with their read noise).
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
                        let nzr = noisy.then(|| &nz[(j - g0) * n_out..(j - g0 + 1) * n_out]);
                        let sdr = sdb.map(|sd| &sd[j * n_out..(j + 1) * n_out]);
                        match (nzr, sdr) {
                            (Some(nz), Some(sd)) => {
                                for o in 0..n_out {
                                    q[o] = y[o] + sd[o] * nz[o];
                                }
                            }
                            _ => q[..n_out].copy_from_slice(y),
                        }
                        add_scaled(a, &q[..n_out], al, first);
                        let ss = fixed_sumsq(f64::from(ssb[j]));
                        reads += self.outs.len() as u64;
                        sumsq += ss * self.outs.len() as u64;
                    }
                    continue;
                };
                let gr = g1 - g0;
                // Per tile, the group's vectors in one call: the first block writes q·α straight
                // into the output; later blocks convert into `q` and add.
                for (ti, &(o0, o1)) in self.outs.iter().enumerate() {
                    let shape = TileRows {
                        rows: gr,
                        n: o1 - o0,
                        stride: n_out,
                    };
                    let at = g0 * n_out + o0;
                    let noise = match (noisy, sdb) {
                        (true, Some(sd)) => Noise::Var(&sd[at..], &nz[o0..]),
                        (true, None) => Noise::Const(adc.noise, &nz[o0..]),
                        _ => Noise::None,
                    };
                    let (qs, scales) = if first {
                        (&mut ac[at..], &alpha[g0..g1])
                    } else {
                        (&mut q[o0..], &ones[..gr])
                    };
                    adc_rows(
                        shape,
                        &yb[at..],
                        noise,
                        qs,
                        &adc.q,
                        scales,
                        &mut peaks[..gr],
                    );
                    for j in g0..g1 {
                        let al = alpha[j];
                        if al == 0.0 {
                            continue;
                        }
                        reads += 1;
                        sumsq += fixed_sumsq(f64::from(ssb[j]));
                        // A saturated tile is replaced by its bound-management result (the
                        // first block's round-0 values in `ac` are overwritten then).
                        if peaks[j - g0] > adc.bound && last_r > 1 {
                            pending.push((j, ti));
                        } else if !first {
                            let (i, k) = (j * n_out, (j - g0) * n_out);
                            add_scaled(&mut ac[i + o0..i + o1], &q[k + o0..k + o1], al, false);
                        }
                    }
                }
                if first {
                    // All-zero vectors read exactly zero.
                    for j in (g0..g1).filter(|&j| alpha[j] == 0.0) {
                        ac[j * n_out..(j + 1) * n_out].fill(0.0);
                    }
                }
            }
            if !pending.is_empty() {
                let (n, rss) = self.reread_batch(blk, b, (x, r0), alpha, pending, ac, (s, t));
                reads += n;
                rereads += n;
                sumsq += rss;
            }
        }
        if self.blocks.is_empty() {
            ac.fill(0.0);
        }
        for b in [nz, q, ones, peaks, al_buf, ss_buf, y_buf, sd_buf] {
            give_buf(b);
        }
        Tally {
            reads,
            rereads,
            sumsq,
        }
    }

    /// Iterative bound management of the saturated (row, tile) vectors of block `b` on a chunk's
    /// rows (`pending`: (row within the chunk `x` starting at read row `r0`, tile index)), round by
    /// round: round k re-reads every vector still saturated with its input divided by α·2^k (own
    /// DAC, read and ADC draws, indexed as a lone re-read's), the sums of a tile's vectors as one
    /// GEMM. A vector leaves at its first read that does not saturate, or at the last allowed
    /// reduction r, and its q·r·α is written (block 0) or added into `ac`. Returns (re-reads made,
    /// Σ over them of Σ x² of the inputs, fixed point).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn reread_batch(
        &self,
        blk: &InBlock,
        b: usize,
        (x, r0): (&[f32], usize),
        alpha: &[f32],
        mut pending: Vec<(usize, usize)>,
        ac: &mut [f32],
        (s, t): (&Stream, u64),
    ) -> (u64, u64) {
        let (lo, hi) = (blk.lo, blk.hi);
        let nb = hi - lo;
        let (n_in, n_out) = (self.n_in, self.n_out);
        let adc = self.adc.as_ref().expect("bound management needs an ADC");
        let n2 = self.adc_noise_var();
        let noisy = adc.noise > 0.0 || blk.s2.is_some();
        let first = b == 0;
        let (mut n, mut ss) = (0u64, 0u64);
        let (mut red, mut k) = (1u64, 0u32);
        while !pending.is_empty() {
            k += 1;
            red *= 2;
            let ns = round_stream(s, "dac", b, k, t);
            let nzs = round_stream(&s.child("adc"), "noise", b, k, t);
            let mut next = Vec::new();
            pending.sort_unstable_by_key(|&(j, ti)| (ti, j));
            for group in pending.chunk_by(|a, b| a.1 == b.1) {
                let (o0, o1) = self.outs[group[0].1];
                let (np, tw) = (group.len(), o1 - o0);
                let mut xq = take_buf(np * nb);
                for (i, &(j, _)) in group.iter().enumerate() {
                    let xr = &mut xq[i * nb..(i + 1) * nb];
                    let base = ((r0 + j) * n_in + lo) as u64;
                    let xs = &x[j * n_in + lo..j * n_in + hi];
                    let sq = self.dac_row(xs, alpha[j] * red as f32, &ns, base, xr);
                    ss += fixed_sumsq(f64::from(sq));
                }
                n += np as u64;
                let g = Gemm {
                    m: np,
                    n: tw,
                    k: nb,
                    trans_a: false,
                    trans_b: true,
                };
                let mut y = take_buf(np * tw);
                let w = &blk.w[o0 * nb..o1 * nb];
                sgemm_par(g, 1.0, &xq, w, 0.0, &mut y, Par::Seq).expect("block GEMM sizes");
                // σ of the Gaussian before the ADC (per-read and ADC noise in one draw).
                let mut sd = take_buf(if blk.s2.is_some() { np * tw } else { 0 });
                if let Some(s2) = &blk.s2 {
                    xq.iter_mut().for_each(|v| *v *= *v);
                    let s2 = &s2[o0 * nb..o1 * nb];
                    sgemm_par(g, 1.0, &xq, s2, 0.0, &mut sd, Par::Seq).expect("block GEMM sizes");
                    sd.iter_mut().for_each(|v| *v = (v.max(0.0) + n2).sqrt());
                }
                let mut nz = take_buf(if noisy { tw } else { 0 });
                let mut q = take_buf(tw);
                for (i, &(j, ti)) in group.iter().enumerate() {
                    if noisy {
                        nzs.fill_normal_fast(((r0 + j) * n_out + o0) as u64, &mut nz);
                    }
                    let noise = match &blk.s2 {
                        Some(_) => Noise::Var(&sd[i * tw..(i + 1) * tw], &nz),
                        None if noisy => Noise::Const(adc.noise, &nz),
                        None => Noise::None,
                    };
                    let peak = adc_tile(&y[i * tw..(i + 1) * tw], noise, &mut q, &adc.q, 1.0);
                    if peak > adc.bound && red < self.io.last_r {
                        next.push((j, ti));
                        continue;
                    }
                    let (rf, al) = (red as f32, alpha[j]);
                    let a = &mut ac[j * n_out + o0..j * n_out + o1];
                    if first {
                        a.iter_mut()
                            .zip(q.iter())
                            .for_each(|(a, &v)| *a = (v * rf) * al);
                    } else {
                        a.iter_mut()
                            .zip(q.iter())
                            .for_each(|(a, &v)| *a += (v * rf) * al);
                    }
                }
                for buf in [xq, y, sd, nz, q] {
                    give_buf(buf);
                }
            }
            pending = next;
        }
        (n, ss)
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

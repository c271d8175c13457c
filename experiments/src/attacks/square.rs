//! Square attack (Andriushchenko et al. 2020; max-andr/square-attack and the AutoAttack port), a
//! score-based black-box attack: random square-shaped updates accepted when they lower the margin
//! `z_y − max_{j≠y} z_j` (or keep the point misclassified, as in AutoAttack).
//!
//! * p schedule: p_init × {1, ½, ¼, …, 1/512} over the bands (10, 50, 200, 500, 1000, 2000, 4000, 6000,
//!   8000] of the iteration count, rescaled to 10 000 iterations if `rescale_schedule` (the original)
//!   and raw (AutoAttack, `resc_schedule=False`) otherwise; side `s = round(√(p·h·w))`.
//! * Window corners are drawn in `[0, h − s)` × `[0, w − s)` (exclusive upper bound, as both
//!   references do; `{0}` when s equals the side).
//! * L∞: vertical-stripe initialization (one ±ε per channel and column), then windows of side
//!   s ∈ [1, min(h, w)] set to x ± ε with one sign per channel (resampled while the window would not
//!   change the image).
//! * L2: initialization by pseudo-Gaussian bumps on tiles of side h/5 with random signs, then the
//!   two-window update that moves mass from window 2 into window 1 within the ε budget (s odd, ≥ 3).
//!
//! For stochastic classifiers `eot_iter > 1` averages the margin of each candidate over several
//! queries (acceptance on the mean margin, as the AutoAttack authors recommend for randomized
//! defenses; their advice to also drop early stopping is not implemented).
//!
//! Queries: one clean check, one query for the initialization, then one per not-yet-fooled sample per
//! iteration, `n_queries` in all per sample after the clean check (the original runs `n_iters` queries
//! in all; AutoAttack `n_queries + 1`). Deviation from the AutoAttack port: each sample draws its own
//! window position (as the original does), so results do not depend on the batch split.

use anyhow::{Result, ensure};
use ndarray::{Array1, Array2};
use sim::{Stream, Tensor};

use super::losses::{margin, margin_prob};
use super::{
    Attack, AttackResult, Norm, argmax_rows, attack_labels, check_eps, check_inputs, finish,
    logits_of,
};
use crate::classifier::{Classifier, Counted};

/// Square attack settings (untargeted).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Square {
    /// Threat model.
    pub norm: Norm,
    /// Radius ε.
    pub eps: f32,
    /// Query budget per sample (after the clean check; includes the initialization).
    pub n_queries: usize,
    /// Initial fraction of pixels changed per update (AutoAttack: 0.8).
    pub p_init: f32,
    /// Rescale the p schedule to 10 000 iterations (original code) instead of raw iteration counts
    /// (AutoAttack).
    pub rescale_schedule: bool,
    /// Keep points in the box [0, 1].
    pub clip: bool,
    /// Attack the model's predicted labels instead of the given ones.
    pub use_predicted: bool,
    /// Compute the margin on softmax probabilities (a black box that returns probabilities, as in
    /// the AdvEP code) instead of logits.
    pub on_probabilities: bool,
    /// For a stochastic classifier: margins averaged over this many queries per candidate (the EOT
    /// acceptance rule of the AutoAttack paper for randomized defenses; each query counts).
    pub eot_iter: usize,
}

impl Square {
    /// Square as run inside AutoAttack: 5000 queries, p_init 0.8, raw schedule, box on.
    pub fn new(norm: Norm, eps: f32) -> Self {
        Square {
            norm,
            eps,
            n_queries: 5000,
            p_init: 0.8,
            rescale_schedule: false,
            clip: true,
            use_predicted: false,
            on_probabilities: false,
            eot_iter: 1,
        }
    }
}

/// The p schedule (fra31 `p_selection`): `it` is the 0-based iteration, `n_iters` the budget.
pub fn p_selection(p_init: f32, it: usize, n_iters: usize, rescale: bool) -> f32 {
    let it = if rescale {
        (it as f64 / n_iters.max(1) as f64 * 10000.0) as usize
    } else {
        it
    };
    let div = match it {
        0..=10 => 1.0,
        11..=50 => 2.0,
        51..=200 => 4.0,
        201..=500 => 8.0,
        501..=1000 => 16.0,
        1001..=2000 => 32.0,
        2001..=4000 => 64.0,
        4001..=6000 => 128.0,
        6001..=8000 => 256.0,
        _ => 512.0,
    };
    p_init / div
}

/// Concentric rectangles adding 1/(k+1)² each, L2-normalized (`pseudo_gaussian_pert_rectangles`),
/// row-major `[x, y]`.
pub fn pseudo_gaussian_pert_rectangles(x: usize, y: usize) -> Vec<f64> {
    let mut d = vec![0f64; x * y];
    if x == 0 || y == 0 {
        return d;
    }
    let (xc, yc) = (x / 2 + 1, y / 2 + 1);
    let (mut c0, mut c1) = (xc as isize - 1, yc as isize - 1);
    for counter in 0..xc.max(yc) {
        let w = 2 * counter as isize + 1;
        let (r0, r1) = (
            c0.max(0) as usize,
            ((c0 + w).min(x as isize)).max(0) as usize,
        );
        let (q0, q1) = (
            c1.max(0) as usize,
            ((c1 + w).min(y as isize)).max(0) as usize,
        );
        let add = 1.0 / ((counter + 1) as f64).powi(2);
        for r in r0..r1 {
            for q in q0..q1 {
                d[r * y + q] += add;
            }
        }
        c0 -= 1;
        c1 -= 1;
    }
    let n = d.iter().map(|v| v * v).sum::<f64>().sqrt();
    if n > 0.0 {
        d.iter_mut().for_each(|v| *v /= n);
    }
    d
}

/// Top half +, bottom half − pseudo-Gaussian pattern of side s, L2-normalized, optionally transposed
/// (`meta_pseudo_gaussian_pert`), row-major `[s, s]`.
pub fn meta_pseudo_gaussian_pert(s: usize, transpose: bool) -> Vec<f64> {
    let mut d = vec![0f64; s * s];
    let top = pseudo_gaussian_pert_rectangles(s / 2, s);
    let bot = pseudo_gaussian_pert_rectangles(s - s / 2, s);
    d[..top.len()].copy_from_slice(&top);
    for (j, v) in bot.iter().enumerate() {
        d[top.len() + j] = -v;
    }
    let n = d.iter().map(|v| v * v).sum::<f64>().sqrt();
    if n > 0.0 {
        d.iter_mut().for_each(|v| *v /= n);
    }
    if transpose {
        let mut t = vec![0f64; s * s];
        for r in 0..s {
            for q in 0..s {
                t[q * s + r] = d[r * s + q];
            }
        }
        t
    } else {
        d
    }
}

/// Per-sample geometry helpers on flattened `[C, H, W]` rows.
#[derive(Clone, Copy)]
struct Geo {
    c: usize,
    h: usize,
    w: usize,
}

impl Geo {
    fn at(&self, ch: usize, r: usize, q: usize) -> usize {
        (ch * self.h + r) * self.w + q
    }
}

fn sign(st: &Stream, i: u64) -> f32 {
    if st.below(i, 2) == 0 { -1.0 } else { 1.0 }
}

impl Square {
    fn init_linf(&self, g: Geo, x0: &Array1<f32>, st: &Stream) -> Array1<f32> {
        let mut v = x0.clone();
        for ch in 0..g.c {
            for q in 0..g.w {
                let e = self.eps * sign(st, (ch * g.w + q) as u64);
                for r in 0..g.h {
                    v[g.at(ch, r, q)] += e;
                }
            }
        }
        v
    }

    fn init_l2(&self, g: Geo, x0: &Array1<f32>, st: &Stream) -> Array1<f32> {
        let s = (g.h / 5).max(1);
        let sp = g.h.saturating_sub(5 * s) / 2;
        let mut delta = vec![0f64; g.c * g.h * g.w];
        let mut draw = 0u64;
        let mut ch_pos = sp;
        for _ in 0..g.h / s {
            let mut cw_pos = sp;
            for _ in 0..g.w / s {
                let pert = meta_pseudo_gaussian_pert(s, st.uniform(draw) > 0.5);
                draw += 1;
                for ch in 0..g.c {
                    let sg = sign(st, 1_000_000 + draw * g.c as u64 + ch as u64) as f64;
                    for r in 0..s {
                        for q in 0..s {
                            let (rr, qq) = (ch_pos + r, cw_pos + q);
                            if rr < g.h && qq < g.w {
                                delta[g.at(ch, rr, qq)] += pert[r * s + q] * sg;
                            }
                        }
                    }
                }
                cw_pos += s;
            }
            ch_pos += s;
        }
        let n = delta.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        let mut v = x0.clone();
        for (j, d) in delta.iter().enumerate() {
            v[j] += (d / n * self.eps as f64) as f32;
        }
        v
    }

    fn step_linf(
        &self,
        g: Geo,
        it: usize,
        x0: &Array1<f32>,
        xb: &Array1<f32>,
        st: &Stream,
    ) -> Array1<f32> {
        let p = p_selection(self.p_init, it, self.n_queries, self.rescale_schedule);
        let s = ((p as f64 * (g.h * g.w) as f64).sqrt().round() as usize).clamp(1, g.h.min(g.w));
        let ch0 = st.below(0, (g.h - s).max(1) as u64) as usize;
        let cw0 = st.below(1, (g.w - s).max(1) as u64) as usize;
        let mut delta = xb - x0;
        let mut draw = 2u64;
        for _try in 0..16 {
            let mut changed = false;
            for ch in 0..g.c {
                let e = self.eps * sign(st, draw);
                draw += 1;
                for r in ch0..ch0 + s {
                    for q in cw0..cw0 + s {
                        let j = g.at(ch, r, q);
                        delta[j] = e;
                        let nv = if self.clip {
                            (x0[j] + e).clamp(0.0, 1.0)
                        } else {
                            x0[j] + e
                        };
                        if (nv - xb[j]).abs() >= 1e-7 {
                            changed = true;
                        }
                    }
                }
            }
            if changed {
                break;
            }
        }
        let mut v = x0 + &delta;
        if self.clip {
            v.mapv_inplace(|a| a.clamp(0.0, 1.0));
        }
        v
    }

    fn step_l2(
        &self,
        g: Geo,
        it: usize,
        x0: &Array1<f32>,
        xb: &Array1<f32>,
        st: &Stream,
    ) -> Array1<f32> {
        let p = p_selection(self.p_init, it, self.n_queries, self.rescale_schedule);
        let mut s = ((p as f64 * (g.h * g.w) as f64).sqrt().round() as usize).max(3);
        if s.is_multiple_of(2) {
            s += 1;
        }
        let s = s.min(g.h.min(g.w));
        let (h1, w1) = (
            st.below(0, (g.h - s).max(1) as u64) as usize,
            st.below(1, (g.w - s).max(1) as u64) as usize,
        );
        let (h2, w2) = (
            st.below(2, (g.h - s).max(1) as u64) as usize,
            st.below(3, (g.w - s).max(1) as u64) as usize,
        );
        let in1 = |r: usize, q: usize| r >= h1 && r < h1 + s && q >= w1 && q < w1 + s;
        let in2 = |r: usize, q: usize| r >= h2 && r < h2 + s && q >= w2 && q < w2 + s;
        let mut delta: Vec<f64> = xb
            .iter()
            .zip(x0.iter())
            .map(|(a, b)| (*a - *b) as f64)
            .collect();
        let eps = self.eps as f64;
        let img_norm2: f64 = delta.iter().map(|v| v * v).sum();
        let pert = meta_pseudo_gaussian_pert(s, st.uniform(4) > 0.5);
        let mut new_w = vec![0f64; g.c * s * s];
        for ch in 0..g.c {
            let (mut win2, mut union2) = (0f64, 0f64);
            for r in 0..g.h {
                for q in 0..g.w {
                    let v = delta[g.at(ch, r, q)];
                    if in1(r, q) {
                        win2 += v * v;
                    }
                    if in1(r, q) || in2(r, q) {
                        union2 += v * v;
                    }
                }
            }
            let wn = win2.sqrt();
            let sg = sign(st, 10 + ch as u64) as f64;
            let blk = &mut new_w[ch * s * s..(ch + 1) * s * s];
            for r in 0..s {
                for q in 0..s {
                    blk[r * s + q] =
                        pert[r * s + q] * sg + delta[g.at(ch, h1 + r, w1 + q)] / (1e-10 + wn);
                }
            }
            let bn = blk.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            let budget = ((eps * eps - img_norm2).max(0.0) / g.c as f64 + union2).sqrt();
            blk.iter_mut().for_each(|v| *v = *v / bn * budget);
        }
        for ch in 0..g.c {
            for r in h2..h2 + s {
                for q in w2..w2 + s {
                    delta[g.at(ch, r, q)] = 0.0;
                }
            }
            for r in 0..s {
                for q in 0..s {
                    delta[g.at(ch, h1 + r, w1 + q)] = new_w[ch * s * s + r * s + q];
                }
            }
        }
        let n = delta.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        let mut v = x0.clone();
        for (j, d) in delta.iter().enumerate() {
            v[j] += (d / n * eps) as f32;
        }
        if self.clip {
            v.mapv_inplace(|a| a.clamp(0.0, 1.0));
        }
        v
    }

    fn margins(
        &self,
        cc: &dyn Classifier,
        rows: &Array2<f32>,
        shape: [usize; 3],
        y: &[usize],
    ) -> Result<Vec<f32>> {
        let draws = if cc.stochastic() {
            self.eot_iter.max(1)
        } else {
            1
        };
        let mut acc = vec![0f64; y.len()];
        for _ in 0..draws {
            let z = logits_of(cc, rows, shape)?.into_dyn();
            let m = if self.on_probabilities {
                margin_prob(&z, y)?.0
            } else {
                margin(&z, y)?.0
            };
            acc.iter_mut().zip(m).for_each(|(a, v)| *a += v as f64);
        }
        Ok(acc.into_iter().map(|a| (a / draws as f64) as f32).collect())
    }
}

impl Attack for Square {
    fn name(&self) -> String {
        format!(
            "Square-{} eps={} queries={} p_init={}",
            self.norm, self.eps, self.n_queries, self.p_init
        )
    }
    fn run_indexed(
        &self,
        clf: &dyn Classifier,
        x: &Tensor,
        y: &[usize],
        ids: &[u64],
        seed: u64,
    ) -> Result<AttackResult> {
        check_eps(self.eps)?;
        ensure!(
            self.p_init > 0.0 && self.p_init <= 1.0,
            "square: p_init must be in (0, 1] (got {})",
            self.p_init
        );
        ensure!(self.n_queries >= 1, "square: n_queries must be ≥ 1");
        let b = check_inputs(clf, x, y, ids)?;
        ensure!(clf.num_classes() >= 2, "square: needs at least 2 classes");
        let counted = Counted::new(clf);
        let cc: &dyn Classifier = &counted;
        let labels = attack_labels(cc, &b, y, self.use_predicted)?;
        let n = b.n();
        let [c, h, w] = b.shape;
        let g = Geo { c, h, w };
        let mut best = b.x.clone();
        let pred0 = argmax_rows(&logits_of(cc, &b.x, b.shape)?);
        let todo: Vec<usize> = (0..n).filter(|&i| pred0[i] == labels[i]).collect();
        if self.eps == 0.0 || todo.is_empty() {
            return finish(clf, &counted, &b, best, labels, None, self.norm, None);
        }
        let root = Stream::new(seed, "square");
        // Initialization.
        let mut init = Array2::<f32>::zeros((todo.len(), b.x.ncols()));
        for (row, &i) in todo.iter().enumerate() {
            let x0 = b.x.row(i).to_owned();
            let st = root.sub(ids[i]).sub(0);
            let mut v = match self.norm {
                Norm::Linf => self.init_linf(g, &x0, &st),
                Norm::L2 => self.init_l2(g, &x0, &st),
            };
            if self.clip {
                v.mapv_inplace(|a| a.clamp(0.0, 1.0));
            }
            init.row_mut(row).assign(&v);
        }
        let ys: Vec<usize> = todo.iter().map(|&i| labels[i]).collect();
        let m0 = self.margins(cc, &init, b.shape, &ys)?;
        let mut margin_min = vec![f32::INFINITY; n];
        for (row, &i) in todo.iter().enumerate() {
            best.row_mut(i).assign(&init.row(row));
            margin_min[i] = m0[row];
        }
        for it in 0..self.n_queries.saturating_sub(1) {
            let active: Vec<usize> = todo
                .iter()
                .copied()
                .filter(|&i| margin_min[i] > 0.0)
                .collect();
            if active.is_empty() {
                break;
            }
            let mut cand = Array2::<f32>::zeros((active.len(), b.x.ncols()));
            for (row, &i) in active.iter().enumerate() {
                let x0 = b.x.row(i).to_owned();
                let xb = best.row(i).to_owned();
                let st = root.sub(ids[i]).sub(it as u64 + 1);
                let v = match self.norm {
                    Norm::Linf => self.step_linf(g, it, &x0, &xb, &st),
                    Norm::L2 => self.step_l2(g, it, &x0, &xb, &st),
                };
                cand.row_mut(row).assign(&v);
            }
            let ya: Vec<usize> = active.iter().map(|&i| labels[i]).collect();
            let m = self.margins(cc, &cand, b.shape, &ya)?;
            for (row, &i) in active.iter().enumerate() {
                // Loss = margin: accept if it decreased or the point is misclassified (AutoAttack).
                if m[row] < margin_min[i] || m[row] <= 0.0 {
                    margin_min[i] = m[row];
                    best.row_mut(i).assign(&cand.row(row));
                }
            }
        }
        finish(clf, &counted, &b, best, labels, None, self.norm, None)
    }
}

//! Losses of the logits used by the attacks. Every function takes logits `[N, K]` and returns the
//! per-sample values `[N]` and the gradient of their **sum** w.r.t. the logits `[N, K]`, which is the
//! shape [`crate::classifier::LossFn`] expects. Arithmetic runs in f64 and is rounded to f32.
//!
//! Definitions (fra31/auto-attack, max-andr/square-attack, carlini/nn_robust_attacks):
//! * cross-entropy `CE(z, y) = log Σ_j e^{z_j} − z_y`;
//! * margin `z_y − max_{j≠y} z_j` (Square; negative ⇔ misclassified), also on softmax probabilities;
//! * DLR `−(z_y − max_{j≠y} z_j) / (z_π1 − z_π3 + 1e−12)` with π the descending order;
//! * targeted DLR `−(z_y − z_t) / (z_π1 − ½(z_π3 + z_π4) + 1e−12)`;
//! * C&W f6 `max(0, z_y − max_{j≠y} z_j + κ)` (untargeted) or `max(0, max_{j≠t} z_j − z_t + κ)`
//!   (targeted), with the max over the other classes taken exactly (no `−10000·onehot` trick needed).

use anyhow::{Result, ensure};
use ndarray::{Array2, ArrayView2, Ix2};
use sim::Tensor;

/// Per-sample values and the gradient of their sum w.r.t. the logits.
pub type LossOut = (Vec<f32>, Tensor);

/// The DLR denominators' stabilizer (fra31: 1e−12).
const DLR_EPS: f64 = 1e-12;

fn view2<'a>(logits: &'a Tensor, labels: &[usize], what: &str) -> Result<ArrayView2<'a, f32>> {
    ensure!(
        logits.ndim() == 2,
        "{what}: logits must be [N, K], got {:?}",
        logits.shape()
    );
    let z = logits.view().into_dimensionality::<Ix2>()?;
    let (n, k) = z.dim();
    ensure!(
        labels.len() == n,
        "{what}: {} labels for {n} logits rows",
        labels.len()
    );
    for (i, &l) in labels.iter().enumerate() {
        ensure!(
            l < k,
            "{what}: label {l} of sample {i} out of range (K = {k})"
        );
    }
    ensure!(z.iter().all(|v| v.is_finite()), "{what}: non-finite logits");
    Ok(z)
}

fn finish(vals: Vec<f64>, grad: Array2<f64>) -> LossOut {
    (
        vals.into_iter().map(|v| v as f32).collect(),
        grad.mapv(|v| v as f32).into_dyn(),
    )
}

/// Index of the largest entry of `row` other than `skip` (first one on ties).
fn argmax_except(row: &[f64], skip: usize) -> usize {
    let mut best = usize::MAX;
    for (j, &v) in row.iter().enumerate() {
        if j != skip && (best == usize::MAX || v > row[best]) {
            best = j;
        }
    }
    best
}

/// Class indices sorted by descending logit (stable: lower index first on ties).
fn order_desc(row: &[f64]) -> Vec<usize> {
    let mut o: Vec<usize> = (0..row.len()).collect();
    o.sort_by(|&a, &b| {
        row[b]
            .partial_cmp(&row[a])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    o
}

fn rows(z: &ArrayView2<f32>) -> Vec<Vec<f64>> {
    z.outer_iter()
        .map(|r| r.iter().map(|&v| v as f64).collect())
        .collect()
}

fn softmax(row: &[f64]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Cross-entropy `log Σ e^z − z_y`; gradient `softmax(z) − onehot(y)`.
pub fn cross_entropy(logits: &Tensor, y: &[usize]) -> Result<LossOut> {
    let z = view2(logits, y, "cross_entropy")?;
    let (n, k) = z.dim();
    let mut vals = Vec::with_capacity(n);
    let mut g = Array2::<f64>::zeros((n, k));
    for (i, row) in rows(&z).iter().enumerate() {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        vals.push(lse - row[y[i]]);
        for (j, p) in softmax(row).into_iter().enumerate() {
            g[[i, j]] = p - if j == y[i] { 1.0 } else { 0.0 };
        }
    }
    Ok(finish(vals, g))
}

/// Margin `z_y − max_{j≠y} z_j` (Square's loss; ≤ 0 once misclassified). Needs K ≥ 2.
pub fn margin(logits: &Tensor, y: &[usize]) -> Result<LossOut> {
    let z = view2(logits, y, "margin")?;
    let (n, k) = z.dim();
    ensure!(k >= 2, "margin: needs at least 2 classes");
    let mut vals = Vec::with_capacity(n);
    let mut g = Array2::<f64>::zeros((n, k));
    for (i, row) in rows(&z).iter().enumerate() {
        let o = argmax_except(row, y[i]);
        vals.push(row[y[i]] - row[o]);
        g[[i, y[i]]] += 1.0;
        g[[i, o]] -= 1.0;
    }
    Ok(finish(vals, g))
}

/// Margin on softmax probabilities `p_y − max_{j≠y} p_j` (what a black-box model returning
/// probabilities gives Square, as in the AdvEP code). Gradient through the softmax.
pub fn margin_prob(logits: &Tensor, y: &[usize]) -> Result<LossOut> {
    let z = view2(logits, y, "margin_prob")?;
    let (n, k) = z.dim();
    ensure!(k >= 2, "margin_prob: needs at least 2 classes");
    let mut vals = Vec::with_capacity(n);
    let mut g = Array2::<f64>::zeros((n, k));
    for (i, row) in rows(&z).iter().enumerate() {
        let p = softmax(row);
        let yi = y[i];
        let o = argmax_except(&p, yi);
        vals.push(p[yi] - p[o]);
        // d p_a / d z_c = p_a (δ_ac − p_c)
        for c in 0..k {
            let dy = p[yi] * (if c == yi { 1.0 } else { 0.0 } - p[c]);
            let dox = p[o] * (if c == o { 1.0 } else { 0.0 } - p[c]);
            g[[i, c]] = dy - dox;
        }
    }
    Ok(finish(vals, g))
}

/// Difference of logits `z_a − z_b` per sample (DeepFool's and FAB's linearized boundaries).
pub fn logit_diff(logits: &Tensor, a: &[usize], b: &[usize]) -> Result<LossOut> {
    let z = view2(logits, a, "logit_diff")?;
    let _ = view2(logits, b, "logit_diff")?;
    let (n, k) = z.dim();
    let mut vals = Vec::with_capacity(n);
    let mut g = Array2::<f64>::zeros((n, k));
    for i in 0..n {
        vals.push(z[[i, a[i]]] as f64 - z[[i, b[i]]] as f64);
        g[[i, a[i]]] += 1.0;
        g[[i, b[i]]] -= 1.0;
    }
    Ok(finish(vals, g))
}

/// DLR loss (AutoAttack, untargeted): `−(z_y − max_{j≠y} z_j) / (z_π1 − z_π3 + 1e−12)`. Needs K ≥ 3.
pub fn dlr(logits: &Tensor, y: &[usize]) -> Result<LossOut> {
    let z = view2(logits, y, "dlr")?;
    let (n, k) = z.dim();
    ensure!(k >= 3, "dlr: needs at least 3 classes (got {k})");
    let mut vals = Vec::with_capacity(n);
    let mut g = Array2::<f64>::zeros((n, k));
    for (i, row) in rows(&z).iter().enumerate() {
        let yi = y[i];
        let o = argmax_except(row, yi);
        let pi = order_desc(row);
        let num = row[yi] - row[o];
        let den = row[pi[0]] - row[pi[2]] + DLR_EPS;
        vals.push(-num / den);
        g[[i, yi]] += -1.0 / den;
        g[[i, o]] += 1.0 / den;
        g[[i, pi[0]]] += num / (den * den);
        g[[i, pi[2]]] -= num / (den * den);
    }
    Ok(finish(vals, g))
}

/// Targeted DLR (AutoAttack's APGD-T): `−(z_y − z_t) / (z_π1 − ½(z_π3 + z_π4) + 1e−12)`. Needs K ≥ 4.
/// Maximizing it pushes the target logit above the true one.
pub fn dlr_targeted(logits: &Tensor, y: &[usize], t: &[usize]) -> Result<LossOut> {
    let z = view2(logits, y, "dlr_targeted")?;
    let _ = view2(logits, t, "dlr_targeted (targets)")?;
    let (n, k) = z.dim();
    ensure!(k >= 4, "dlr_targeted: needs at least 4 classes (got {k})");
    let mut vals = Vec::with_capacity(n);
    let mut g = Array2::<f64>::zeros((n, k));
    for (i, row) in rows(&z).iter().enumerate() {
        let (yi, ti) = (y[i], t[i]);
        let pi = order_desc(row);
        let num = row[yi] - row[ti];
        let den = row[pi[0]] - 0.5 * (row[pi[2]] + row[pi[3]]) + DLR_EPS;
        vals.push(-num / den);
        let q = num / (den * den);
        g[[i, yi]] += -1.0 / den;
        g[[i, ti]] += 1.0 / den;
        g[[i, pi[0]]] += q;
        g[[i, pi[2]]] -= 0.5 * q;
        g[[i, pi[3]]] -= 0.5 * q;
    }
    Ok(finish(vals, g))
}

/// C&W f6 objective with confidence κ ≥ 0. Untargeted (`labels` = true classes):
/// `max(0, z_y − max_{j≠y} z_j + κ)`; targeted (`labels` = targets): `max(0, max_{j≠t} z_j − z_t + κ)`.
/// Zero once the attack has succeeded with confidence κ. Gradient 0 where the max is at 0.
pub fn cw_f6(logits: &Tensor, labels: &[usize], kappa: f32, targeted: bool) -> Result<LossOut> {
    ensure!(
        kappa.is_finite() && kappa >= 0.0,
        "cw_f6: κ must be finite and ≥ 0 (got {kappa})"
    );
    let z = view2(logits, labels, "cw_f6")?;
    let (n, k) = z.dim();
    ensure!(k >= 2, "cw_f6: needs at least 2 classes");
    let mut vals = Vec::with_capacity(n);
    let mut g = Array2::<f64>::zeros((n, k));
    for (i, row) in rows(&z).iter().enumerate() {
        let l = labels[i];
        let o = argmax_except(row, l);
        let s = if targeted { 1.0 } else { -1.0 };
        // untargeted: z_l − z_o + κ ; targeted: z_o − z_l + κ
        let v = s * (row[o] - row[l]) + kappa as f64;
        if v > 0.0 {
            vals.push(v);
            g[[i, o]] += s;
            g[[i, l]] -= s;
        } else {
            vals.push(0.0);
        }
    }
    Ok(finish(vals, g))
}

/// The objective a gradient attack **maximizes**.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Objective {
    /// Cross-entropy of the true class (targeted: minus the cross-entropy of the target).
    Ce,
    /// DLR (targeted: targeted DLR).
    Dlr,
    /// Negative margin `max_{j≠y} z_j − z_y` (the "CW loss" of Madry's PGD; targeted:
    /// `z_t − max_{j≠t} z_j`).
    Margin,
}

/// Evaluate `kind` (to be maximized) on logits, untargeted (`target = None`) or targeted.
pub fn objective(
    kind: Objective,
    logits: &Tensor,
    y: &[usize],
    target: Option<&[usize]>,
) -> Result<LossOut> {
    let neg =
        |(v, g): LossOut| -> LossOut { (v.into_iter().map(|a| -a).collect(), g.mapv(|a| -a)) };
    match (kind, target) {
        (Objective::Ce, None) => cross_entropy(logits, y),
        (Objective::Ce, Some(t)) => cross_entropy(logits, t).map(neg),
        (Objective::Dlr, None) => dlr(logits, y),
        (Objective::Dlr, Some(t)) => dlr_targeted(logits, y, t),
        (Objective::Margin, None) => margin(logits, y).map(neg),
        (Objective::Margin, Some(t)) => margin(logits, t),
    }
}

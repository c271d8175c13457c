//! Sanity checks of robustness results (Carlini et al. 2019): more iterations or restarts never
//! help the model, robust accuracy does not rise with ε, a large ε breaks everything, and a
//! black-box attack is not stronger than a white-box one — each beyond noise.

use super::names::{attack_budget, attack_family};
use crate::results::AttackRow;

/// Two standard deviations of an accuracy `p` measured on `n` images (binomial), at least one
/// image: the noise band of the sanity checks.
pub fn noise_tolerance(p: f64, n: usize) -> f64 {
    let n = n.max(1) as f64;
    let p = p.clamp(0.0, 1.0);
    (2.0 * (p * (1.0 - p) / n).sqrt()).max(1.0 / n) + 1e-9
}

/// Outcome of one sanity check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// As expected.
    Pass,
    /// Suspicious: the evaluation may be wrong (gradient masking, too weak an attack).
    Warn,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
        })
    }
}

/// One sanity check result.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// PASS or WARN.
    pub status: Status,
    /// What was checked and what was found.
    pub message: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

/// The evaluation an attack record belongs to (model, substrate, protocol, free-phase steps,
/// images): records that differ only in the attack's settings are comparable.
/// The evaluation a record belongs to (a curve or budget group is checked per seed).
type Setting = (String, String, String, usize, usize, String, usize, u64);

fn setting(r: &AttackRow) -> Setting {
    (
        r.model.clone(),
        r.substrate.clone(),
        r.protocol.clone(),
        r.t_predict,
        r.t_attack,
        r.data.clone(),
        r.n,
        r.seed,
    )
}

/// "more PGD iterations or restarts never raise robust accuracy beyond noise": among records of
/// the same evaluation, attack and strength that differ in iterations and/or restarts, a budget
/// that is at least as large in both may not have a robust accuracy above the smaller one's plus
/// [`noise_tolerance`]. One check per such group (PASS listing the accuracies, or one WARN per
/// violating pair); groups with a single budget give none.
pub fn iteration_checks(rows: &[AttackRow]) -> Vec<Check> {
    // (iterations, restarts, robust accuracy, images).
    type Point = (Option<usize>, usize, f64, usize);
    // (evaluation, attack without budget, ε bits, norm), points, description.
    type Group = ((String, String, u64, String), Vec<Point>, String);
    let mut groups: Vec<Group> = Vec::new();
    for r in rows {
        let (base, iters, restarts) = attack_budget(r);
        let s = setting(r);
        let key = (
            format!("{s:?}"),
            base.clone(),
            r.eps.to_bits(),
            r.norm.clone(),
        );
        let p = (iters, restarts, r.robust_accuracy, r.n);
        let eps_text = if r.eps_text.is_empty() {
            format!("{}", r.eps)
        } else {
            r.eps_text.clone()
        };
        let what = format!("{base} at ε={eps_text} on {} ({})", r.model, r.substrate);
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => {
                // The same budget twice (a rerun): the later record replaces the earlier one.
                match g.1.iter_mut().find(|q| q.0 == p.0 && q.1 == p.1) {
                    Some(q) => *q = p,
                    None => g.1.push(p),
                }
            }
            None => groups.push((key, vec![p], what)),
        }
    }
    let mut out = Vec::new();
    for (_, mut pts, what) in groups {
        if pts.len() < 2 {
            continue;
        }
        pts.sort_by_key(|p| (p.0, p.1));
        let mut warned = false;
        for a in &pts {
            for b in &pts {
                let (Some(ia), Some(ib)) = (a.0, b.0) else {
                    continue;
                };
                let larger = ib >= ia && b.1 >= a.1 && (ib > ia || b.1 > a.1);
                if !larger {
                    continue;
                }
                let tol = noise_tolerance((a.2 + b.2) / 2.0, a.3.min(b.3));
                if b.2 > a.2 + tol {
                    warned = true;
                    out.push(Check {
                        status: Status::Warn,
                        message: format!(
                            "{what}: robust accuracy rises from {:.4} ({ia} iterations, {} restart(s)) to {:.4} ({ib} iterations, {} restart(s)), beyond the noise band ±{tol:.4}: the weaker attack's result is not trustworthy (randomness, gradient masking?)",
                            a.2, a.1, b.2, b.1
                        ),
                    });
                }
            }
        }
        if !warned {
            let list: Vec<String> = pts
                .iter()
                .map(|p| {
                    let it = p.0.map_or("default".to_string(), |i| i.to_string());
                    format!("{it} it × {} restart(s): {:.4}", p.1, p.2)
                })
                .collect();
            out.push(Check {
                status: Status::Pass,
                message: format!(
                    "{what}: more iterations/restarts never raise robust accuracy beyond noise ({})",
                    list.join(", ")
                ),
            });
        }
    }
    out
}

/// Robust accuracy non-increasing in ε (beyond noise) along each attack curve, collapse to ≤ 5 %
/// at a large ε (L∞ ≥ 0.3, L2 ≥ 5; not for C&W, whose strength is a constant), and black-box
/// (Square) not stronger than a white-box attack at the same ε beyond noise. WARNs one by one,
/// PASSes as one summary line per check.
pub fn strength_checks(rows: &[AttackRow]) -> Vec<Check> {
    let mut out = Vec::new();
    // ε-monotonicity per curve.
    let mut curves: Vec<((String, String), Vec<&AttackRow>)> = Vec::new();
    for r in rows {
        let key = (format!("{:?}", setting(r)), attack_family(&r.attack));
        match curves.iter_mut().find(|c| c.0 == key) {
            Some(c) => c.1.push(r),
            None => curves.push((key, vec![r])),
        }
    }
    let mut ok = 0;
    for ((_, fam), mut pts) in curves.iter().cloned() {
        pts.sort_by(|a, b| a.eps.total_cmp(&b.eps));
        let mut bad = false;
        for w in pts.windows(2) {
            let tol = noise_tolerance(
                (w[0].robust_accuracy + w[1].robust_accuracy) / 2.0,
                w[0].n.min(w[1].n),
            );
            if w[1].eps > w[0].eps && w[1].robust_accuracy > w[0].robust_accuracy + tol {
                bad = true;
                out.push(Check {
                    status: Status::Warn,
                    message: format!(
                        "{fam} on {} ({}): robust accuracy rises from {:.4} at ε={} to {:.4} at ε={} beyond noise ±{tol:.4} (gradient masking or too few iterations?)",
                        w[0].model, w[0].substrate, w[0].robust_accuracy, w[0].eps, w[1].robust_accuracy, w[1].eps
                    ),
                });
            }
        }
        if !bad && pts.len() > 1 {
            ok += 1;
        }
    }
    if ok > 0 {
        out.push(Check {
            status: Status::Pass,
            message: format!(
                "robust accuracy non-increasing in ε within noise on {ok} attack curve(s)"
            ),
        });
    }
    // Collapse at large ε.
    let mut large = 0;
    for r in rows {
        let norm = r.norm.to_ascii_lowercase();
        let is_large = (norm == "linf" && r.eps >= 0.3) || (norm == "l2" && r.eps >= 5.0);
        if !is_large || r.attack.starts_with("CW") {
            continue;
        }
        large += 1;
        if r.robust_accuracy > 0.05 {
            large -= 1;
            out.push(Check {
                status: Status::Warn,
                message: format!(
                    "{} at ε={} on {} ({}): robust accuracy {:.4} does not fall to ~0 at a large ε: the attack is not working (gradient masking?)",
                    attack_family(&r.attack), r.eps, r.model, r.substrate, r.robust_accuracy
                ),
            });
        }
    }
    if large > 0 {
        out.push(Check {
            status: Status::Pass,
            message: format!("robust accuracy ≤ 0.05 at large ε in {large} record(s)"),
        });
    }
    // Black-box vs white-box.
    let mut pairs = 0;
    for b in rows.iter().filter(|r| r.attack.starts_with("Square")) {
        for w in rows.iter().filter(|r| {
            !r.attack.starts_with("Square")
                && !r.attack.starts_with("CW")
                && setting(r) == setting(b)
                && r.norm == b.norm
                && r.eps == b.eps
        }) {
            pairs += 1;
            let tol = noise_tolerance((b.robust_accuracy + w.robust_accuracy) / 2.0, b.n);
            if b.robust_accuracy + tol < w.robust_accuracy {
                pairs -= 1;
                out.push(Check {
                    status: Status::Warn,
                    message: format!(
                        "black-box {} ({:.4}) is stronger than white-box {} ({:.4}) at ε={} on {} ({}): white-box gradients may be masked",
                        attack_family(&b.attack), b.robust_accuracy, attack_family(&w.attack), w.robust_accuracy, b.eps, b.model, b.substrate
                    ),
                });
            }
        }
    }
    if pairs > 0 {
        out.push(Check {
            status: Status::Pass,
            message: format!(
                "black-box not stronger than white-box beyond noise in {pairs} pair(s)"
            ),
        });
    }
    out
}

/// One attack result of a suite run as its sanity checks see it: (row name — the attack, with
/// ` (<protocol>)` appended under a protocol other than `standard` —, norm, ε, robust accuracy).
pub type SuiteRow = (String, String, f64, f64);

/// The warnings of a suite run's own sanity checks over its `rows`: robust accuracy rising with ε
/// along an attack beyond `tol` (0.03 on a stochastic classifier, else one image of `n`), no
/// collapse at a large ε (L∞ ≥ 0.3, L2 ≥ 5), Square stronger than a white-box attack of the same
/// protocol, norm and ε by more than 5 points.
pub fn suite_warnings(rows: &[SuiteRow], stochastic: bool, n: usize) -> Vec<String> {
    let mut warnings = Vec::new();
    let tol = if stochastic {
        0.03
    } else {
        1.0 / n.max(1) as f64 + 1e-9
    };
    for (name, _, _, _) in rows.iter() {
        let mut mine: Vec<&SuiteRow> = rows.iter().filter(|r| &r.0 == name).collect();
        mine.sort_by(|x, y| x.2.total_cmp(&y.2));
        for w in mine.windows(2) {
            if w[1].3 > w[0].3 + tol {
                warnings.push(format!("{name}: robust accuracy rises from {:.4} at ε={} to {:.4} at ε={} (gradient masking or too few iterations?)", w[0].3, w[0].2, w[1].3, w[1].2));
            }
        }
    }
    for (name, norm, eps, acc) in rows {
        let large = (norm == "linf" && *eps >= 0.3) || (norm == "l2" && *eps >= 5.0);
        if large && *acc > 0.05 {
            warnings.push(format!("{name} at ε={eps}: robust accuracy {acc:.4} does not fall to ~0 at a large ε: the attack is not working (gradient masking?)"));
        }
        if name.starts_with("square") {
            for (wn, wnorm, weps, wacc) in rows {
                let protocol_of = |s: &str| s.rsplit_once(" (").map(|(_, p)| p.to_string());
                let same_protocol = protocol_of(wn) == protocol_of(name);
                if !wn.starts_with("square")
                    && same_protocol
                    && wnorm == norm
                    && weps == eps
                    && *acc + 0.05 < *wacc
                {
                    warnings.push(format!("black-box {name} ({acc:.4}) is stronger than white-box {wn} ({wacc:.4}) at ε={eps}: white-box gradients may be masked"));
                }
            }
        }
    }
    warnings
}

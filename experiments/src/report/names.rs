//! Attack names as records carry them (`"PGD-Linf eps=0.1 step=0.025 iters=10 restarts=1"`): the
//! attack without its strength (the family a table groups by) and its budget.

use std::fmt::Write as _;

use crate::results::AttackRow;

/// The settings tokens of an attack name: `"PGD-Linf eps=0.1 iters=10"` →
/// ("PGD-Linf", [("eps", "0.1"), ("iters", "10")], rest) where rest holds the tokens without `=`
/// after the head (e.g. "(no random start)").
fn tokens(name: &str) -> (&str, Vec<(&str, &str)>, Vec<&str>) {
    let mut it = name.split_whitespace();
    let head = it.next().unwrap_or("");
    let (mut kv, mut rest) = (Vec::new(), Vec::new());
    for t in it {
        match t.split_once('=') {
            Some((k, v)) => kv.push((k, v)),
            None => rest.push(t),
        }
    }
    (head, kv, rest)
}

fn join(head: &str, kv: &[(&str, &str)], rest: &[&str]) -> String {
    let mut s = head.to_string();
    for (k, v) in kv {
        let _ = write!(s, " {k}={v}");
    }
    for r in rest {
        let _ = write!(s, " {r}");
    }
    s
}

/// The attack of a table: the name without its strength (`eps=`, `c=`) and the step size that
/// follows from it (`step=`). `"PGD-Linf eps=0.1 step=0.025 iters=10 restarts=1"` →
/// `"PGD-Linf iters=10 restarts=1"`.
pub fn attack_family(name: &str) -> String {
    let (head, kv, rest) = tokens(name);
    let kv: Vec<_> = kv
        .into_iter()
        .filter(|(k, _)| !matches!(*k, "eps" | "step" | "c"))
        .collect();
    join(head, &kv, &rest)
}

/// The attack without its budget, and the budget: (name without strength, step size, iterations
/// and restarts; iterations (`iters=`, `steps=` or `queries=`, else the record's `steps`),
/// restarts (`restarts=`, else 1)).
pub fn attack_budget(row: &AttackRow) -> (String, Option<usize>, usize) {
    let (head, kv, rest) = tokens(&row.attack);
    let mut iters = row.steps;
    let mut restarts = 1;
    let mut keep = Vec::new();
    for (k, v) in kv {
        match k {
            "iters" | "steps" | "queries" => iters = v.parse().ok().or(iters),
            "restarts" => restarts = v.parse().unwrap_or(1),
            "eps" | "step" | "c" => {}
            _ => keep.push((k, v)),
        }
    }
    (join(head, &keep, &rest), iters, restarts)
}

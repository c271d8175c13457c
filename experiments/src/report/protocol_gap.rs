//! The "Protocol gap" section of a robustness report: the same attack at the same ε under the
//! seed paper's protocol (advep) and the standard one, and how much robustness survives.

/// A robustness gap above this many percentage points (advep minus standard) gets a warning.
pub const GAP_WARN_POINTS: f64 = 3.0;

/// One attack result as the gap section sees it.
#[derive(Debug, Clone)]
pub struct GapRow {
    /// Attack name as given on the command line / in the suite.
    pub attack: String,
    /// Strength as written in the report.
    pub eps_text: String,
    /// Strength value.
    pub eps: f64,
    /// Protocol of the run.
    pub protocol: String,
    /// Robust accuracy.
    pub robust_accuracy: f64,
}

/// The "Protocol gap" section of report.md: for every attack × ε run under both protocols, robust
/// accuracy under advep and standard, the gap in percentage points and the share of the advep
/// robustness that survives the standard evaluation; plus one warning per gap above
/// [`GAP_WARN_POINTS`]. Empty when no attack × ε ran under both.
pub fn gap_section(rows: &[GapRow]) -> (String, Vec<String>) {
    let find = |attack: &str, eps: f64, p: &str| {
        rows.iter()
            .find(|r| r.attack == attack && r.eps == eps && r.protocol == p)
    };
    let mut pairs = vec![];
    for r in rows.iter().filter(|r| r.protocol == "advep") {
        let seen = pairs
            .iter()
            .any(|(a, _): &(&GapRow, &GapRow)| a.attack == r.attack && a.eps == r.eps);
        if let Some(s) = find(&r.attack, r.eps, "standard").filter(|_| !seen) {
            pairs.push((r, s));
        }
    }
    if pairs.is_empty() {
        return (String::new(), vec![]);
    }
    let mut md = String::from(
        "\n## Protocol gap (advep vs standard)\n\nRobust accuracy of the same attack at the same ε under the seed paper's protocol (advep) and the standard one; gap = advep − standard in percentage points; surviving = standard / advep (how much of the paper-protocol robustness survives the honest evaluation).\n\n| attack | ε | advep | standard | gap (points) | surviving |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    let mut warnings = vec![];
    for (a, s) in pairs {
        let gap = 100.0 * (a.robust_accuracy - s.robust_accuracy);
        let surv = if a.robust_accuracy > 0.0 {
            format!("{:.0} %", 100.0 * s.robust_accuracy / a.robust_accuracy)
        } else {
            "-".into()
        };
        md += &format!(
            "| {} | {} | {:.4} | {:.4} | {gap:+.1} | {surv} |\n",
            a.attack, a.eps_text, a.robust_accuracy, s.robust_accuracy
        );
        if gap > GAP_WARN_POINTS {
            warnings.push(format!(
                "{} at ε={}: robust accuracy {:.4} under advep but {:.4} under standard ({gap:+.1} points): robustness that does not survive an honest evaluation",
                a.attack, a.eps_text, a.robust_accuracy, s.robust_accuracy
            ));
        }
    }
    (md, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_section_pairs_protocols_and_warns_on_large_gaps() {
        let row = |p: &str, eps: f64, acc: f64| GapRow {
            attack: "pgd-linf".into(),
            eps_text: format!("{eps}"),
            eps,
            protocol: p.into(),
            robust_accuracy: acc,
        };
        let rows = vec![
            row("advep", 0.01, 0.50),
            row("advep", 0.1, 0.20),
            row("standard", 0.01, 0.10),
            row("standard", 0.1, 0.19),
            row("standard", 0.3, 0.0),
        ];
        let (md, w) = gap_section(&rows);
        assert!(
            md.contains("| pgd-linf | 0.01 | 0.5000 | 0.1000 | +40.0 | 20 % |"),
            "{md}"
        );
        assert!(
            md.contains("| pgd-linf | 0.1 | 0.2000 | 0.1900 | +1.0 | 95 % |"),
            "{md}"
        );
        assert!(!md.contains("| 0.3 |"), "{md}");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("ε=0.01"));
        assert_eq!(gap_section(&rows[2..]), (String::new(), vec![]));
    }
}

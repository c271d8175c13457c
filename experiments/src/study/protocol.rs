//! The two evaluation protocols of `epsim attack` / `epsim robustness`, the seed paper's ε grids as
//! named presets, and the strengths they are read from (`0.03`, `8/255`, preset names).
//!
//! * `standard` (default): the honest evaluation — random starts, true labels, the [0, 1] box,
//!   fra31 AutoAttack ('standard', or 'rand' with EOT on stochastic substrates), gradients through
//!   the dynamics that is evaluated.
//! * `advep`: what the seed paper's code (lanl/AdvEP) ran through ART — PGD without random start on
//!   the predicted labels, 20 × 2.5ε/20, no box; Square on softmax outputs with 1000 queries; ART's
//!   AutoAttack ensemble ([`crate::attacks::ArtAutoAttack`]); combine with `--t-attack`/`--t-predict`
//!   for its truncated gradients.
//!
//! The paper's grids (lanl/AdvEP `CIFAR10Codes/model_utils.py`, robustness.md §0) are written there
//! as `np.logspace(np.log10(lo), np.log10(hi), 10)`: ten values spaced geometrically from `lo` to
//! `hi` (numpy's `logspace` takes exponents; the reference's shorthand "logspace(1e-4, 0.1, 10)"
//! means these endpoints), plus extra points.

use anyhow::{Context, Result, bail, ensure};

/// Names of the protocols.
pub const PROTOCOLS: [&str; 2] = ["standard", "advep"];

/// Check a protocol name.
pub fn check_protocol(p: &str) -> Result<()> {
    if PROTOCOLS.contains(&p) {
        Ok(())
    } else {
        bail!("unknown protocol {p:?} (expected one of {PROTOCOLS:?})")
    }
}

/// Parse "0.03", "8/255".
pub fn parse_strength(s: &str) -> Result<f64> {
    let t = s.trim();
    let v = match t.split_once('/') {
        Some((a, b)) => {
            let (a, b): (f64, f64) = (a.trim().parse()?, b.trim().parse()?);
            ensure!(b != 0.0, "division by zero in {t:?}");
            a / b
        }
        None => t.parse().with_context(|| format!("not a number: {t:?}"))?,
    };
    ensure!(
        v.is_finite() && v >= 0.0,
        "strength {t:?} must be finite and ≥ 0"
    );
    Ok(v)
}

/// `n` values spaced geometrically from `lo` to `hi` (numpy `logspace(log10(lo), log10(hi), n)`),
/// with the endpoints exact.
pub fn geomspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let (a, b) = (lo.log10(), hi.log10());
    (0..n)
        .map(|k| match k {
            0 => lo,
            _ if k + 1 == n => hi,
            _ => 10f64.powf(a + (b - a) * k as f64 / (n - 1) as f64),
        })
        .collect()
}

fn sorted_union(mut v: Vec<f64>, extra: &[f64]) -> Vec<f64> {
    v.extend_from_slice(extra);
    v.sort_by(f64::total_cmp);
    v
}

/// The named ε presets: (name, description).
pub const PRESETS: [(&str, &str); 6] = [
    (
        "paper-linf",
        "the paper's PGD L∞ grid: 10 values from 1e-4 to 0.1 (geometric) and 0.031",
    ),
    (
        "paper-l2",
        "the paper's PGD L2 grid: 10 values from 0.05 to 3 (geometric) and 1",
    ),
    (
        "paper-aa-linf",
        "the paper's AutoAttack L∞ grid: the L∞ grid with 8/255 instead of 0.031, from its 3rd value",
    ),
    (
        "paper-aa-l2",
        "the paper's AutoAttack L2 grid: the L2 grid and 0.005, from its 3rd value",
    ),
    (
        "paper-square-linf",
        "the paper's Square L∞ grid: as paper-aa-linf, from the 4th value",
    ),
    (
        "paper-square-l2",
        "the paper's Square L2 grid: as paper-aa-l2, from the 4th value",
    ),
];

/// The values of preset `name`, ascending; None if `name` is not a preset.
pub fn eps_preset(name: &str) -> Option<Vec<f64>> {
    let linf = || geomspace(1e-4, 0.1, 10);
    let l2 = || geomspace(0.05, 3.0, 10);
    Some(match name {
        "paper-linf" => sorted_union(linf(), &[0.031]),
        "paper-l2" => sorted_union(l2(), &[1.0]),
        "paper-aa-linf" => sorted_union(linf(), &[8.0 / 255.0])[2..].to_vec(),
        "paper-aa-l2" => sorted_union(l2(), &[1.0, 0.005])[2..].to_vec(),
        "paper-square-linf" => sorted_union(linf(), &[8.0 / 255.0])[3..].to_vec(),
        "paper-square-l2" => sorted_union(l2(), &[1.0, 0.005])[3..].to_vec(),
        _ => return None,
    })
}

/// `v` with 4 significant digits, trailing zeros dropped (0.0002154, 0.031, 1.208, 3).
pub fn format_sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let e = v.abs().log10().floor() as i32;
    let dec = (3 - e).max(0) as usize;
    let s = format!("{v:.dec$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Expand a list of strengths ("0.03", "8/255") and presets ("paper-linf", see [`PRESETS`]) into
/// (text, value) pairs; preset values get their 4-significant-digit text.
pub fn expand_eps(items: &[String]) -> Result<Vec<(String, f64)>> {
    let mut out = vec![];
    for s in items {
        match eps_preset(s.trim()) {
            Some(v) => out.extend(v.into_iter().map(|e| (format_sig(e), e))),
            None => {
                let v = parse_strength(s).with_context(|| {
                    format!(
                        "strength {s:?} is neither a number nor a preset ({})",
                        PRESETS.map(|p| p.0).join(", ")
                    )
                })?;
                out.push((s.clone(), v));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-9 * y.abs(), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn paper_grids_match_the_values_written_out_by_hand() {
        // 10^(−4 + k/3), k = 0..9, and 0.031 sorted in.
        close(
            &eps_preset("paper-linf").unwrap(),
            &[
                0.0001,
                0.00021544346900318845,
                0.00046415888336127773,
                0.001,
                0.002154434690031882,
                0.004641588833612782,
                0.01,
                0.021544346900318846,
                0.031,
                0.046415888336127774,
                0.1,
            ],
        );
        // 0.05·60^(k/9), k = 0..9, and 1 sorted in.
        close(
            &eps_preset("paper-l2").unwrap(),
            &[
                0.05,
                0.07880293000746184,
                0.12419803555521869,
                0.19574338205844316,
                0.30850304071550727,
                0.4862188704918655,
                0.766309432393553,
                1.0,
                1.2077485712993397,
                1.9034825226142793,
                3.0,
            ],
        );
        // AutoAttack: 8/255 instead of 0.031, loop from index 2; Square from index 3.
        let aa = eps_preset("paper-aa-linf").unwrap();
        close(&aa[..2], &[0.00046415888336127773, 0.001]);
        assert_eq!(aa.len(), 9);
        assert!(aa.contains(&(8.0 / 255.0)) && !aa.contains(&0.031));
        close(&eps_preset("paper-square-linf").unwrap()[..1], &[0.001]);
        // L2 AutoAttack: {0.005, 0.05, 0.0788, ...} from index 2 starts at 0.0788.
        let aa2 = eps_preset("paper-aa-l2").unwrap();
        assert_eq!(aa2.len(), 10);
        close(&aa2[..1], &[0.07880293000746184]);
        close(
            &eps_preset("paper-square-l2").unwrap()[..1],
            &[0.12419803555521869],
        );
        assert!(eps_preset("paper-l3").is_none());
    }

    #[test]
    fn eps_lists_mix_numbers_and_presets() {
        let v = expand_eps(&["8/255".into(), "paper-l2".into()]).unwrap();
        assert_eq!(v.len(), 12);
        assert_eq!(v[0], ("8/255".to_string(), 8.0 / 255.0));
        assert_eq!(v[1].0, "0.05");
        assert_eq!(v[2].0, "0.0788");
        assert_eq!(v[8].0, "1");
        assert_eq!(v[9].0, "1.208");
        let e = expand_eps(&["paper-lin".into()]).unwrap_err();
        assert!(format!("{e:#}").contains("paper-linf"), "{e:#}");
        assert_eq!(format_sig(0.00021544346900318845), "0.0002154");
        assert_eq!(format_sig(3.0), "3");
    }
}

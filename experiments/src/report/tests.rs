//! Tests of the merged report: tables, labels and sanity checks from synthetic records.

use super::checks::*;
use super::names::*;
use super::tables::*;
use crate::results::*;

fn atk(model: &str, attack: &str, eps: f64, text: &str, n: usize, clean: f64, rob: f64) -> String {
    format!(
        r#"{{"model":"{model}","substrate":"digital","protocol":"standard","attack":"{attack}","norm":"linf","eps":{eps},"eps_text":"{text}","steps":null,"t_predict":5,"t_attack":5,"seed":0,"data":"d","n":{n},"clean_accuracy":{clean},"robust_accuracy":{rob},"queries":1,"grads":1,"wall_s":0.1,"commit":"x"}}"#
    )
}

fn corr(model: &str, name: &str, sev: u32, acc: f64) -> String {
    format!(
        r#"{{"kind":"corruption","model":"{model}","substrate":"digital","corruption":"{name}","severity":{sev},"seed":0,"data":"d","n":100,"accuracy":{acc},"wall_s":0.1,"commit":"x","note":null}}"#
    )
}

fn row(attack: &str, eps: f64, n: usize, rob: f64) -> AttackRow {
    match parse_record(&atk("m.st", attack, eps, "", n, 0.9, rob)).unwrap() {
        Record::Attack(r) => r,
        _ => unreachable!(),
    }
}

#[test]
fn family_and_budget_are_parsed_from_the_name() {
    assert_eq!(
        attack_family("PGD-Linf eps=0.1 step=0.025 iters=10 restarts=1"),
        "PGD-Linf iters=10 restarts=1"
    );
    assert_eq!(
        attack_family("PGD-Linf eps=0.1 step=0.0125 iters=20 restarts=1 (no random start)"),
        "PGD-Linf iters=20 restarts=1 (no random start)"
    );
    assert_eq!(
        attack_family("CW-L2 c=0.5 kappa=0 steps=100"),
        "CW-L2 kappa=0 steps=100"
    );
    let r = row(
        "PGD-Linf eps=0.1 step=0.025 iters=40 restarts=3",
        0.1,
        10,
        0.5,
    );
    assert_eq!(attack_budget(&r), ("PGD-Linf".to_string(), Some(40), 3));
    let r = row("Square-Linf eps=0.1 queries=500 p_init=0.8", 0.1, 10, 0.5);
    assert_eq!(
        attack_budget(&r),
        ("Square-Linf p_init=0.8".to_string(), Some(500), 1)
    );
}

#[test]
fn noise_tolerance_is_two_binomial_std_at_least_one_image() {
    // p = 0.5, n = 100: 2·sqrt(0.25/100) = 0.1.
    assert!((noise_tolerance(0.5, 100) - 0.1).abs() < 1e-6);
    // p = 0: the floor of one image.
    assert!((noise_tolerance(0.0, 50) - 0.02).abs() < 1e-6);
}

#[test]
fn iteration_check_passes_within_noise_and_warns_beyond() {
    // n = 400, p ≈ 0.4: tolerance 2·sqrt(0.24/400) ≈ 0.049. 10 → 50 iterations lowers the
    // accuracy, 1 → 5 restarts raises it by 0.03 (< 0.049): PASS.
    let ok = vec![
        row(
            "PGD-Linf eps=0.03 step=0.01 iters=10 restarts=1",
            0.03,
            400,
            0.42,
        ),
        row(
            "PGD-Linf eps=0.03 step=0.01 iters=50 restarts=1",
            0.03,
            400,
            0.38,
        ),
        row(
            "PGD-Linf eps=0.03 step=0.01 iters=50 restarts=5",
            0.03,
            400,
            0.41,
        ),
    ];
    let c = iteration_checks(&ok);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].status, Status::Pass, "{c:?}");
    assert!(c[0].message.contains("0.4200"), "{}", c[0].message);
    // 50 iterations give 0.55 > 0.42 + 0.049: WARN (and only that pair, not 10 vs 10).
    let bad = vec![
        row(
            "PGD-Linf eps=0.03 step=0.01 iters=10 restarts=1",
            0.03,
            400,
            0.42,
        ),
        row(
            "PGD-Linf eps=0.03 step=0.01 iters=50 restarts=1",
            0.03,
            400,
            0.55,
        ),
    ];
    let c = iteration_checks(&bad);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].status, Status::Warn);
    assert!(c[0].message.contains("0.4200") && c[0].message.contains("0.5500"));
    // Different ε are different groups: no check at all with one budget each.
    let other = vec![
        row(
            "PGD-Linf eps=0.03 step=0.01 iters=10 restarts=1",
            0.03,
            400,
            0.42,
        ),
        row(
            "PGD-Linf eps=0.06 step=0.01 iters=50 restarts=1",
            0.06,
            400,
            0.55,
        ),
    ];
    assert!(iteration_checks(&other).is_empty());
    // Incomparable budgets (more iterations, fewer restarts) are not checked against each other.
    let cross = vec![
        row(
            "PGD-Linf eps=0.03 step=0.01 iters=10 restarts=5",
            0.03,
            400,
            0.20,
        ),
        row(
            "PGD-Linf eps=0.03 step=0.01 iters=50 restarts=1",
            0.03,
            400,
            0.60,
        ),
    ];
    let c = iteration_checks(&cross);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].status, Status::Pass);
}

#[test]
fn strength_checks_flag_rises_and_missing_collapse() {
    let pgd = "PGD-Linf eps=E step=0.01 iters=10 restarts=1";
    let rows = vec![
        row(pgd, 0.0, 100, 0.80),
        row(pgd, 0.03, 100, 0.30),
        // Rises by 0.25 > 2·sqrt(0.1775·0.8225/100) ≈ 0.076.
        row(pgd, 0.06, 100, 0.55),
        // Large ε, not collapsed.
        row(pgd, 0.5, 100, 0.20),
    ];
    let c = strength_checks(&rows);
    let warns: Vec<&Check> = c.iter().filter(|c| c.status == Status::Warn).collect();
    assert_eq!(warns.len(), 2, "{c:?}");
    assert!(warns[0].message.contains("rises"));
    assert!(warns[1].message.contains("large ε"));
    let good = vec![row(pgd, 0.0, 100, 0.8), row(pgd, 0.5, 100, 0.0)];
    let c = strength_checks(&good);
    assert!(c.iter().all(|c| c.status == Status::Pass), "{c:?}");
    assert_eq!(c.len(), 2);
}

#[test]
fn tables_put_models_side_by_side() {
    let pgd = "PGD-Linf eps=E step=0.01 iters=10 restarts=1";
    let lines = [
        atk(
            "runs/ep/checkpoint.safetensors",
            pgd,
            0.0,
            "0",
            100,
            0.9,
            0.9,
        ),
        atk(
            "runs/ep/checkpoint.safetensors",
            pgd,
            8.0 / 255.0,
            "8/255",
            100,
            0.9,
            0.4,
        ),
        atk(
            "runs/bp/bp.safetensors",
            pgd,
            8.0 / 255.0,
            "8/255",
            100,
            0.8,
            0.1,
        ),
        atk(
            "runs/bp/bp.safetensors",
            pgd,
            2.0 / 255.0,
            "2/255",
            100,
            0.8,
            0.5,
        ),
        // A rerun of the same cell: replaces the 0.1.
        atk(
            "runs/bp/bp.safetensors",
            pgd,
            8.0 / 255.0,
            "8/255",
            100,
            0.8,
            0.2,
        ),
        corr("runs/ep/checkpoint.safetensors", "gaussian_noise", 1, 0.8),
        corr("runs/ep/checkpoint.safetensors", "gaussian_noise", 5, 0.4),
        corr("runs/ep/checkpoint.safetensors", "defocus_blur", 1, 0.7),
        corr("runs/ep/checkpoint.safetensors", "defocus_blur", 5, 0.5),
        r#"{"kind":"protocol_gap","x":1}"#.to_string(),
        // The same model with other free-phase steps: a row of its own.
        atk(
            "runs/bp/bp.safetensors",
            pgd,
            2.0 / 255.0,
            "2/255",
            100,
            0.8,
            0.45,
        )
        .replace(
            "\"t_predict\":5,\"t_attack\":5",
            "\"t_predict\":9,\"t_attack\":9",
        ),
    ];
    let recs: Vec<Record> = lines.iter().map(|l| parse_record(l).unwrap()).collect();
    let models = vec![
        "runs/ep/checkpoint.safetensors".to_string(),
        "runs/bp/bp.safetensors".to_string(),
    ];
    let labels = model_labels(&models, &["checkpoint=EP-CNN".to_string()]).unwrap();
    let r = build(&recs, &labels);
    assert_eq!(r.attacks.len(), 1);
    let t = &r.attacks[0];
    assert_eq!(t.attack, "PGD-Linf iters=10 restarts=1");
    let cols: Vec<&str> = t.columns.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(cols, ["0", "2/255", "8/255"]);
    assert_eq!(t.rows.len(), 3);
    assert_eq!(t.rows[0].label, "EP-CNN");
    assert_eq!(t.rows[0].cells, vec![Some(0.9), None, Some(0.4)]);
    assert_eq!(t.rows[1].label, "bp (T 5)");
    assert_eq!(t.rows[1].clean, Some(0.8));
    assert_eq!(t.rows[1].cells, vec![None, Some(0.5), Some(0.2)]);
    assert_eq!(t.rows[2].label, "bp (T 9)");
    assert_eq!(t.rows[2].cells, vec![None, Some(0.45), None]);
    let c = r.corruptions.as_ref().unwrap();
    // Library order: noise before blur.
    assert_eq!(c.names, ["gaussian_noise", "defocus_blur"]);
    assert_eq!(c.severities, [1, 5]);
    let row = &c.by_corruption[0];
    assert_eq!(row.label, "EP-CNN");
    // (0.8 + 0.4)/2, (0.7 + 0.5)/2, mean of all four = 0.6.
    for (got, want) in row.cells.iter().zip([0.6, 0.6, 0.6]) {
        assert!((got.unwrap() - want).abs() < 1e-12);
    }
    // Same model and data as an attack record: its clean accuracy.
    assert_eq!(row.clean, Some(0.9));
    let s = &c.by_severity[0].cells;
    assert!((s[0].unwrap() - 0.75).abs() < 1e-12 && (s[1].unwrap() - 0.45).abs() < 1e-12);
    assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
    let md = r.to_markdown(&[], &[Some("p.png".into())]);
    assert!(md.contains("| EP-CNN | 90.0 | 90.0 | – | 40.0 |"), "{md}");
    assert!(md.contains("| bp (T 5) | 80.0 | – | 50.0 | 20.0 |"), "{md}");
    assert!(
        md.contains("| EP-CNN | 90.0 | 60.0 | 60.0 | 60.0 |"),
        "{md}"
    );
    assert!(md.contains("| EP-CNN | 90.0 | 75.0 | 45.0 |"), "{md}");
    assert!(
        md.contains("![PGD-Linf iters=10 restarts=1](p.png)"),
        "{md}"
    );
}

#[test]
fn labels_default_to_stems_and_disambiguate() {
    let models = vec![
        "a/model.st".to_string(),
        "b/model.st".to_string(),
        "c/x.st".into(),
    ];
    let l = model_labels(&models, &[]).unwrap();
    assert_eq!(l["a/model.st"], "a/model");
    assert_eq!(l["b/model.st"], "b/model");
    assert_eq!(l["c/x.st"], "x");
    let l = model_labels(&models, &["b/model.st=BP".into(), "x.st=ViT".into()]).unwrap();
    assert_eq!(l["b/model.st"], "BP");
    assert_eq!(l["c/x.st"], "ViT");
    let e = model_labels(&models, &["model=M".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("several models"), "{e}");
    let e = model_labels(&models, &["nope=M".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no record has model \"nope\""), "{e}");
    let e = model_labels(&models, &["noequals".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("PATH=NAME"), "{e}");
}

#[test]
fn malformed_lines_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.jsonl");
    let good = atk("m", "PGD-Linf eps=0.1", 0.1, "0.1", 10, 0.5, 0.2);
    std::fs::write(&p, format!("{good}\n\n{{\"model\": 3\n")).unwrap();
    let e = format!("{:#}", read_results(&p).unwrap_err());
    assert!(e.contains(&format!("{}:3", p.display())), "{e}");
    assert!(e.contains("not valid JSON"), "{e}");
    // Valid JSON but no accuracy: also an error, naming line 2.
    std::fs::write(
        &p,
        format!("{good}\n{{\"model\":\"m\",\"attack\":\"a\"}}\n"),
    )
    .unwrap();
    let e = format!("{:#}", read_results(&p).unwrap_err());
    assert!(e.contains(&format!("{}:2", p.display())), "{e}");
    assert!(e.contains("not a valid attack record"), "{e}");
    std::fs::write(&p, format!("{good}\n")).unwrap();
    assert_eq!(read_results(&p).unwrap().len(), 1);
}

/// A plot that cannot be written fails with the file and the I/O error in words, not a Debug dump
/// of plotters' error enums (issue 17).
#[test]
fn an_unwritable_plot_names_the_file_and_the_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let series = [crate::report::plot::Series {
        label: "s".into(),
        points: vec![(0.0, 0.5), (1.0, 0.7)],
    }];
    for name in ["p.png", "p.svg"] {
        // A path under a regular file: no directory can be created there.
        let path = file.join(name);
        let e = crate::report::plot::line_chart(&path, "t", "x", "y", &series, None)
            .expect_err("a plot under a regular file");
        let msg = format!("{e:#}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            !msg.contains("BackendError(") && !msg.contains("DrawingError("),
            "a Debug dump: {msg}"
        );
    }
    // The same call into a directory works.
    crate::report::plot::line_chart(&dir.path().join("ok.png"), "t", "x", "y", &series, None)
        .unwrap();
}

#[test]
fn tick_labels_carry_no_float_noise() {
    use crate::report::plot::tick;
    assert_eq!(tick(0.1 * 4.6), "0.46"); // 0.45999999999999996
    assert_eq!(tick(0.1 + 0.2), "0.3");
    assert_eq!(tick(2.0), "2");
    assert_eq!(tick(-0.00001), "0");
    assert_eq!(tick(0.0005), "0.0005");
    assert_eq!(tick(1250.0), "1250");
}

#[test]
fn clean_records_give_the_summary_clean_and_cw_shows_its_distortion() {
    let cw = |c: f64, text: &str, rob: f64, l2: Option<f64>| {
        let mut v: serde_json::Value = serde_json::from_str(&atk(
            "m.st",
            &format!("CW-L2 c={c} kappa=0 steps=100"),
            c,
            text,
            50,
            0.8,
            rob,
        ))
        .unwrap();
        v["mean_l2_fooled"] = serde_json::json!(l2);
        v.to_string()
    };
    let clean = r#"{"kind":"clean","model":"m.st","substrate":"digital","seed":0,"data":"d","n":400,"accuracy":0.75,"t_predict":5,"wall_s":0.1,"commit":"x"}"#;
    let lines = [
        cw(0.1, "0.1", 0.6, Some(0.25)),
        cw(1.0, "1", 0.0, Some(0.5)),
        clean.to_string(),
    ];
    let recs: Vec<Record> = lines.iter().map(|l| parse_record(l).unwrap()).collect();
    assert!(matches!(recs[2], Record::Clean(_)));
    let report = build(&recs, &std::collections::HashMap::new());
    let s = &report.summary[0];
    // Clean from the clean record (400 images), not from the attack records (0.8 on 50).
    assert_eq!((s.clean, s.clean_n, s.n), (Some(0.75), 400, 50));
    assert_eq!(report.attacks[0].rows[0].l2, vec![Some(0.25), Some(0.5)]);
    assert_eq!(report.attacks[0].rows[0].n, 50);
    let md = report.to_markdown(&[], &[]);
    assert!(
        md.contains("| m.st | 400 (attacks ≤ 50) | 75.0 ± 2.2 | 30.0 ± 6.5 | 2 |"),
        "{md}"
    );
    assert!(
        md.contains("Mean L2 distance of the successful adversarial examples"),
        "{md}"
    );
    assert!(md.contains("| m.st | 0.250 | 0.500 |"), "{md}");
    assert!(
        md.contains("50 images per cell (one binomial standard deviation: ≤ 7.1 points)"),
        "{md}"
    );
}

/// Records of several seeds at one cell are averaged (sample std beside them); a repeated record
/// of one seed replaces the earlier one; clean records and corruptions likewise.
#[test]
fn seeds_are_averaged_with_their_spread_and_repeats_of_a_seed_replace() {
    let pgd = "PGD-Linf eps=0.1 step=0.025 iters=10 restarts=1";
    let seeded = |line: String, seed: u64| line.replace("\"seed\":0", &format!("\"seed\":{seed}"));
    let lines = [
        seeded(atk("m.st", pgd, 0.1, "0.1", 100, 0.9, 0.10), 0),
        // Seed 0 again: replaces 0.10.
        seeded(atk("m.st", pgd, 0.1, "0.1", 100, 0.9, 0.40), 0),
        seeded(atk("m.st", pgd, 0.1, "0.1", 100, 0.7, 0.60), 1),
        seeded(atk("m.st", pgd, 0.1, "0.1", 100, 0.8, 0.80), 2),
        seeded(corr("m.st", "contrast", 1, 0.2), 0),
        seeded(corr("m.st", "contrast", 1, 0.4), 1),
        seeded(corr("m.st", "contrast", 2, 0.0), 1),
        r#"{"kind":"clean","model":"m.st","substrate":"digital","seed":0,"data":"d","n":100,"accuracy":0.75}"#.into(),
        r#"{"kind":"clean","model":"m.st","substrate":"digital","seed":1,"data":"d","n":100,"accuracy":0.65}"#.into(),
    ];
    let recs: Vec<Record> = lines.iter().map(|l| parse_record(l).unwrap()).collect();
    let r = build(&recs, &model_labels(&["m.st".to_string()], &[]).unwrap());
    let row = &r.attacks[0].rows[0];
    assert_eq!(row.seeds, 3);
    // Seeds 0, 1, 2: 0.4, 0.6, 0.8 → mean 0.6, sample std 0.2 (not the last record's 0.8).
    assert!((row.cells[0].unwrap() - 0.6).abs() < 1e-12, "{row:?}");
    assert!((row.spread[0].unwrap() - 0.2).abs() < 1e-12, "{row:?}");
    // Clean of the attack records: mean of the seeds' 0.9, 0.7, 0.8.
    assert!((row.clean.unwrap() - 0.8).abs() < 1e-12, "{row:?}");
    // The summary's clean is the clean records' mean over their seeds: (0.75 + 0.65) / 2.
    assert!(
        (r.summary[0].clean.unwrap() - 0.7).abs() < 1e-12,
        "{:?}",
        r.summary
    );
    assert!(
        r.notes.iter().any(|n| n.starts_with("1 record(s) repeat")),
        "{:?}",
        r.notes
    );
    // Corruptions: contrast per seed = mean over its severities (seed 0: 0.2; seed 1: 0.2) →
    // 0.2 ± 0; severity 1: seeds 0.2, 0.4 → 0.3 ± 0.1414; severity 2: one seed → no spread.
    let c = r.corruptions.as_ref().unwrap();
    let bc = &c.by_corruption[0];
    assert!((bc.cells[0].unwrap() - 0.2).abs() < 1e-12 && bc.spread[0].unwrap().abs() < 1e-12);
    let bs = &c.by_severity[0];
    assert!((bs.cells[0].unwrap() - 0.3).abs() < 1e-12);
    assert!(
        (bs.spread[0].unwrap() - 0.02f64.sqrt()).abs() < 1e-12,
        "{bs:?}"
    );
    assert_eq!((bs.cells[1], bs.spread[1]), (Some(0.0), None));
    let md = r.to_markdown(&[], &[]);
    assert!(md.contains("| m | 80.0 | 60.0 ± 20.0 |"), "{md}");
    assert!(
        md.contains("mean ± sample standard deviation over the seeds"),
        "{md}"
    );
}

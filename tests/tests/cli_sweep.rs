//! `epsim sweep` end to end on a tiny EP-CNN trained in-test: the records, the parity of a noise
//! scale's level 0 with the digital substrate, the markdown table against the JSONL means, the
//! plots, and the up-front validation of `--param`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use epsim_tests::{epsim, epsim_failure, s, tiny_config, write_tiny_cifar};

/// The error of a command line that must fail.
fn run_err(args: &[&str]) -> String {
    let (code, message) = epsim_failure(args);
    assert_eq!(code, 1, "{message}");
    message
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The cells of the table row of `item` in sweep.md.
fn row(md: &str, item: &str) -> Vec<String> {
    let line = md
        .lines()
        .find(|l| l.starts_with(&format!("| {item} |")))
        .unwrap_or_else(|| panic!("no row {item} in\n{md}"));
    line.trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

fn is_png(p: &Path) -> bool {
    std::fs::read(p).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn sweep_records_parity_table_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_tiny_cifar(&d.join("train.bin"), 64, 1);
    write_tiny_cifar(&d.join("test.bin"), 16, 2);
    std::fs::write(
        d.join("cfg.toml"),
        tiny_config(&d.join("train.bin"), &d.join("test.bin"), 1),
    )
    .unwrap();
    let run = d.join("run");
    assert_eq!(
        epsim(&[
            "train",
            "--config",
            s(&d.join("cfg.toml")),
            "--out",
            s(&run)
        ]),
        ExitCode::SUCCESS
    );
    let ckpt = run.join("checkpoint.safetensors");
    let data = format!("cifar10:{}:test", d.join("test.bin").display());
    let suite = d.join("suite.toml");
    std::fs::write(
        &suite,
        "[[attack]]\nname = \"pgd-linf\"\neps = [\"8/255\"]\nsteps = 2\n\n\
         [corruptions]\nnames = [\"gaussian_noise\"]\nseverities = [2]\n",
    )
    .unwrap();
    // PCM with every non-ideality but the programming noise off: level 0 is the ideal substrate.
    let base = "drift_scale=0,read_noise_scale=0,adc.bits=0,adc.bound=inf,adc.noise_std=0,\
                dac.bits=0,dac.bound=inf";
    let out = d.join("sweep");
    let common = |out: &Path, param: &str| -> Vec<String> {
        [
            "--seed",
            "5",
            "sweep",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--device",
            "pcm",
            "--set",
            base,
            "--param",
            param,
            "--suite",
            s(&suite),
            "--substrate-seeds",
            "2",
            "--tile",
            "16x4",
            "--batch-size",
            "8",
            "--eot",
            "1",
            "--out-dir",
            s(out),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let args = common(&out, "prog_noise_scale=0,1,4");
    let argv: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
    assert_eq!(epsim(&argv), ExitCode::SUCCESS);

    // 1 digital run + 3 levels × 2 seeds, each: clean, pgd-linf@8/255, gaussian_noise@s2.
    let recs = records(&out.join("results.jsonl"));
    assert_eq!(recs.len(), (1 + 3 * 2) * 3);
    for r in &recs {
        assert_eq!(r["sweep_param"], "prog_noise_scale", "{r}");
        assert!(
            r.get("level").is_some() && r.get("substrate_seed").is_some(),
            "{r}"
        );
        assert!(r["accuracy"].is_number(), "{r}");
    }
    let digital: BTreeMap<String, f64> = recs
        .iter()
        .filter(|r| r["substrate"] == "digital")
        .map(|r| {
            (
                r["item"].as_str().unwrap().to_string(),
                r["accuracy"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        digital.keys().collect::<Vec<_>>(),
        ["clean", "gaussian_noise@s2", "pgd-linf@8/255"]
    );
    assert!(
        recs.iter()
            .filter(|r| r["substrate"] == "digital")
            .all(|r| r["level"].is_null() && r["substrate_seed"].is_null())
    );
    let seeds: std::collections::BTreeSet<u64> = recs
        .iter()
        .filter_map(|r| r["substrate_seed"].as_u64())
        .collect();
    assert_eq!(seeds.into_iter().collect::<Vec<_>>(), [5, 6]);

    // Parity: at prog_noise_scale = 0 every seed realizes the digital network (same attack seed).
    let n = 16.0;
    for r in recs.iter().filter(|r| r["level"] == 0.0) {
        let item = r["item"].as_str().unwrap();
        let acc = r["accuracy"].as_f64().unwrap();
        let tol = if item.starts_with("pgd") {
            1.0 / n
        } else {
            0.0
        };
        assert!(
            (acc - digital[item]).abs() <= tol + 1e-12,
            "{item}: level 0 {acc} vs digital {}",
            digital[item]
        );
    }

    // The table: digital and mean ± std per level, equal to the JSONL (4 decimals).
    let md = std::fs::read_to_string(out.join("sweep.md")).unwrap();
    let header = row(&md, "item");
    assert_eq!(
        header[1..],
        [
            "digital",
            "prog_noise_scale=0",
            "prog_noise_scale=1",
            "prog_noise_scale=4"
        ]
    );
    for (item, dig) in &digital {
        let cells = row(&md, item);
        assert_eq!(cells[1], format!("{dig:.4}"), "{item}");
        for (j, level) in [0.0, 1.0, 4.0].iter().enumerate() {
            let v: Vec<f64> = recs
                .iter()
                .filter(|r| r["item"] == item.as_str() && r["level"] == *level)
                .map(|r| r["accuracy"].as_f64().unwrap())
                .collect();
            assert_eq!(v.len(), 2);
            let mean = (v[0] + v[1]) / 2.0;
            let std = (v[0] - v[1]).abs() / 2f64.sqrt();
            let (m, sd) = cells[2 + j].split_once(" ± ").unwrap();
            assert!(
                (m.parse::<f64>().unwrap() - mean).abs() < 5.1e-5,
                "{item} {level}: {m} vs {mean}"
            );
            assert!(
                (sd.parse::<f64>().unwrap() - std).abs() < 5.1e-5,
                "{item} {level}: {sd} vs {std}"
            );
        }
    }
    for f in ["clean.png", "pgd-linf_8_255.png", "gaussian_noise_s2.png"] {
        assert!(is_png(&out.join(f)), "{f}");
        assert!(md.contains(f), "{f} not linked");
    }

    // Resume: a second sweep into the same directory is refused without --resume (file untouched);
    // with it, complete runs are kept (their lines byte for byte) and a partly recorded run redone.
    let jsonl = out.join("results.jsonl");
    let full = std::fs::read_to_string(&jsonl).unwrap();
    assert_ne!(epsim(&argv), ExitCode::SUCCESS);
    assert_eq!(std::fs::read_to_string(&jsonl).unwrap(), full);
    let lines: Vec<&str> = full.lines().collect();
    // digital (3 items) + level 0 seed 5 (3) complete, level 0 seed 6 cut after 1 item.
    std::fs::write(&jsonl, lines[..7].join("\n") + "\n").unwrap();
    let mut resumed = args.clone();
    resumed.push("--resume".into());
    let argv_r: Vec<&str> = resumed.iter().map(|a| a.as_str()).collect();
    assert_eq!(epsim(&argv_r), ExitCode::SUCCESS);
    let after = std::fs::read_to_string(&jsonl).unwrap();
    let after_lines: Vec<&str> = after.lines().collect();
    assert_eq!(after_lines.len(), lines.len());
    for kept in &lines[..6] {
        assert!(
            after_lines.contains(kept),
            "complete run's line lost or rerun: {kept}"
        );
    }
    let key = |r: &serde_json::Value| {
        format!(
            "{} {} {} {}",
            r["item"], r["level_text"], r["substrate_seed"], r["accuracy"]
        )
    };
    let mut want: Vec<String> = recs.iter().map(key).collect();
    let mut got: Vec<String> = records(&jsonl).iter().map(key).collect();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "resumed sweep differs from the uninterrupted one"
    );
    assert_eq!(std::fs::read_to_string(out.join("sweep.md")).unwrap(), md);
    // A corrupt results file is an error naming the file and the line.
    std::fs::write(&jsonl, format!("{}\n{{not json\n", lines[0])).unwrap();
    let err = run_err(&argv_r);
    assert!(err.contains("results.jsonl line 2"), "{err}");

    // Categorical levels (any --set key): recorded as text, plotted by index.
    let suite2 = d.join("suite2.toml");
    std::fs::write(
        &suite2,
        "[corruptions]\nnames = [\"contrast\"]\nseverities = [1]\n",
    )
    .unwrap();
    let out2 = d.join("sweep2");
    let argv2 = [
        "sweep",
        "--model",
        s(&ckpt),
        "--data",
        &data,
        "--device",
        "pcm",
        "--param",
        "bound_management=none,iterative",
        "--suite",
        s(&suite2),
        "--tile",
        "16x4",
        "--out-dir",
        s(&out2),
    ];
    assert_eq!(epsim(&argv2), ExitCode::SUCCESS);
    let recs2 = records(&out2.join("results.jsonl"));
    assert_eq!(recs2.len(), (1 + 2) * 2);
    assert!(recs2.iter().any(|r| r["level"] == "iterative"));
    assert!(is_png(&out2.join("contrast_s1.png")));
    // One substrate seed (the default): the table shows no "± 0.0000" spread.
    let md2 = std::fs::read_to_string(out2.join("sweep.md")).unwrap();
    let row2 = row(&md2, "contrast@s1");
    assert_eq!(row2.len(), 4, "{md2}");
    assert!(row2.iter().all(|c| !c.contains('±')), "{md2}");

    // The cost per inference of every level, from the clean run's counted reads: over ADC bits
    // (bound management off, so every level makes the same reads) the ADC energy per read follows
    // the Walden law FoM·2^bits exactly, and the other parts do not move with the ADC (the array
    // term only as the states do).
    let out3 = d.join("sweep3");
    let suite3 = d.join("suite3.toml");
    std::fs::write(
        &suite3,
        "[corruptions]\nnames = [\"contrast\"]\nseverities = [1]\n",
    )
    .unwrap();
    let argv3 = [
        "sweep",
        "--model",
        s(&ckpt),
        "--data",
        &data,
        "--device",
        "pcm",
        "--set",
        "bound_management=none",
        "--param",
        "adc.bits=4,6,8",
        "--suite",
        s(&suite3),
        "--tile",
        "16x4",
        "--out-dir",
        s(&out3),
    ];
    assert_eq!(epsim(&argv3), ExitCode::SUCCESS);
    let clean3: Vec<serde_json::Value> = records(&out3.join("results.jsonl"))
        .into_iter()
        .filter(|r| r["item"] == "clean" && r["substrate"] != "digital")
        .collect();
    assert_eq!(clean3.len(), 3);
    let part = |r: &serde_json::Value, k: &str| r["energy_parts_j"][k].as_f64().unwrap();
    let reads0 = clean3[0]["vector_reads"].as_f64().unwrap();
    assert!(reads0 > 0.0, "{}", clean3[0]);
    for (r, bits) in clean3.iter().zip([4, 6, 8]) {
        assert_eq!(r["level"].as_f64(), Some(f64::from(bits)), "{r}");
        assert_eq!(r["vector_reads"].as_f64().unwrap(), reads0, "{r}");
        let total: f64 = experiments::cost::PARTS.iter().map(|k| part(r, k)).sum();
        let e = r["energy_j"].as_f64().unwrap();
        assert!((e - total).abs() <= 1e-12 * e, "{r}");
        let want = part(&clean3[0], "ADC") * f64::from(1u32 << (bits - 4));
        assert!((part(r, "ADC") - want).abs() <= 1e-9 * want, "{r}");
        for k in ["DAC", "neurons"] {
            assert_eq!(part(r, k), part(&clean3[0], k), "{k}: {r}");
        }
        // The array term follows the inputs each read drives, i.e. the neurons' states, which the
        // ADC's resolution moves a little.
        let a0 = part(&clean3[0], "array");
        assert!((part(r, "array") - a0).abs() <= 0.01 * a0, "array: {r}");
        assert!(r["latency_s"].as_f64().unwrap() > 0.0, "{r}");
    }
    let md3 = std::fs::read_to_string(out3.join("sweep.md")).unwrap();
    assert!(md3.contains("## Cost per inference"), "{md3}");
    assert_eq!(row(&md3, "adc.bits=8").len(), 5, "{md3}");
    assert!(is_png(&out3.join("energy.png")));

    // Bad --param keys or values fail before the first run (no results file), naming them.
    for bad in [
        "no_such_knob=1,2",
        "prog_noise_scale=0,-1",
        "prog_noise_scale",
        "prog_noise_scale=0,,1",
        "bound_management=none,sometimes",
    ] {
        let o = d.join("bad");
        let args = common(&o, bad);
        let argv: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
        assert_eq!(epsim(&argv), ExitCode::FAILURE, "{bad}");
        assert!(!o.join("results.jsonl").exists(), "{bad}: started anyway");
    }
    let err = experiments::study::levels::SweepParam::parse("prog_noise_scale")
        .unwrap_err()
        .to_string();
    assert!(err.contains("KEY=V1,V2"), "{err}");
    let p = experiments::classifier::substrate::load_preset(
        "pcm",
        &experiments::study::levels::SweepParam::parse("no_such_knob=1")
            .unwrap()
            .sets(&[], 0),
    )
    .unwrap_err();
    assert!(format!("{p:#}").contains("no_such_knob"), "{p:#}");
}

/// The whole record of every line of a results file, but its timing.
fn records_untimed(path: &Path) -> Vec<serde_json::Value> {
    records(path)
        .into_iter()
        .map(|mut v| {
            v.as_object_mut().unwrap().remove("wall_s");
            v
        })
        .collect()
}

/// `epsim sweep` under the index contract (the one `epsim study` has): plan (cell 0 digital,
/// then level × substrate seed), count, run-cell by index (a done cell kept as it is), collect
/// naming exactly the missing cells of a partial run, then the collected results.jsonl and
/// sweep.md equal to a local run's; a suite edited after planning is refused.
#[test]
fn a_sweep_as_cells_equals_the_local_run() {
    use epsim_tests::{tiny_cifar_ep_net, write_ep_model};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_ep_model(&tiny_cifar_ep_net(true), &d.join("m.safetensors"));
    write_tiny_cifar(&d.join("test.bin"), 24, 2);
    let data = format!("cifar10:{}:test", d.join("test.bin").display());
    let suite = d.join("suite.toml");
    std::fs::write(
        &suite,
        "[[attack]]\nname = \"pgd-linf\"\neps = [\"0.05\"]\nsteps = 2\n\n\
         [corruptions]\nnames = [\"contrast\"]\nseverities = [1]\n",
    )
    .unwrap();
    let args = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--seed",
            "3",
            "sweep",
            "--model",
            s(&d.join("m.safetensors")),
            "--data",
            &data,
            "--preset",
            "pcm",
            "--param",
            "prog_noise_scale=0.5,2",
            "--suite",
            s(&suite),
            "--substrate-seeds",
            "2",
            "--tile",
            "16x8",
            "--batch-size",
            "8",
            "--eot",
            "1",
            "--out-dir",
            s(out),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        v.extend(extra.iter().map(|a| a.to_string()));
        v
    };
    let run = |out: &Path, extra: &[&str]| {
        let a = args(out, extra);
        epsim(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let fail = |out: &Path, extra: &[&str]| {
        let a = args(out, extra);
        run_err(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (local, arr) = (d.join("local"), d.join("arr"));
    assert_eq!(run(&local, &[]), ExitCode::SUCCESS);

    // run-cell before plan is refused, naming the step.
    let e = fail(&arr, &["--run-cell", "--index", "0"]);
    assert!(e.contains("--plan` first"), "{e}");
    assert_eq!(run(&arr, &["--plan"]), ExitCode::SUCCESS);
    let plan = std::fs::read_to_string(arr.join("plan.jsonl")).unwrap();
    let cells: Vec<serde_json::Value> = plan
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 1 digital + 2 levels × 2 substrate seeds.
    assert_eq!(cells.len(), 5);
    assert!(cells[0]["level"].is_null() && cells[0]["substrate_seed"].is_null());
    assert_eq!(
        (&cells[4]["level"], &cells[4]["substrate_seed"]),
        (&serde_json::json!("2"), &serde_json::json!(4))
    );
    for i in ["0", "3"] {
        assert_eq!(run(&arr, &["--run-cell", "--index", i]), ExitCode::SUCCESS);
    }
    // A partial run collects nothing and names exactly the missing cells.
    let e = fail(&arr, &["--collect"]);
    assert!(
        e.contains("3 of 5 cells are not done: missing [1, 2, 4]"),
        "{e}"
    );
    assert!(!arr.join("results.jsonl").exists());
    // A done cell is kept as it is.
    let cell3 = experiments::study::cells::cell_path(&arr, 3);
    let before = std::fs::read(&cell3).unwrap();
    assert_eq!(
        run(&arr, &["--run-cell", "--index", "3"]),
        ExitCode::SUCCESS
    );
    assert_eq!(std::fs::read(&cell3).unwrap(), before);
    // The other cells as array tasks of 2 cells (task 0: cells 0, 1; task 2: cell 4).
    for t in ["0", "1", "2"] {
        assert_eq!(
            run(
                &arr,
                &["--run-cell", "--index", t, "--points-per-task", "2"]
            ),
            ExitCode::SUCCESS
        );
    }
    assert_eq!(run(&arr, &["--collect"]), ExitCode::SUCCESS);
    let (got, want) = (
        records_untimed(&arr.join("results.jsonl")),
        records_untimed(&local.join("results.jsonl")),
    );
    assert_eq!(got.len(), 5 * 3);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "record {i}");
    }
    let md = |dir: &Path| std::fs::read_to_string(dir.join("sweep.md")).unwrap();
    assert_eq!(md(&arr), md(&local));
    assert!(is_png(&arr.join("pgd-linf_0.05.png")));

    // A suite edited after planning (PGD steps, which the cell list does not show) is refused.
    std::fs::write(
        &suite,
        std::fs::read_to_string(&suite)
            .unwrap()
            .replace("steps = 2", "steps = 3"),
    )
    .unwrap();
    let e = fail(&arr, &["--run-cell", "--index", "0"]);
    assert!(e.contains("changed after planning"), "{e}");

    // A settle to a tolerance is part of the sweep: its records and sweep.md name it, and a task
    // given other settle flags than the plan's is refused.
    std::fs::write(
        &suite,
        std::fs::read_to_string(&suite)
            .unwrap()
            .replace("steps = 3", "steps = 2"),
    )
    .unwrap();
    let tol = d.join("tol");
    assert_eq!(run(&tol, &["--tol", "0.05"]), ExitCode::SUCCESS);
    let recs = records_untimed(&tol.join("results.jsonl"));
    assert_eq!(recs.len(), 5 * 3);
    for r in &recs {
        assert_eq!(r["settle"]["tol"].as_f64().unwrap() as f32, 0.05, "{r}");
    }
    assert!(md(&tol).contains("settle plain, tol 5e-2"), "{}", md(&tol));
    let planned = d.join("planned");
    assert_eq!(
        run(&planned, &["--tol", "0.05", "--plan"]),
        ExitCode::SUCCESS
    );
    let e = fail(&planned, &["--run-cell", "--index", "0"]);
    assert!(e.contains("was planned from another version"), "{e}");
    assert_eq!(
        run(&planned, &["--tol", "0.05", "--run-cell", "--index", "0"]),
        ExitCode::SUCCESS
    );
}

/// A backprop baseline swept: the shipped quick-start BP-CNN realized on PCM as its feed-forward
/// form at every level (records with the cost of one read per synapse), beside its digital run;
/// `--t-predict` is refused for it.
#[test]
fn a_bp_cnn_is_swept_as_a_feed_forward_realization() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/quickstart-bpcnn.safetensors");
    let suite = d.join("suite.toml");
    std::fs::write(
        &suite,
        "[[attack]]\nname = \"pgd-linf\"\neps = [\"0.05\"]\nsteps = 2\n",
    )
    .unwrap();
    let out = d.join("sweep");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "sweep",
            "--model",
            s(&model),
            "--data",
            "fashion-mnist:test",
            "--subset",
            "40",
            "--preset",
            "pcm",
            "--param",
            "prog_noise_scale=0,4",
            "--suite",
            s(&suite),
            "--eot",
            "1",
            "--out-dir",
            s(&out),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        v.extend(extra.iter().map(|a| a.to_string()));
        v
    };
    let e = {
        let a = args(&["--t-predict", "5"]);
        run_err(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    assert!(e.contains("EP models only"), "{e}");
    let a = args(&[]);
    assert_eq!(
        epsim(&a.iter().map(String::as_str).collect::<Vec<_>>()),
        ExitCode::SUCCESS
    );
    let recs = records(&out.join("results.jsonl"));
    // digital + 2 levels, each: clean and one attack.
    assert_eq!(recs.len(), 3 * 2);
    for r in recs.iter().filter(|r| r["kind"] == "clean") {
        if r["substrate"] == "digital" {
            assert!(r.get("energy_j").is_none(), "{r}");
        } else {
            // One read per synapse: one free-phase "step" per inference.
            assert_eq!(r["free_phase_steps"], 1.0, "{r}");
            assert!(r["energy_j"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r["accuracy"].as_f64().unwrap() > 0.5, "{r}");
        }
    }
    let md = std::fs::read_to_string(out.join("sweep.md")).unwrap();
    assert!(md.contains("## Cost per inference"), "{md}");
}

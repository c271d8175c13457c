//! `epsim study` end to end on a tiny study (2 models × 2 substrates × PGD at 2 ε + one
//! corruption, 16 images): the report's tables hold the records of results.jsonl, the digital
//! cells equal what `epsim robustness` gives for the same suite, a resumed study redoes only the
//! missing cells and gives the same records, and a changed study or a reused directory without
//! `--resume` is refused before any work.

use std::path::Path;
use std::process::ExitCode;

use epsim_tests::{
    epsim, s, tiny_cifar_ep_net, tiny_study_text as study_text, write_ep_model, write_tiny_cifar,
};
use experiments::study::cells::{StudyOptions, run_study};
use experiments::study::spec::StudySpec;
use serde_json::Value;

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The cell of `table` (a markdown table section of report.md) at row `row`, column `col`.
fn cell(section: &str, row: &str, col: &str) -> String {
    let lines: Vec<&str> = section.lines().filter(|l| l.starts_with('|')).collect();
    let head: Vec<&str> = lines[0].split('|').map(str::trim).collect();
    let j = head.iter().position(|h| *h == col).unwrap_or_else(|| {
        panic!("no column {col:?} in {:?}", lines[0]);
    });
    let r = lines
        .iter()
        .find(|l| l.split('|').nth(1).map(str::trim) == Some(row))
        .unwrap_or_else(|| panic!("no row {row:?} in\n{section}"));
    r.split('|').nth(j).unwrap().trim().to_string()
}

#[test]
fn a_tiny_study_runs_reports_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_ep_model(&tiny_cifar_ep_net(true), &d.join("a.safetensors"));
    write_ep_model(&tiny_cifar_ep_net(false), &d.join("b.safetensors"));
    write_tiny_cifar(&d.join("test.bin"), 80, 2);
    let out = d.join("out");
    let study = d.join("study.toml");
    std::fs::write(&study, study_text(d, &out, "\"0.02\", \"0.1\"")).unwrap();
    // Relative paths in the study are relative to its folder; run from elsewhere.
    let spec = StudySpec::read(&study).unwrap();
    let o = run_study(&sim::Cpu, &spec, &study, &StudyOptions::default()).unwrap();
    // 2 models × 2 substrates × (clean + 2 PGD ε + 1 corruption).
    assert_eq!((o.cells, o.ran), (16, 16));
    let recs = records(&out.join("results.jsonl"));
    assert_eq!(recs.len(), 16);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let pgd = report
        .split("\n## ")
        .find(|x| x.starts_with("PGD"))
        .expect("a PGD table");
    let by_corr = report
        .split("\n## ")
        .find(|x| x.starts_with("Corruptions —"))
        .expect("a corruption table");
    let label = |r: &Value| {
        let name = if r["model"].as_str().unwrap().ends_with("a.safetensors") {
            "EP-A"
        } else {
            "EP-B"
        };
        match r["substrate"].as_str().unwrap() {
            "digital" => name.to_string(),
            sub => format!("{name} @ {sub}"),
        }
    };
    let pct = |v: &Value| format!("{:.1}", 100.0 * v.as_f64().unwrap());
    for r in &recs {
        assert_eq!(
            r["n"], 16,
            "4 classes × 4 images (class-balanced subset of 40)"
        );
        assert_eq!(r["study"], "tiny");
        if r["kind"] == "corruption" {
            assert_eq!(cell(by_corr, &label(r), "contrast"), pct(&r["accuracy"]));
        } else if r["kind"] == "clean" {
            // The clean cells give the summary's and the corruption table's clean column.
            let summary = report
                .split("\n## ")
                .find(|x| x.starts_with("Summary"))
                .unwrap();
            assert!(
                cell(summary, &label(r), "clean")
                    .starts_with(&format!("{} ± ", pct(&r["accuracy"]))),
                "{r}"
            );
            assert_eq!(cell(by_corr, &label(r), "clean"), pct(&r["accuracy"]));
            // A realized substrate's clean cell carries its cost per inference, counted from its
            // reads, and the report's cost table shows it; the digital engine has none.
            if r["substrate"] == "digital" {
                assert!(r.get("energy_j").is_none(), "{r}");
            } else {
                let e = r["energy_j"].as_f64().unwrap();
                assert!(e > 0.0 && r["latency_s"].as_f64().unwrap() >= 0.0, "{r}");
                let costs = report
                    .split("\n## ")
                    .find(|x| x.starts_with("Cost per inference"))
                    .expect("a cost table");
                assert_eq!(
                    cell(costs, &label(r), "energy (nJ)"),
                    format!("{:.3}", e * 1e9)
                );
            }
        } else {
            // An attack cell on a realized substrate carries what the attack cost it.
            assert_eq!(
                r.get("attack_energy_j").is_some(),
                r["substrate"] != "digital",
                "{r}"
            );
            let col = format!("ε={}", r["eps_text"].as_str().unwrap());
            assert_eq!(
                cell(pgd, &label(r), &col),
                pct(&r["robust_accuracy"]),
                "{r}"
            );
            assert_eq!(cell(pgd, &label(r), "clean"), pct(&r["clean_accuracy"]));
        }
    }
    // The cost table marks the Pareto front (the cheapest substrate is on it) and is followed by
    // the accuracy-vs-energy figure.
    let costs = report
        .split("\n## ")
        .find(|x| x.starts_with("Cost per inference"))
        .unwrap();
    let cheapest = recs
        .iter()
        .filter(|r| r["kind"] == "clean" && r["substrate"] != "digital")
        .min_by(|a, b| {
            a["energy_j"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["energy_j"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(cell(costs, &label(cheapest), "Pareto"), "yes");
    assert!(
        costs.contains("![accuracy vs energy](report_energy.png)"),
        "{costs}"
    );
    // Fig. 5: both models attacked on the same images at the suite's largest ε.
    assert!(
        report.contains("## Adversarial examples across models") && report.contains("ε = 0.1"),
        "{report}"
    );
    assert!(std::fs::read(out.join("examples.png")).is_ok_and(|b| b.starts_with(b"\x89PNG")));
    // Fig. 3b: each EP model (T = 6) attacked with gradients through 1, T/2, T and 2T steps.
    let fig3b = report
        .split("\n## ")
        .find(|x| x.starts_with("Robust accuracy vs T_attack"))
        .expect("a T_attack section");
    for m in ["EP-A", "EP-B"] {
        let row = fig3b
            .lines()
            .find(|l| l.starts_with(&format!("| {m} (T = 6) |")))
            .unwrap_or_else(|| panic!("no row {m}: {fig3b}"));
        for ta in ["(1) |", "(3) |", "(6) |", "(12) |"] {
            assert!(row.contains(ta), "{ta} in {row}");
        }
    }
    assert!(std::fs::read(out.join("t_attack.png")).is_ok_and(|b| b.starts_with(b"\x89PNG")));
    assert!(std::fs::read(out.join("report_energy.png")).is_ok_and(|b| b.starts_with(b"\x89PNG")));
    // The summary row of a model is the mean of its robust accuracies.
    let summary = report
        .split("\n## ")
        .find(|x| x.starts_with("Summary"))
        .unwrap();
    let mine: Vec<f64> = recs
        .iter()
        .filter(|r| {
            r["kind"] == "attack" && label(r) == "EP-A @ netlist:pcm --set read_noise_scale=2"
        })
        .map(|r| r["robust_accuracy"].as_f64().unwrap())
        .collect();
    assert_eq!(mine.len(), 2);
    let mean = format!("{:.1}", 100.0 * mine.iter().sum::<f64>() / 2.0);
    let got = cell(
        summary,
        "EP-A @ netlist:pcm --set read_noise_scale=2",
        "mean robust",
    );
    assert!(got.starts_with(&format!("{mean} ± ")), "{got} vs {mean}");

    // Digital vs substrate: every attack cell on a netlist beside its digital twin (same model,
    // attack, ε), with the difference.
    let gaps = report
        .split("\n## ")
        .find(|x| x.starts_with("Digital vs substrate"))
        .expect("a digital-vs-substrate section");
    for r in recs
        .iter()
        .filter(|r| r["kind"] == "attack" && r["substrate"] != "digital")
    {
        let twin = recs
            .iter()
            .find(|d| {
                d["kind"] == "attack"
                    && d["substrate"] == "digital"
                    && d["model"] == r["model"]
                    && d["eps"] == r["eps"]
            })
            .expect("a digital twin");
        let name = label(twin);
        let fam = experiments::report::names::attack_family(r["attack"].as_str().unwrap());
        let (dv, sv) = (
            twin["robust_accuracy"].as_f64().unwrap(),
            r["robust_accuracy"].as_f64().unwrap(),
        );
        let want = format!(
            "| {name} | {} | {fam} | {} | {:.1} | {:.1} | {:+.1} |",
            r["substrate"].as_str().unwrap(),
            r["eps_text"].as_str().unwrap(),
            100.0 * dv,
            100.0 * sv,
            100.0 * (sv - dv)
        );
        assert!(gaps.contains(&want), "{want} not in\n{gaps}");
    }
    assert!(gaps.contains("| clean | –"), "{gaps}");

    // The settling figure: each EP model's digital accuracy after T steps is its clean accuracy.
    assert!(out.join("settling.png").is_file());
    let settle = report
        .split("\n## ")
        .find(|x| x.starts_with("Accuracy vs free-phase step"))
        .expect("a settling section");
    for name in ["EP-A", "EP-B"] {
        let clean = recs
            .iter()
            .find(|r| label(r) == name && r["kind"] == "attack")
            .unwrap();
        assert_eq!(cell(settle, name, "t = T"), pct(&clean["clean_accuracy"]));
    }
    // The settling trajectories: a row per EP model and layer (the conv layer; the softmax readout
    // is no state), distances that are numbers, and the plot.
    assert!(out.join("trajectories.png").is_file());
    let traj = report
        .split("\n## ")
        .find(|x| x.starts_with("Settling trajectories"))
        .expect("a trajectories section");
    let rows: Vec<&str> = traj.lines().filter(|l| l.starts_with("| EP-")).collect();
    assert_eq!(rows.len(), 2, "{traj}");
    for r in rows {
        let c: Vec<&str> = r.split('|').map(str::trim).collect();
        for v in &c[3..7] {
            let x: f64 = v.parse().unwrap_or_else(|_| panic!("{v:?} in {r}"));
            assert!(x.is_finite() && x >= 0.0, "{r}");
        }
    }

    // The digital cells are what `epsim robustness` gives for the same suite and seed.
    let suite = d.join("suite.toml");
    std::fs::write(
        &suite,
        "[[attack]]\nname = \"pgd-linf\"\neps = [\"0.02\", \"0.1\"]\nsteps = 3\n",
    )
    .unwrap();
    let rob = d.join("rob");
    let data = format!("cifar10:{}:test", d.join("test.bin").display());
    let code = epsim(&[
        "--seed",
        "3",
        "robustness",
        "--model",
        s(&d.join("a.safetensors")),
        "--data",
        &data,
        "--subset",
        "40",
        "--batch-size",
        "10",
        "--suite",
        s(&suite),
        "--out-dir",
        s(&rob),
    ]);
    assert_eq!(code, ExitCode::SUCCESS);
    let rob_recs = records(&rob.join("results.jsonl"));
    for rr in &rob_recs {
        let twin = recs
            .iter()
            .find(|r| label(r) == "EP-A" && r["eps"] == rr["eps"] && r["kind"] == "attack")
            .unwrap();
        assert_eq!(twin["robust_accuracy"], rr["robust_accuracy"]);
        assert_eq!(twin["attack"], rr["attack"]);
    }

    // An attack with `subset = 8` attacks the first 8 of the study's images (class-balanced), the
    // images `epsim robustness --subset 8` evaluates, and gives its records; the clean cells keep
    // every image.
    let out3 = d.join("out3");
    let study3 = d.join("study3.toml");
    std::fs::write(
        &study3,
        study_text(d, &out3, "\"0.1\"").replace("steps = 3\n", "steps = 3\nsubset = 8\n"),
    )
    .unwrap();
    run_study(
        &sim::Cpu,
        &StudySpec::read(&study3).unwrap(),
        &study3,
        &StudyOptions::default(),
    )
    .unwrap();
    let recs3 = records(&out3.join("results.jsonl"));
    let kind_n = |k: &str| -> Vec<Value> {
        recs3
            .iter()
            .filter(|r| r["kind"] == k)
            .map(|r| r["n"].clone())
            .collect()
    };
    // (8 of 10 classes → one image per class; the file holds 4 classes.)
    assert_eq!(kind_n("attack"), vec![Value::from(4); 4]);
    assert_eq!(kind_n("clean"), vec![Value::from(16); 4]);
    let rob3 = d.join("rob3");
    let code = epsim(&[
        "--seed",
        "3",
        "robustness",
        "--model",
        s(&d.join("a.safetensors")),
        "--data",
        &data,
        "--subset",
        "8",
        "--batch-size",
        "10",
        "--suite",
        s(&suite),
        "--out-dir",
        s(&rob3),
    ]);
    assert_eq!(code, ExitCode::SUCCESS);
    let small = records(&rob3.join("results.jsonl"));
    let at_01 = small.iter().find(|r| r["eps"] == 0.1).unwrap();
    let twin = recs3
        .iter()
        .find(|r| label(r) == "EP-A" && r["kind"] == "attack")
        .unwrap();
    for k in ["robust_accuracy", "clean_accuracy", "attack", "n"] {
        assert_eq!(twin[k], at_01[k], "{k}");
    }
    let report3 = std::fs::read_to_string(out3.join("report.md")).unwrap();
    assert!(report3.contains("4 images per cell"), "{report3}");

    // The same study reading its corruption from released files (made by `epsim corrupt --format
    // npy` from the whole test file; contrast draws nothing at random) gives the same records.
    let cc = d.join("cc");
    let code = epsim(&[
        "corrupt",
        "--data",
        &data,
        "--corruption",
        "contrast",
        "--format",
        "npy",
        "--out",
        s(&cc),
    ]);
    assert_eq!(code, ExitCode::SUCCESS);
    let out2 = d.join("out2");
    let released = study_text(d, &out2, "\"0.02\", \"0.1\"").replace(
        "severities = [4]",
        &format!("severities = [4]\nreleased = \"cifar10c:{}\"", cc.display()),
    );
    let study2 = d.join("study2.toml");
    std::fs::write(&study2, released).unwrap();
    run_study(
        &sim::Cpu,
        &StudySpec::read(&study2).unwrap(),
        &study2,
        &StudyOptions::default(),
    )
    .unwrap();
    let corr = |v: &[Value]| -> Vec<(String, Value)> {
        v.iter()
            .filter(|r| r["kind"] == "corruption")
            .map(|r| (label(r), r["accuracy"].clone()))
            .collect()
    };
    let recs2 = records(&out2.join("results.jsonl"));
    assert_eq!(corr(&recs2).len(), 4);
    assert_eq!(corr(&recs2), corr(&recs));
    assert!(
        recs2
            .iter()
            .filter(|r| r["kind"] == "corruption")
            .all(|r| r["note"].as_str().unwrap().contains("released files"))
    );

    // A kill loses at most the cells not written yet: resuming redoes only those, same records.
    for i in [3, 10] {
        std::fs::remove_file(out.join("cells").join(format!("{i:06}.json"))).unwrap();
    }
    let e = run_study(&sim::Cpu, &spec, &study, &StudyOptions::default()).unwrap_err();
    assert!(format!("{e:#}").contains("--resume"), "{e:#}");
    let o = run_study(
        &sim::Cpu,
        &spec,
        &study,
        &StudyOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((o.cells, o.ran), (16, 2));
    let strip = |v: &[Value]| -> Vec<Value> {
        v.iter()
            .cloned()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("wall_s");
                r
            })
            .collect()
    };
    assert_eq!(strip(&records(&out.join("results.jsonl"))), strip(&recs));

    // A changed study is refused, before any work, naming the plan.
    std::fs::write(&study, study_text(d, &out, "\"0.05\", \"0.1\"")).unwrap();
    let spec2 = StudySpec::read(&study).unwrap();
    let e = run_study(
        &sim::Cpu,
        &spec2,
        &study,
        &StudyOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("the study changed"), "{e:#}");
}

#[test]
fn bad_studies_are_refused_with_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let study = d.join("s.toml");
    let out = d.join("out");
    let base = study_text(d, &out, "\"0.02\"");
    for (bad, msg) in [
        (
            base.replace("a.safetensors", "missing.safetensors"),
            "does not exist",
        ),
        (base.replace("netlist:pcm", "analog"), "unknown substrate"),
        (base.replace("\"0.02\"", "\"x\""), "not a number"),
        (
            base.replace("subset = 40", "subset = 40\nsubsets = 3"),
            "did you mean `subset`?",
        ),
        (
            base.replace("names = [\"contrast\"]", "names = [\"smoke\"]"),
            "smoke",
        ),
        (
            base.replace("name = \"EP-B\"", "name = \"EP-A\""),
            "used twice",
        ),
        (
            base.replace(
                "name = \"EP-B\"",
                "name = \"EP-B\"\nsettle = { method = \"newton\", tol = 1e-3 }",
            ),
            "newton",
        ),
    ] {
        write_ep_model(&tiny_cifar_ep_net(true), &d.join("a.safetensors"));
        write_ep_model(&tiny_cifar_ep_net(false), &d.join("b.safetensors"));
        std::fs::write(&study, &bad).unwrap();
        let e = StudySpec::read(&study).unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains(msg), "{msg:?} not in {text}");
        assert!(text.contains("s.toml"), "{text}");
    }
    assert!(!out.exists(), "nothing was written");
    // An EP model's settle is read as written (the others keep plain iteration).
    let with = base.replace(
        "name = \"EP-B\"",
        "name = \"EP-B\"\nsettle = { method = \"plain\", tol = 1e-3 }",
    );
    std::fs::write(&study, &with).unwrap();
    let s = StudySpec::read(&study).unwrap();
    let settle = |name: &str| s.models.iter().find(|m| m.name == name).unwrap().settle;
    assert_eq!(settle("EP-B"), ep::Settle::plain_tol(1e-3));
    assert_eq!(settle("EP-A"), ep::Settle::default());
}

/// A `[[sweep]]` inside a study: its cells follow the suite's (levels × seeds × items, the level
/// as a preset override after the model's own), their records go to `sweeps.jsonl` with the swept
/// parameter and level (not to results.jsonl and its tables), and the report's sweep section shows
/// them beside the digital result, with a figure; bad sweeps are refused naming the problem.
#[test]
fn a_study_sweeps_a_device_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_ep_model(&tiny_cifar_ep_net(true), &d.join("a.safetensors"));
    write_ep_model(&tiny_cifar_ep_net(false), &d.join("b.safetensors"));
    write_tiny_cifar(&d.join("test.bin"), 80, 2);
    let out = d.join("out");
    let sweep = "\n[[sweep]]\nmodel = \"EP-A\"\nsubstrate = \"netlist:pcm\"\n\
                 param = \"prog_noise_scale=0,8\"\nitems = [\"clean\", \"contrast@s4\"]\n";
    let study = d.join("s.toml");
    // The collection-time figures can be left out (long free phases on a CPU).
    let text = study_text(d, &out, "\"0.02\"").replace(
        "seeds = [3]\n",
        "seeds = [3]\nt_attack_images = 0\nexample_images = 0\n",
    );
    std::fs::write(&study, text + sweep).unwrap();
    let spec = StudySpec::read(&study).unwrap();
    let o = run_study(&sim::Cpu, &spec, &study, &StudyOptions::default()).unwrap();
    // 2 models × 2 substrates × (clean + 1 PGD ε + 1 corruption) + 2 levels × 2 items.
    assert_eq!(o.cells, 12 + 4);
    let plan: Vec<Value> = std::fs::read_to_string(out.join("plan.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(plan[..12].iter().all(|c| c.get("set").is_none()));
    assert_eq!(plan[12]["set"], serde_json::json!(["prog_noise_scale=0"]));
    assert_eq!(plan[15]["set"], serde_json::json!(["prog_noise_scale=8"]));
    assert_eq!(records(&out.join("results.jsonl")).len(), 12);
    let swept = records(&out.join("sweeps.jsonl"));
    assert_eq!(swept.len(), 4);
    for r in &swept {
        assert_eq!(r["sweep_param"], "prog_noise_scale", "{r}");
        let level = r["level"].as_f64().unwrap();
        assert_eq!(r["level_text"], format!("{level}"));
        // The model's own override first, then the level.
        assert_eq!(
            r["substrate"],
            format!("netlist:pcm --set read_noise_scale=2,prog_noise_scale={level}")
        );
    }
    // The report's sweep table holds the records' accuracies.
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let section = report
        .split("\n## ")
        .find(|s| s.starts_with("Device-parameter sweeps"))
        .expect("a sweep section");
    for r in &swept {
        let item = if r["kind"] == "clean" {
            "clean"
        } else {
            "contrast@s4"
        };
        let col = format!("prog_noise_scale={}", r["level_text"].as_str().unwrap());
        assert_eq!(
            cell(section, item, &col),
            format!("{:.1}", 100.0 * r["accuracy"].as_f64().unwrap()),
            "{r}"
        );
    }
    let digital = records(&out.join("results.jsonl"))
        .into_iter()
        .find(|r| {
            r["kind"] == "clean"
                && r["substrate"] == "digital"
                && r["model"].as_str().unwrap().ends_with("a.safetensors")
        })
        .unwrap();
    assert_eq!(
        cell(section, "clean", "digital"),
        format!("{:.1}", 100.0 * digital["accuracy"].as_f64().unwrap())
    );
    assert!(section.contains("energy per inference (nJ)"), "{section}");
    assert!(!report.contains("Robust accuracy vs T_attack") && !out.join("t_attack.png").exists());
    assert!(!report.contains("Adversarial examples across") && !out.join("examples.png").exists());
    assert!(std::fs::read(out.join("sweep_1.png")).is_ok_and(|b| b.starts_with(b"\x89PNG")));

    for (bad, msg) in [
        (sweep.replace("EP-A", "EP-Z"), "no [[model]] named \"EP-Z\""),
        (
            sweep.replace("netlist:pcm", "digital"),
            "give a netlist substrate",
        ),
        (
            sweep.replace("contrast@s4", "fog@s1"),
            "is not one of the suite's",
        ),
        (
            sweep.replace("prog_noise_scale=0,8", "no_such_knob=1"),
            "no_such_knob",
        ),
    ] {
        let s = d.join("bad.toml");
        std::fs::write(&s, study_text(d, &d.join("bad"), "\"0.02\"") + &bad).unwrap();
        let e = StudySpec::read(&s).unwrap_err();
        assert!(format!("{e:#}").contains(msg), "{msg}: {e:#}");
    }
}

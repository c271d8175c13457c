//! `epsim cost` on the shipped EP-CNN and Fashion-MNIST: the breakdown sums to the total, the
//! counted reads scale with the number of images while the cost per inference stays put, and the
//! ADC term follows the Walden law in bits.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use epsim_tests::epsim;
use experiments::eval::{Job, measure};

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/quickstart-epcnn.safetensors")
}

fn job<'a>(m: &'a Path, sets: &'a [String], subset: usize) -> Job<'a> {
    Job {
        model: m,
        spec: None,
        preset: "pcm",
        sets,
        tile: "512x512",
        data: "fashion-mnist:test",
        subset: Some(subset),
        steps: Some(4),
        batch: 16,
        seed: 0,
    }
}

#[test]
fn cost_of_the_quickstart_epcnn_on_pcm() {
    let m = model();
    let none: Vec<String> = vec![];
    let be = sim::Cpu;
    let a = measure(&be, &job(&m, &none, 10)).unwrap();
    let b = measure(&be, &job(&m, &none, 20)).unwrap();
    for r in [&a, &b] {
        let c = &r.cost;
        let sum: f64 = c.energy_j.iter().sum();
        assert!((sum - c.total_j()).abs() <= 1e-12 * sum, "{c:?}");
        assert!(c.total_j() > 0.0 && c.latency_s > 0.0 && c.total_mm2() > 0.0);
        // DAC, array, ADC and neurons all cost something on pcm; no pulses in inference.
        assert!(c.energy_j[..4].iter().all(|&e| e > 0.0), "{c:?}");
        assert_eq!(c.energy_j[4], 0.0);
    }
    // The per-array counts add up to the realization's totals (as the classifier describes them).
    let total = format!("in {} vector reads", a.cost.reads.0);
    assert!(a.describe.contains(&total), "{}: {total}", a.describe);
    // Twice the images: about twice the reads, the same cost per inference, the same area.
    let ratio = b.cost.reads.0 as f64 / a.cost.reads.0 as f64;
    assert!((1.8..=2.2).contains(&ratio), "reads ratio {ratio}");
    let per = b.cost.total_j() / a.cost.total_j();
    assert!(
        (0.9..=1.1).contains(&per),
        "per-inference energy ratio {per}"
    );
    assert_eq!(a.cost.area_mm2, b.cost.area_mm2);
    // The ADC term is linear in the figure of merit (same run, same reads).
    let sets = vec!["adc_fom_j=2e-14".to_string()];
    let c = measure(&be, &job(&m, &sets, 10)).unwrap();
    let r = c.cost.energy_j[2] / a.cost.energy_j[2];
    assert!((r - 2e-14 / (3.1e-3 / 1.2e9 / 256.0)).abs() < 1e-9, "{r}");
    assert_eq!(c.cost.energy_j[..2], a.cost.energy_j[..2]);
    // The command itself runs.
    assert_eq!(
        epsim(&[
            "cost",
            "--model",
            m.to_str().unwrap(),
            "--preset",
            "pcm",
            "--data",
            "fashion-mnist:test",
            "--subset",
            "4",
            "--steps",
            "2",
        ]),
        ExitCode::SUCCESS
    );
}

/// Attack and robustness records on a realized substrate carry the cost of their own reads: an
/// attack the energy it spent per attacked image (every gradient's and prediction's free phase),
/// a corruption the cost per inference of its evaluation (one free phase of T steps per image),
/// and the robustness report the clean run's cost per inference.
#[test]
fn attack_and_robustness_records_carry_their_cost() {
    use epsim_tests::{s, tiny_cifar_ep_net, write_ep_model, write_tiny_cifar};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = d.join("m.safetensors");
    write_ep_model(&tiny_cifar_ep_net(true), &m);
    write_tiny_cifar(&d.join("test.bin"), 16, 2);
    let data = format!("cifar10:{}:test", d.join("test.bin").display());
    let target = [
        "--model",
        s(&m),
        "--data",
        &data,
        "--substrate",
        "netlist:pcm",
        "--tile",
        "16x8",
        "--eot",
        "1",
        "--batch-size",
        "8",
    ];
    let rec = |path: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // The attack on the shipped EP-CNN (T = 20), whose images are mostly classified right, so it
    // takes gradients: more than the clean and final predictions' two free phases per image.
    let qm = model();
    let out = d.join("attack.jsonl");
    let args = [
        "--seed",
        "1",
        "attack",
        "--model",
        s(&qm),
        "--data",
        "fashion-mnist:test",
        "--subset",
        "8",
        "--substrate",
        "netlist:pcm",
        "--eot",
        "1",
        "--attack",
        "pgd-linf",
        "--eps",
        "0.05",
        "--steps",
        "3",
        "--out",
        s(&out),
    ];
    assert_eq!(epsim(&args), ExitCode::SUCCESS);
    let a = &rec(&out)[0];
    let num = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k}: {v}"));
    assert!(num(a, "grads") > 0.0, "{a}");
    let phases = num(a, "attack_free_phase_steps") / 20.0;
    assert!(phases > 2.0, "{a}");
    assert!(
        num(a, "attack_energy_j") > 0.0 && num(a, "attack_latency_s") > 0.0,
        "{a}"
    );
    assert!(
        a["attack_energy_parts_j"]["ADC"].as_f64().unwrap() > 0.0,
        "{a}"
    );
    // Per free phase, the attack's energy is of the order of an inference's (`epsim cost`'s).
    let none: Vec<String> = vec![];
    let clean = measure(&sim::Cpu, &job(&qm, &none, 8)).unwrap();
    let per_phase = num(a, "attack_energy_j") / phases;
    let r = per_phase / (clean.cost.total_j() * 20.0 / 4.0);
    assert!((0.3..=3.0).contains(&r), "{r}: {per_phase} J per phase");

    let suite = d.join("suite.toml");
    std::fs::write(
        &suite,
        "[[attack]]\nname = \"pgd-linf\"\neps = [\"0.03\"]\nsteps = 2\n\n\
         [corruptions]\nnames = [\"contrast\"]\nseverities = [1]\n",
    )
    .unwrap();
    let rdir = d.join("rob");
    let mut args = vec!["--seed", "1", "robustness"];
    args.extend(target);
    args.extend(["--suite", s(&suite), "--out-dir", s(&rdir)]);
    assert_eq!(epsim(&args), ExitCode::SUCCESS);
    let recs = rec(&rdir.join("results.jsonl"));
    let attack = recs.iter().find(|r| r.get("attack").is_some()).unwrap();
    let corr = recs.iter().find(|r| r.get("corruption").is_some()).unwrap();
    assert!(num(attack, "attack_energy_j") > 0.0, "{attack}");
    // One free phase of T = 6 steps per corrupted image.
    assert_eq!(num(corr, "free_phase_steps"), 6.0, "{corr}");
    assert!(
        num(corr, "energy_j") > 0.0 && num(corr, "latency_s") > 0.0,
        "{corr}"
    );
    let report = std::fs::read_to_string(rdir.join("report.md")).unwrap();
    assert!(
        report.contains("Cost per inference on this substrate"),
        "{report}"
    );
}

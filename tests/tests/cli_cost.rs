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

//! Settling the free phase of the trained quick-start EP-CNN (models/quickstart-epcnn.safetensors,
//! T1 = 20) on the first 128 Fashion-MNIST test images (the Debian package's files under
//! /usr/share/datasets/fashion-mnist, read with `gzip -dc`; Fashion-MNIST-shaped random inputs
//! where they are missing): plain T1 steps, and plain iteration and Anderson acceleration to a
//! tolerance. `cargo bench -p ep --bench settle`. Before timing, it prints per settle the steps,
//! the residual (largest per-sample max-abs change of the last step), the max-abs distance to a
//! 2000-step plain fixed point, and the accuracy on the batch. Results are in BENCHMARKS.md.

use std::sync::OnceLock;

use divan::Bencher;
use ep::checkpoint::{TensorFile, model_from_file};
use ep::settle::sample_max_abs_diff;
use ep::{Dynamics, EpNet, Settle, Settler, State};
use sim::{Backend, Cpu, Stream};

const N: usize = 128;
const DATA: &str = "/usr/share/datasets/fashion-mnist";

fn main() {
    if std::env::var_os("EPSIM_SYSTEM_ALLOC").is_none() {
        sim::alloc::keep_freed_memory();
    }
    summary();
    divan::main();
}

fn gunzip(path: &str) -> Option<Vec<u8>> {
    let out = std::process::Command::new("gzip")
        .args(["-dc", path])
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

/// The network, the normalized input batch, and its labels (None for random inputs).
fn setup() -> &'static (EpNet<Cpu>, sim::Tensor, Option<Vec<usize>>) {
    static S: OnceLock<(EpNet<Cpu>, sim::Tensor, Option<Vec<usize>>)> = OnceLock::new();
    S.get_or_init(|| {
        let be = Cpu;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/quickstart-epcnn.safetensors"
        );
        let f = TensorFile::from_bytes(&std::fs::read(path).expect("the quick-start model"))
            .expect("a tensor file");
        let (spec, ws, bs) = model_from_file(&f, None).expect("a model");
        let norm = spec.input_norm.clone().expect("the model's input norm");
        let net = EpNet::from_host(&be, spec, &ws, &bs).expect("weights");
        let imgs = gunzip(&format!("{DATA}/t10k-images-idx3-ubyte.gz"));
        let labs = gunzip(&format!("{DATA}/t10k-labels-idx1-ubyte.gz"));
        let (x, labels) = match (imgs, labs) {
            (Some(i), Some(l)) if i.len() >= 16 + N * 784 && l.len() >= 8 + N => {
                let v: Vec<f32> = i[16..16 + N * 784]
                    .iter()
                    .map(|&p| (p as f32 / 255.0 - norm.mean[0]) / norm.std[0])
                    .collect();
                let labels = l[8..8 + N].iter().map(|&c| c as usize).collect();
                (sim::tensor(&[N, 1, 28, 28], v).unwrap(), Some(labels))
            }
            _ => {
                eprintln!("Fashion-MNIST not found under {DATA}: random inputs");
                let x = be.randn(&[N, 1, 28, 28], &Stream::new(1, "x"), 0).unwrap();
                (x, None)
            }
        };
        (net, x, labels)
    })
}

fn settles() -> Vec<(&'static str, usize, Settle)> {
    vec![
        ("plain T1 (20 steps)", 20, Settle::default()),
        ("plain tol 0.3, cap T1", 20, Settle::plain_tol(0.3)),
        ("plain tol 0.1, cap T1", 20, Settle::plain_tol(0.1)),
        ("plain tol 1e-4", 1000, Settle::plain_tol(1e-4)),
        ("anderson tol 1e-4", 1000, Settle::anderson(1e-4)),
        ("plain tol 1e-5", 1000, Settle::plain_tol(1e-5)),
        ("anderson tol 1e-5", 1000, Settle::anderson(1e-5)),
    ]
}

fn accuracy(be: &Cpu, net: &EpNet<Cpu>, st: &State<Cpu>, labels: &Option<Vec<usize>>) -> String {
    let pred = ep::train::argmax_rows(&be.download(&net.logits(be, st).unwrap()).unwrap());
    match labels {
        Some(l) => format!("{}/{N}", pred.iter().zip(l).filter(|(p, l)| p == l).count()),
        None => "-".into(),
    }
}

fn summary() {
    let be = Cpu;
    let (net, x, labels) = setup();
    let reference = net.free_phase(&be, x, 2000).unwrap();
    let more = net.relax(&be, x, reference.clone(), 1, None).unwrap();
    let dmax = |a: &State<Cpu>, b: &State<Cpu>| {
        sample_max_abs_diff(&be, a, b)
            .unwrap()
            .into_iter()
            .fold(0f32, f32::max)
    };
    eprintln!(
        "plain 2000 steps (reference): residual {:.1e}, accuracy {}",
        dmax(&reference, &more),
        accuracy(&be, net, &reference, labels)
    );
    // Mixing from the first step (start = ∞): the basin problem of `ep::settle`'s doc.
    let extra = [(
        "anderson start=inf 1e-5",
        1000,
        Settle::Anderson {
            m: 5,
            beta: 1.0,
            tol: 1e-5,
            max_steps: None,
            reg: 1e-8,
            restart: 10.0,
            start: f32::INFINITY,
        },
    )];
    for (name, steps, s) in settles().into_iter().chain(extra) {
        let r = net.free_phase_with(&be, x, steps, &s).unwrap();
        let residual = match r.residual {
            Some(v) => v,
            None => {
                let m = net.relax(&be, x, r.state.clone(), 1, None).unwrap();
                dmax(&r.state, &m)
            }
        };
        let mean_sample = r.mean_steps();
        let rows_per_sample = r.row_steps as f64 / N as f64;
        let per = sample_max_abs_diff(&be, &r.state, &reference).unwrap();
        let off = per.iter().filter(|&&v| v > 1e-3).count();
        eprintln!(
            "{name:20}: {off} samples > 1e-3 from s*; {:4} steps (per-sample mean {mean_sample:.1}, \
             rows evaluated per sample {rows_per_sample:.1}), residual {residual:.1e}, \
             max |s - s*| {:.1e}, accuracy {}",
            r.steps,
            dmax(&r.state, &reference),
            accuracy(&be, net, &r.state, labels)
        );
    }
}

#[divan::bench(args = [0, 1, 2, 3, 4, 5, 6], sample_count = 5, sample_size = 1)]
fn free_phase(b: Bencher, which: usize) {
    let be = Cpu;
    let (net, x, _) = setup();
    let (_, steps, s) = settles()[which];
    b.bench_local(|| net.free_phase_with(&be, x, steps, &s).unwrap());
}

//! One step of the EP dynamics at the working and the paper's settings (batch 128):
//! `cargo bench -p ep --bench ep_step`. Inference img/s = 128 / (T1 · step time); training img/s =
//! 128 / ((T1 + 2·T2) · step time + update time). Results are recorded in BENCHMARKS.md.

use divan::Bencher;
use ep::{EpNet, ModelSpec, State, Target};
use sim::{Backend, Cpu, Stream};

fn main() {
    // As the `epsim` binary (EPSIM_SYSTEM_ALLOC=1 to measure without it).
    if std::env::var_os("EPSIM_SYSTEM_ALLOC").is_none() {
        sim::alloc::keep_freed_memory();
    }
    divan::main();
}

/// The Fashion-MNIST-sized EP-CNN of the speed anchor (`ModelSpec::fmnist_reference`)
/// with T1 = 60, T2 = 15.
fn fmnist_spec() -> ModelSpec {
    ModelSpec {
        t1: 60,
        t2: 15,
        ..ModelSpec::fmnist_reference()
    }
}

fn setup(spec: ModelSpec, n: usize) -> (EpNet<Cpu>, sim::Tensor, State<Cpu>) {
    let be = Cpu;
    let net = EpNet::init(&be, spec.clone(), &Stream::new(0, "init"), None).unwrap();
    let [c, h, w] = spec.input;
    let x = be.randn(&[n, c, h, w], &Stream::new(1, "x"), 0).unwrap();
    // A state reached after a few steps (not all zeros, so pooling switches are realistic).
    let st = net.free_phase(&be, &x, 5).unwrap();
    (net, x, st)
}

#[divan::bench(sample_count = 10)]
fn fmnist_free_step(b: Bencher) {
    let be = Cpu;
    let (net, x, st) = setup(fmnist_spec(), 128);
    let input = net.read_input(&be, &x).unwrap();
    b.bench_local(|| net.step_with(&be, &x, &st, None, Some(&input)).unwrap());
}

#[divan::bench(sample_count = 10)]
fn fmnist_nudged_step(b: Bencher) {
    let be = Cpu;
    let (net, x, st) = setup(fmnist_spec(), 128);
    let input = net.read_input(&be, &x).unwrap();
    let labels: Vec<usize> = (0..128).map(|i| i % 10).collect();
    let target = Target::new(&be, &labels, 10).unwrap();
    b.bench_local(|| {
        net.step_with(&be, &x, &st, Some((0.5, &target)), Some(&input))
            .unwrap()
    });
}

#[divan::bench(sample_count = 5)]
fn cifar10_paper_free_step(b: Bencher) {
    let be = Cpu;
    let (net, x, st) = setup(ModelSpec::cifar10_reference(), 128);
    let input = net.read_input(&be, &x).unwrap();
    b.bench_local(|| net.step_with(&be, &x, &st, None, Some(&input)).unwrap());
}

/// The conv work of one paper-config step alone: every conv synapse's forward read (but the
/// first, whose read of x is shared by the whole phase) and every feedback's input adjoint, on the
/// same states and weights, without pooling, unpooling, adds or activations. The ratio of this to
/// `cifar10_paper_free_step` is the step's efficiency against the machine's conv throughput.
#[divan::bench(sample_count = 5)]
fn cifar10_paper_conv_work_only(b: Bencher) {
    let be = Cpu;
    let spec = ModelSpec::cifar10_reference();
    let (net, _x, st) = setup(spec.clone(), 128);
    let convs = spec.conv.len();
    // Feedback inputs: random tensors of each conv synapse's pre-pool output shape.
    let gys: Vec<sim::Tensor> = (1..convs)
        .map(|i| {
            let s = be.shape(&st.layers[i]);
            let (h, w) = net.geom.conv_out_hw[i];
            be.randn(&[s[0], s[1], h, w], &Stream::new(9, "gy"), i as u64)
                .unwrap()
        })
        .collect();
    b.bench_local(|| {
        for i in 1..convs {
            let c = &spec.conv[i];
            let p = sim::Conv2dParams::new(c.stride, c.padding);
            let inp = &st.layers[i - 1];
            divan::black_box(
                be.conv2d(inp, &net.weights[i], Some(&net.biases[i]), p)
                    .unwrap(),
            );
            let s = be.shape(inp);
            divan::black_box(
                be.conv2d_input_grad(&gys[i - 1], &net.weights[i], (s[2], s[3]), p)
                    .unwrap(),
            );
        }
    });
}

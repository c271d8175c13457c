//! The EP dynamics on the CPU and the GPU backend side by side, on the same weights and inputs:
//! `cargo bench -p host-gpu --bench ep_step`. One iteration is 10 free-phase steps at batch 128
//! (then a device sync on the GPU, so the timing holds the GPU's work), or one EP training batch
//! (free phase, two nudged phases, update) of a short schedule (T1 = 20, T2 = 5).
//! Inference step time = iteration / 10. The `_gpu` rows use the default convolution algorithm
//! (`ConvAlgo::Auto`: Winograd F(2×2, 3×3) on the 3x3 layers with ≥ 32 channels in and out), the
//! `_gpu_tile128` rows the same in 128×128 GEMM output blocks (`GemmTile::T128`; the default is
//! 64×64), the `_gpu_direct` rows the direct implicit GEMM everywhere, `_gpu_winograd4` Winograd
//! F(4×4, 3×3) wherever it applies (the Fashion-MNIST nets' 5x5 layers are direct in every row).
//! `EPSIM_BENCH_CPU=0` skips the CPU rows (the paper-config CPU row takes minutes on 2 cores). On
//! lavapipe (Mesa's software Vulkan) the GPU rows only prove the code runs.

use divan::Bencher;
use ep::ModelSpec;
use ep::optim::{OptimKind, Optimizer};
use ep::train::{EpConfig, train_batch};
use host_gpu::ConvAlgo;
use sim::{Backend, Cpu, Stream};

mod common;
use common::{cpu_rows, fmnist_spec, gpu, gpu_tile128, setup};

fn main() {
    divan::main();
}

/// Steps per timed iteration.
const STEPS: usize = 10;

/// A GPU's counters: (kernel launches, bind groups made) so far.
type Counters<'a> = &'a dyn Fn() -> (u64, u64);

/// Time [`STEPS`] free steps; with `counters` (a GPU's), first print how many kernel launches
/// one step records and how many bind groups [`STEPS`] chained steps make after [`STEPS`] others
/// (the first steps of a chain still meet buffer combinations for the first time).
fn steps<B: Backend>(b: Bencher, be: &B, spec: ModelSpec, counters: Option<Counters<'_>>) {
    let (net, x, st) = setup(be, &spec, 128, 5);
    let input = net.read_input(be, &x).unwrap();
    if let Some(count) = counters {
        let mut s = st.clone();
        let mut at = Vec::new();
        for i in 0..2 * STEPS {
            if i == STEPS || i == STEPS + 1 {
                at.push(count());
            }
            s = net.step_with(be, &x, &s, None, Some(&input)).unwrap();
        }
        let end = count();
        eprintln!(
            "{:?} conv channels: {} kernel launches per free step, {} new bind groups in {STEPS} \
             steps",
            spec.conv.iter().map(|c| c.channels).collect::<Vec<_>>(),
            at[1].0 - at[0].0,
            end.1 - at[0].1
        );
    }
    b.bench_local(|| {
        let mut s = st.clone();
        for _ in 0..STEPS {
            s = net.step_with(be, &x, &s, None, Some(&input)).unwrap();
        }
        be.sync().unwrap();
        s
    });
}

/// [`steps`] on a GPU, printing its counters.
fn gpu_steps(b: Bencher, g: &host_gpu::Gpu, spec: ModelSpec) {
    steps(b, g, spec, Some(&|| (g.launches(), g.bind_groups_made())));
}

fn batch<B: Backend>(b: Bencher, be: &B, mut spec: ModelSpec) {
    spec.t1 = 20;
    spec.t2 = 5;
    let (mut net, x, _) = setup(be, &spec, 128, 5);
    let n = net.weights.len();
    let mut opt = Optimizer::new(
        OptimKind::Sgd { momentum: 0.9 },
        vec![0.01; n],
        vec![0.0; n],
        2,
    )
    .unwrap()
    .to_backend(be)
    .unwrap();
    let labels: Vec<usize> = (0..128).map(|i| i % 10).collect();
    let cfg = EpConfig {
        beta: 0.5,
        symmetric: true,
        random_sign: true,
        settle: Default::default(),
    };
    let signs = Stream::new(2, "sign");
    let mut i = 0;
    b.bench_local(|| {
        train_batch(be, &mut net, &mut opt, &cfg, &x, &labels, &signs, i).unwrap();
        i += 1;
        be.sync().unwrap();
    });
}

#[divan::bench(sample_count = 5)]
fn fmnist_10_free_steps_cpu(b: Bencher) {
    if cpu_rows() {
        steps(b, &Cpu, fmnist_spec(60, 15), None);
    }
}

#[divan::bench(sample_count = 5)]
fn fmnist_10_free_steps_gpu(b: Bencher) {
    let g = gpu();
    gpu_steps(b, &g, fmnist_spec(60, 15));
}

#[divan::bench(sample_count = 5)]
fn fmnist_10_free_steps_gpu_tile128(b: Bencher) {
    let g = gpu_tile128();
    gpu_steps(b, &g, fmnist_spec(60, 15));
}

#[divan::bench(sample_count = 5)]
fn fmnist_10_free_steps_gpu_direct(b: Bencher) {
    let g = gpu().with_conv_algo(ConvAlgo::Direct);
    gpu_steps(b, &g, fmnist_spec(60, 15));
}

#[divan::bench(sample_count = 3)]
fn cifar10_paper_10_free_steps_cpu(b: Bencher) {
    if cpu_rows() {
        steps(b, &Cpu, ModelSpec::cifar10_reference(), None);
    }
}

#[divan::bench(sample_count = 3)]
fn cifar10_paper_10_free_steps_gpu(b: Bencher) {
    let g = gpu();
    gpu_steps(b, &g, ModelSpec::cifar10_reference());
}

#[divan::bench(sample_count = 3)]
fn cifar10_paper_10_free_steps_gpu_direct(b: Bencher) {
    let g = gpu().with_conv_algo(ConvAlgo::Direct);
    gpu_steps(b, &g, ModelSpec::cifar10_reference());
}

#[divan::bench(sample_count = 3)]
fn cifar10_paper_10_free_steps_gpu_tile128(b: Bencher) {
    let g = gpu_tile128();
    gpu_steps(b, &g, ModelSpec::cifar10_reference());
}

#[divan::bench(sample_count = 3)]
fn cifar10_paper_10_free_steps_gpu_winograd4(b: Bencher) {
    let g = gpu().with_conv_algo(ConvAlgo::Winograd4);
    gpu_steps(b, &g, ModelSpec::cifar10_reference());
}

/// GPU only (the CPU row would take minutes): with the free-step rows above, the paper run's
/// training throughput at T1 = 250, T2 = 25 follows as 128 images per (this time − 20 free steps
/// + 250 free steps + 40 nudged steps at about the free step's cost) (stated in BENCHMARKS.md).
#[divan::bench(sample_count = 3)]
fn cifar10_paper_train_batch_t20_t5_gpu(b: Bencher) {
    let g = gpu();
    batch(b, &g, ModelSpec::cifar10_reference());
}

#[divan::bench(sample_count = 3)]
fn cifar10_paper_train_batch_t20_t5_gpu_tile128(b: Bencher) {
    let g = gpu_tile128();
    batch(b, &g, ModelSpec::cifar10_reference());
}

#[divan::bench(sample_count = 3)]
fn fmnist_train_batch_t20_t5_cpu(b: Bencher) {
    if cpu_rows() {
        batch(b, &Cpu, fmnist_spec(60, 15));
    }
}

#[divan::bench(sample_count = 3)]
fn fmnist_train_batch_t20_t5_gpu(b: Bencher) {
    let g = gpu();
    batch(b, &g, fmnist_spec(60, 15));
}

//! IR-drop response matrices (divan): `cargo bench -p devices --bench irdrop`.
//!
//! The exact linear response of one tile's resistive network (forward circuit), computed once per
//! programmed realization when `ir_drop.r_wire_ohm > 0`: 512×64 tiles (the Fashion-MNIST EP-CNN's
//! 800×64 array) at aihwkit's 0.15 Ω and at 1 and 5 Ω per cell segment (more sweeps as the wires get
//! more resistive), and one 512×512 tile at 0.15 Ω. Conductances uniform in [0, 25] µS.

use devices::irdrop::{Direction, IrDrop};
use divan::Bencher;
use sim::Stream;

fn main() {
    divan::main();
}

fn conductances(rows: usize, cols: usize) -> Vec<f64> {
    let s = Stream::new(12, "resp-time");
    (0..rows * cols)
        .map(|k| 25.0 * s.uniform(k as u64) as f64)
        .collect()
}

fn bench_tile(bencher: Bencher, rows: usize, cols: usize, r_wire: f64) {
    let g = conductances(rows, cols);
    let p = IrDrop {
        r_wire_ohm: r_wire,
        ..IrDrop::default()
    };
    bencher.bench_local(|| {
        p.response_matrix(&g, rows, cols, Direction::Forward)
            .expect("the relaxation converges on these tiles")
    });
}

#[divan::bench(args = [0.15, 1.0, 5.0], sample_count = 5, sample_size = 1)]
fn tile_512x64(bencher: Bencher, r_wire: f64) {
    bench_tile(bencher, 512, 64, r_wire);
}

#[divan::bench(sample_count = 2, sample_size = 1)]
fn tile_512x512_at_0_15_ohm(bencher: Bencher) {
    bench_tile(bencher, 512, 512, 0.15);
}

//! Inference (free phase) of the Fashion-MNIST EP-CNN (configs/fmnist-epcnn.toml: 1x28x28, conv
//! 32 and 64 channels kernel 5 without padding, max pools, fc 10 softmax readout, my_hard_sig,
//! T1 = 30) at batch 128 on the digital engine, on `netlist:ideal` and on `netlist:pcm` (the
//! netlists compiled as `epsim compile` does, 512x512 tiles), timed interleaved in one run:
//! `cargo bench -p ep --bench substrate` (env `SUBSTRATE_BENCH_ROUNDS`, default 7;
//! `SUBSTRATE_BENCH_MODEL=path.safetensors` reads a trained model file instead of the random
//! initialization: trained weights drive more bound-management re-reads;
//! `SUBSTRATE_BENCH_ONLY=pcm` (or `digital`, `ideal`) times one engine alone, for profiling). Prints the
//! median of each, the pcm/digital and ideal/digital ratios, and the bound-management re-read
//! fraction of the pcm reads.

use std::time::{Duration, Instant};

use devices::Preset;
use ep::compile::{CompileOptions, compile};
use ep::substrate::Realized;
use ep::{EpNet, ModelSpec};
use sim::netlist::{Netlist, Origin, TileSize};
use sim::{Backend, Cpu, Stream};

/// CPU time of this process (user + system, from /proc/self/stat; 10 ms resolution), `None` where
/// unavailable. Less sensitive than wall time to other load on a shared machine.
fn cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesized command name; utime and stime are fields 14 and 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // As the `epsim` binary (EPSIM_SYSTEM_ALLOC=1 to measure without it).
    if std::env::var_os("EPSIM_SYSTEM_ALLOC").is_none() {
        sim::alloc::keep_freed_memory();
    }
    // `cargo bench` passes `--bench`; any other argument is ignored.
    let rounds: usize = std::env::var("SUBSTRATE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let be = Cpu;
    let (spec, net) = match std::env::var_os("SUBSTRATE_BENCH_MODEL").filter(|p| !p.is_empty()) {
        Some(path) => {
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("reading SUBSTRATE_BENCH_MODEL {path:?}: {e}"));
            let f = ep::checkpoint::TensorFile::from_bytes(&bytes)
                .unwrap_or_else(|e| panic!("{path:?}: {e}"));
            let (spec, ws, bs) = ep::checkpoint::model_from_file(&f, None)
                .unwrap_or_else(|e| panic!("{path:?}: {e}"));
            assert_eq!(
                spec.input,
                [1, 28, 28],
                "{path:?}: not a Fashion-MNIST model"
            );
            let net = EpNet::from_host(&be, spec.clone(), &ws, &bs).unwrap();
            println!("model {path:?} (trained)");
            (spec, net)
        }
        None => {
            let spec = ModelSpec::fmnist_reference();
            let net = EpNet::init(&be, spec.clone(), &Stream::new(0, "init"), None).unwrap();
            println!("model: random initialization");
            (spec, net)
        }
    };
    let steps = spec.t1;
    let n = 128;
    // Fashion-MNIST-like inputs: about half the pixels background (0), the rest uniform, then the
    // config's normalization (mean 0.2860, std 0.3530).
    let sx = Stream::new(1, "x");
    let px: Vec<f32> = (0..(n * 28 * 28) as u64)
        .map(|i| {
            let v = if sx.uniform(2 * i) < 0.5 {
                0.0
            } else {
                sx.uniform(2 * i + 1)
            };
            (v - 0.2860) / 0.3530
        })
        .collect();
    let x = be
        .upload(&sim::tensor(&[n, 1, 28, 28], px).unwrap())
        .unwrap();
    let (w, b) = net.to_host(&be).unwrap();
    let realize = |preset: &str| {
        let nl = compile(
            &spec,
            &w,
            &b,
            &Preset::builtin(preset).unwrap(),
            &CompileOptions {
                tile: TileSize {
                    rows: 512,
                    cols: 512,
                },
                name: "bench".into(),
            },
        )
        .unwrap();
        let l = Netlist::from_json(&nl.to_json(), Origin::memory()).unwrap();
        Realized::new(&be, &l, 0).unwrap()
    };
    let ideal = realize("ideal");
    let pcm = realize("pcm");
    println!(
        "free phase, T = {steps}, batch {n}, {} threads, {rounds} interleaved rounds",
        rayon::current_num_threads()
    );
    // Warm-up (allocator, caches).
    net.free_phase(&be, &x, 2).unwrap();
    pcm.free_phase(&be, &x, 2, 0).unwrap();
    let (r0, rr0) = pcm.read_counts();
    let (mut td, mut ti, mut tp) = (Vec::new(), Vec::new(), Vec::new());
    let mut cpu = [Duration::ZERO; 3];
    let mut timed = |k: usize, out: &mut Vec<Duration>, f: &dyn Fn()| {
        let c = cpu_time();
        let t = Instant::now();
        f();
        out.push(t.elapsed());
        if let (Some(a), Some(b)) = (c, cpu_time()) {
            cpu[k] += b - a;
        }
    };
    let only = std::env::var("SUBSTRATE_BENCH_ONLY").ok();
    if let Some(o) = &only {
        assert!(
            ["digital", "ideal", "pcm"].contains(&o.as_str()),
            "SUBSTRATE_BENCH_ONLY={o}: expected digital, ideal or pcm"
        );
    }
    let on = |e: &str| only.as_deref().is_none_or(|o| o == e);
    for round in 0..rounds {
        let q = round as u64;
        if on("digital") {
            timed(0, &mut td, &|| {
                net.free_phase(&be, &x, steps).unwrap();
            });
        }
        if on("ideal") {
            timed(1, &mut ti, &|| {
                ideal.free_phase(&be, &x, steps, q).unwrap();
            });
        }
        if on("pcm") {
            timed(2, &mut tp, &|| {
                pcm.free_phase(&be, &x, steps, q).unwrap();
            });
        }
    }
    let (r1, rr1) = pcm.read_counts();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let c = |d: Duration| d.as_secs_f64() * 1e3 / rounds as f64;
    if only.is_some() {
        for (name, t, k) in [
            ("digital", &mut td, 0),
            ("ideal", &mut ti, 1),
            ("pcm", &mut tp, 2),
        ] {
            if !t.is_empty() {
                println!(
                    "{name} alone: median {:8.1} ms, mean CPU time {:.1} ms",
                    ms(median(t)),
                    c(cpu[k])
                );
            }
        }
        return;
    }
    let (d, i, p) = (median(&mut td), median(&mut ti), median(&mut tp));
    println!("digital        median {:8.1} ms", ms(d));
    println!(
        "netlist:ideal  median {:8.1} ms  ({:.2}x digital)",
        ms(i),
        ms(i) / ms(d)
    );
    println!(
        "netlist:pcm    median {:8.1} ms  ({:.2}x digital)",
        ms(p),
        ms(p) / ms(d)
    );
    println!(
        "mean CPU time (all threads): digital {:.1} ms, ideal {:.1} ms ({:.2}x), pcm {:.1} ms ({:.2}x)",
        c(cpu[0]),
        c(cpu[1]),
        c(cpu[1]) / c(cpu[0]),
        c(cpu[2]),
        c(cpu[2]) / c(cpu[0])
    );
    let (reads, rereads) = (r1 - r0, rr1 - rr0);
    println!(
        "netlist:pcm vector reads {reads}, bound-management re-reads {rereads} ({:.2} % of the reads)",
        100.0 * rereads as f64 / reads.max(1) as f64
    );
}

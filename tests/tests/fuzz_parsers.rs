//! Mutation fuzzing of every parser a user's file goes through — netlist JSON, model spec JSON,
//! run configs, suites, device presets, safetensors, .npy headers, IDX, CIFAR binary records and
//! images — on the seed corpus in `tests/fuzz-corpus/<target>/` (valid files, plus every input that
//! once crashed a parser, kept as a regression). Each case applies a few random mutations (flipped,
//! inserted, deleted or duplicated bytes, truncation, a spliced number) to a corpus file and hands
//! the result to the parser: an error is fine, a panic fails the test with the input that caused
//! it. The runs are seeded (the same cases every time) and bounded: `EPSIM_FUZZ_CASES` cases per
//! target (default 256; a few seconds in all); raise it for a longer campaign.
//!
//! The crates these parsers live in are built with overflow checks in every profile (the
//! workspace `Cargo.toml`), so a size that would wrap fails here as a panic; the first test
//! asserts that of each crate.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seed in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

/// One mutation of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
    /// Replace a run of ASCII digits with another number (sizes, offsets, shapes).
    Number(usize, &'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let numbers = prop::sample::select(vec![
        "0",
        "-1",
        "1",
        "65535",
        "4294967295",
        "18446744073709551615",
        "1e308",
        "NaN",
        "999999999999",
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), numbers).prop_map(|(i, s)| Mutation::Number(i, s)),
    ]
}

fn apply(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match m {
            Mutation::Flip(i, x) if !b.is_empty() => {
                let i = at(*i, b.len());
                b[i] ^= x | 1;
            }
            Mutation::Insert(i, v) => {
                let i = at(*i, b.len() + 1);
                b.splice(i..i, v.iter().copied());
            }
            Mutation::Delete(i, n) if !b.is_empty() => {
                let i = at(*i, b.len());
                let j = (i + n).min(b.len());
                b.drain(i..j);
            }
            Mutation::Duplicate(i, n) if !b.is_empty() => {
                let i = at(*i, b.len());
                let j = (i + n).min(b.len());
                let chunk: Vec<u8> = b[i..j].to_vec();
                b.splice(j..j, chunk);
            }
            Mutation::Truncate(i) => {
                let i = at(*i, b.len() + 1);
                b.truncate(i);
            }
            Mutation::Number(i, s) => {
                let digits: Vec<usize> = (0..b.len()).filter(|&k| b[k].is_ascii_digit()).collect();
                if let Some(&k) = digits.get(at(*i, digits.len())) {
                    let mut e = k;
                    while e < b.len() && b[e].is_ascii_digit() {
                        e += 1;
                    }
                    b.splice(k..e, s.bytes());
                }
            }
            _ => {}
        }
    }
    b
}

/// Run `parse` on mutated corpus files of `target`; any panic fails with the input.
fn fuzz(target: &str, parse: impl Fn(&Path, &[u8])) {
    let seeds = corpus(target);
    // The seeds themselves must go through without a panic.
    for (p, b) in &seeds {
        parse(p, b);
    }
    let cases = std::env::var("EPSIM_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(), 1..6));
    runner
        .run(&strategy, |(i, ms)| {
            let (p, b) = &seeds[i];
            let input = apply(b.clone(), &ms);
            parse(p, &input);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{target}: {e}"));
}

/// Every crate a parser below lives in traps integer overflow as built, in release too.
#[test]
fn parser_crates_are_built_with_overflow_checks() {
    let crates = [
        ("sim", sim::built_with_overflow_checks()),
        ("devices", devices::built_with_overflow_checks()),
        ("ep", ep::built_with_overflow_checks()),
        ("experiments", experiments::built_with_overflow_checks()),
    ];
    for (name, on) in crates {
        assert!(
            on,
            "{name} is built without overflow checks: set overflow-checks = true for it in the \
             workspace Cargo.toml's [profile.release.package.{name}]"
        );
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn netlist_json() {
    // The corpus netlist refers to docs/syn1.weight.npy: resolve its files against docs/.
    let origin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/netlist-example.json");
    fuzz("netlist", |_, b| {
        let _ = sim::netlist::Netlist::from_json(&text(b), sim::netlist::Origin::file(&origin));
    });
}

#[test]
fn model_spec_json() {
    fuzz("spec", |_, b| {
        if let Ok(s) = serde_json::from_str::<ep::ModelSpec>(&text(b)) {
            let _ = s.geometry();
        }
    });
}

#[test]
fn run_configs() {
    fuzz("config", |_, b| {
        let _ = experiments::runs::AnyConfig::from_toml(&text(b), "fuzz.toml");
    });
}

#[test]
fn suites() {
    fuzz("suite", |_, b| {
        if let Ok(s) = toml::from_str::<experiments::study::suite::Suite>(&text(b)) {
            let _ = s.check(Path::new("fuzz.toml"));
            let _ = s.items(Path::new("fuzz.toml"));
        }
    });
}

#[test]
fn device_presets() {
    fuzz("preset", |_, b| {
        let _ = devices::Preset::from_toml(&text(b), "fuzz.toml");
    });
}

#[test]
fn safetensors_files() {
    fuzz("safetensors", |_, b| {
        let _ = ep::checkpoint::TensorFile::from_bytes(b);
    });
}

#[test]
fn npy_headers() {
    fuzz("npy", |p, b| {
        let _ = experiments::data::npy::read_header(p, &mut &b[..]);
    });
}

#[test]
fn idx_files() {
    fuzz("idx", |p, b| {
        let _ = experiments::data::idx::parse_images(p, b);
        let _ = experiments::data::idx::parse_labels(p, b, 10);
    });
}

#[test]
fn cifar_records() {
    fuzz("cifar", |p, b| {
        let mut r = experiments::data::cifar::Records::default();
        let _ = experiments::data::cifar::parse_records(
            p,
            b,
            experiments::data::cifar::Variant::Cifar10,
            &mut r,
        );
        let mut r = experiments::data::cifar::Records::default();
        let _ = experiments::data::cifar::parse_records(
            p,
            b,
            experiments::data::cifar::Variant::Cifar100,
            &mut r,
        );
    });
}

#[test]
fn images() {
    fuzz("image", |_, b| {
        let _ = experiments::data::folder::decode_image(b);
    });
}

/// The first crash the fuzzer found: a config whose sizes ask for more memory than exists aborted
/// the process in the allocator; it is now an error naming the problem, before any allocation.
#[test]
fn huge_sizes_are_refused_before_allocation() {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus/config/crash-huge-channels.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let e = experiments::runs::AnyConfig::from_toml(&text, "huge.toml").expect_err("refused");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("huge.toml") && msg.contains("parameters"),
        "{msg}"
    );
}

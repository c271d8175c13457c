//! Tests of the CIFAR-10-C corruptions (`experiments::corrupt`): API errors, output shape and
//! sanity, determinism per seed, batch/thread independence, identity at zero strength,
//! hand-computed values of the simple formulas, monotone degradation with severity on real
//! CIFAR-10 test images, and the dataset/PNG writers.
//!
//! Real images come from the official CIFAR-10 binary test batch, located at
//! `$EPSIM_CIFAR10_DIR/test_batch.bin` or `<repo>/../shared/datasets/cifar10/test_batch.bin`.

use experiments::corrupt::{
    CorruptError, Corruption, chw_to_hwc, corrupt_batch_nchw, corrupt_dataset, corruption_grid,
    image_stream, write_cifar_binary, write_corruption_grid_png,
};
use rayon::prelude::*;
use sim::rng::Stream;
use std::path::PathBuf;

// ---------------------------------------------------------------------------------------------
// helpers

fn cifar_path() -> PathBuf {
    match std::env::var("EPSIM_CIFAR10_DIR") {
        Ok(d) => PathBuf::from(d).join("test_batch.bin"),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/datasets/cifar10/test_batch.bin"),
    }
}

/// The first `n` CIFAR-10 test records as (labels, HWC images).
fn cifar(n: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let p = cifar_path();
    let bytes = std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "CIFAR-10 test batch not found at {} ({e}); set EPSIM_CIFAR10_DIR to the folder holding test_batch.bin",
            p.display()
        )
    });
    assert_eq!(
        bytes.len(),
        10_000 * 3073,
        "{} is not the CIFAR-10 test batch",
        p.display()
    );
    let mut labels = Vec::new();
    let mut imgs = Vec::new();
    for r in bytes.chunks_exact(3073).take(n) {
        labels.push(r[0]);
        let chw = &r[1..];
        let mut hwc = vec![0u8; 3072];
        for i in 0..1024 {
            for c in 0..3 {
                hwc[i * 3 + c] = chw[c * 1024 + i];
            }
        }
        imgs.push(hwc);
    }
    (labels, imgs)
}

fn stream(seed: u64) -> Stream {
    Stream::new(seed, "test")
}

fn mad(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .sum::<f64>()
        / a.len() as f64
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    a.iter().zip(b).map(|(&x, &y)| x.abs_diff(y)).max().unwrap()
}

fn constant(h: usize, w: usize, rgb: [u8; 3]) -> Vec<u8> {
    (0..h * w).flat_map(|_| rgb).collect()
}

/// `np.uint8(e)` for a float value computed by hand, allowing for `e` sitting on an integer
/// (where the library's rounding may land on either side).
fn assert_trunc(got: u8, e: f64, what: &str) {
    let lo = (e - 1e-6).floor().clamp(0.0, 255.0) as u8;
    let hi = (e + 1e-6).floor().clamp(0.0, 255.0) as u8;
    assert!(
        got == lo || got == hi,
        "{what}: got {got}, expected trunc({e})"
    );
}

// ---------------------------------------------------------------------------------------------
// API

#[test]
fn names_roundtrip_and_order() {
    let all = Corruption::all();
    assert_eq!(all.len(), 19);
    let names: Vec<&str> = all.iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "gaussian_noise",
            "shot_noise",
            "impulse_noise",
            "defocus_blur",
            "glass_blur",
            "motion_blur",
            "zoom_blur",
            "snow",
            "frost",
            "fog",
            "brightness",
            "contrast",
            "elastic_transform",
            "pixelate",
            "jpeg_compression",
            "speckle_noise",
            "gaussian_blur",
            "spatter",
            "saturate"
        ]
    );
    for c in all {
        assert_eq!(Corruption::from_name(c.name()).unwrap(), *c);
        assert_eq!(Corruption::from_name(&c.name().to_uppercase()).unwrap(), *c);
    }
    assert_eq!(
        Corruption::from_name("jpeg").unwrap(),
        Corruption::JpegCompression
    );
    assert_eq!(Corruption::standard().len(), 15);
    assert_eq!(all.iter().filter(|c| c.is_extra()).count(), 4);
}

#[test]
fn bad_inputs_are_errors() {
    let img = constant(32, 32, [10, 20, 30]);
    let s = stream(0);
    match Corruption::from_name("gaussian_nois") {
        Err(CorruptError::UnknownName(n)) => assert_eq!(n, "gaussian_nois"),
        other => panic!("expected UnknownName, got {other:?}"),
    }
    let msg = Corruption::from_name("nope").unwrap_err().to_string();
    assert!(
        msg.contains("nope") && msg.contains("gaussian_noise"),
        "{msg}"
    );
    for c in Corruption::all() {
        for sev in [0u32, 6, 100] {
            assert!(
                matches!(c.apply(&img, 32, 32, sev, &s), Err(CorruptError::Severity(x)) if x == sev)
            );
        }
        // wrong buffer length, wrong declared shape, too small
        assert!(matches!(
            c.apply(&img[..3000], 32, 32, 1, &s),
            Err(CorruptError::Shape(_))
        ));
        assert!(matches!(
            c.apply(&img, 32, 16, 1, &s),
            Err(CorruptError::Shape(_))
        ));
        assert!(matches!(
            c.apply(&img[..4 * 4 * 3], 4, 4, 1, &s),
            Err(CorruptError::Shape(_))
        ));
        // wrong parameter count
        if *c != Corruption::ZoomBlur {
            let mut p = c.params(1).unwrap();
            p.push(0.5);
            assert!(
                matches!(
                    c.apply_with_param(&img, 32, 32, &p, &s),
                    Err(CorruptError::Param { .. })
                ),
                "{c}"
            );
        }
    }
    assert!(
        Corruption::Contrast
            .apply_with_param(&img, 32, 32, &[f64::NAN], &s)
            .is_err()
    );
    assert!(
        Corruption::ZoomBlur
            .apply_with_param(&img, 32, 32, &[], &s)
            .is_err()
    );
    assert!(
        Corruption::ZoomBlur
            .apply_with_param(&img, 32, 32, &[0.5], &s)
            .is_err()
    );
    assert!(
        Corruption::JpegCompression
            .apply_with_param(&img, 32, 32, &[0.0], &s)
            .is_err()
    );
    assert!(
        Corruption::Pixelate
            .apply_with_param(&img, 32, 32, &[1.5], &s)
            .is_err()
    );
    // absurd strengths and invalid kinds are errors, not hangs or panics
    let bad: [(Corruption, &[f64]); 5] = [
        (Corruption::GaussianBlur, &[1e9]),
        (Corruption::MotionBlur, &[1e7, 1.0]),
        (Corruption::Spatter, &[0.6, 0.1, 0.7, 0.7, 0.5, 2.0]),
        (Corruption::DefocusBlur, &[9.0, 0.1]),
        (Corruption::ShotNoise, &[0.0]),
    ];
    for (c, p) in bad {
        assert!(
            matches!(
                c.apply_with_param(&img, 32, 32, p, &s),
                Err(CorruptError::Param { .. })
            ),
            "{c} {p:?}"
        );
    }
    // dataset-level shape checks
    assert!(corrupt_dataset(&img, &[1, 2], Corruption::Contrast, 1, 0).is_err());
    assert!(corrupt_batch_nchw(&img[..100], 3, 32, 32, Corruption::Contrast, 1, 0, 0).is_err());
    let dir = tempfile::tempdir().unwrap();
    assert!(write_cifar_binary(&dir.path().join("x.bin"), &[1, 2], &img).is_err());
}

#[test]
fn reference_parameter_table_spot_checks() {
    // Values typed from make_cifar_c.py (reference facts §4.2), not from the code under test.
    assert_eq!(Corruption::GaussianNoise.params(3).unwrap(), vec![0.08]);
    assert_eq!(Corruption::ShotNoise.params(5).unwrap(), vec![50.0]);
    assert_eq!(Corruption::DefocusBlur.params(4).unwrap(), vec![1.0, 0.2]);
    assert_eq!(
        Corruption::GlassBlur.params(5).unwrap(),
        vec![0.4, 1.0, 2.0]
    );
    assert_eq!(Corruption::MotionBlur.params(5).unwrap(), vec![9.0, 2.5]);
    assert_eq!(
        Corruption::Snow.params(5).unwrap(),
        vec![0.3, 0.3, 1.25, 0.65, 14.0, 12.0, 0.8]
    );
    assert_eq!(Corruption::Fog.params(5).unwrap(), vec![1.5, 1.75]);
    assert_eq!(Corruption::JpegCompression.params(2).unwrap(), vec![65.0]);
    assert_eq!(
        Corruption::Spatter.params(4).unwrap(),
        vec![0.65, 0.1, 0.7, 0.69, 0.6, 1.0]
    );
    assert_eq!(Corruption::Saturate.params(5).unwrap(), vec![2.5, 0.2]);
    let el = Corruption::ElasticTransform.params(2).unwrap();
    assert!(
        (el[0] - 1.6).abs() < 1e-12 && (el[1] - 6.4).abs() < 1e-12 && (el[2] - 2.24).abs() < 1e-12
    );
    // np.arange float quirk: 7, 12, 16, 21, 26 zoom factors.
    let counts: Vec<usize> = (1..=5)
        .map(|s| Corruption::ZoomBlur.params(s).unwrap().len())
        .collect();
    assert_eq!(counts, [7, 12, 16, 21, 26]);
    let z5 = Corruption::ZoomBlur.params(5).unwrap();
    assert!((z5[0] - 1.0).abs() < 1e-12 && (z5[25] - 1.25).abs() < 1e-9);
}

#[test]
fn frost_matches_opencv_with_the_reference_draws() {
    // experiments/tests/fixtures/frost_cv2.bin, written by scripts/fixtures/make_frost_fixtures.py:
    // make_cifar_c.py's frost (cv2.imread, cv2.resize 0.2, crop, clip(c0·x + c1·frost)) with the
    // draws (photograph, crop row, crop column) given, on the first 6 CIFAR-10 test images.
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/frost_cv2.bin");
    let raw = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let rec = 5 + 3072;
    assert_eq!(
        raw.len(),
        30 * rec,
        "{}: 6 images x 5 severities",
        p.display()
    );
    let (_, imgs) = cifar(6);
    let mut photos = [0usize; 5];
    let mut worst = 0u8;
    for r in raw.chunks_exact(rec) {
        let (k, sev, idx, top, left) = (r[0] as usize, r[1] as u32, r[2] as usize, r[3], r[4]);
        photos[idx] += 1;
        let c = Corruption::Frost.params(sev).unwrap();
        let got: Vec<u8> = experiments::corrupt::frost::frost_with(
            &imgs[k],
            32,
            32,
            &c,
            idx,
            top as usize,
            left as usize,
        )
        .unwrap()
        .into_iter()
        .map(|v| v as u8)
        .collect();
        let d = max_diff(&got, &r[5..]);
        worst = worst.max(d);
        assert!(
            d <= 1,
            "image {k} severity {sev} frost{} crop ({top}, {left}): max |Δ| from OpenCV = {d}",
            idx + 1
        );
    }
    assert!(
        photos.iter().all(|&n| n > 0),
        "fixture covers every photograph: {photos:?}"
    );
    eprintln!("frost vs OpenCV reference (30 outputs): max |Δ| = {worst}");
}

#[test]
fn frost_draws_come_from_the_corruption_stream() {
    use experiments::corrupt::frost;
    let (_, imgs) = cifar(4);
    // apply = frost_with at the draws of the corruption's stream (child "frost", then "crop").
    for (k, img) in imgs.iter().enumerate() {
        for sev in [1, 5] {
            let s = stream(40 + k as u64);
            let (idx, top, left) = frost::draws(32, 32, &s.child("frost").child("crop")).unwrap();
            let want: Vec<u8> = frost::frost_with(
                img,
                32,
                32,
                &Corruption::Frost.params(sev).unwrap(),
                idx,
                top,
                left,
            )
            .unwrap()
            .into_iter()
            .map(|v| v as u8)
            .collect();
            assert_eq!(Corruption::Frost.apply(img, 32, 32, sev, &s).unwrap(), want);
        }
    }
    // randint(5) and randint(0, H′ − 32): every photograph, crops from the first row to the last.
    let mut count = [0usize; 5];
    let (mut lo, mut hi) = ([false; 5], [false; 5]);
    let n = 5000;
    for seed in 0..n {
        let (idx, top, left) = frost::draws(32, 32, &stream(seed)).unwrap();
        let (sh, sw) = frost::shrunk_size(idx, 32, 32).unwrap();
        assert!(top + 32 < sh + 1 && left + 32 < sw + 1 && top < sh - 32 && left < sw - 32);
        count[idx] += 1;
        lo[idx] |= top == 0;
        hi[idx] |= top == sh - 33;
    }
    for c in count {
        // binomial(5000, 0.2): std ≈ 28
        assert!((c as f64 - 1000.0).abs() < 150.0, "{count:?}");
    }
    assert!(
        lo.iter().all(|&b| b) && hi.iter().all(|&b| b),
        "{lo:?} {hi:?}"
    );
    // shrunk sizes = cv2.resize(fx=fy=0.2): round(H/5) x round(W/5)
    let sizes: Vec<_> = (0..5)
        .map(|i| frost::shrunk_size(i, 32, 32).unwrap())
        .collect();
    assert_eq!(
        sizes,
        [(120, 180), (63, 112), (63, 112), (70, 105), (99, 132)]
    );
    // larger images: a finer stride; too large: an error naming the limit
    assert_eq!(frost::stride(62, 104).unwrap(), 5);
    assert_eq!(frost::stride(63, 104).unwrap(), 4);
    assert_eq!(frost::stride(300, 500).unwrap(), 1);
    let big = vec![128u8; 100 * 150 * 3];
    let y = Corruption::Frost
        .apply(&big, 100, 150, 3, &stream(1))
        .unwrap();
    assert_eq!(y.len(), big.len());
    let e = Corruption::Frost
        .apply(&vec![0u8; 320 * 320 * 3], 320, 320, 1, &stream(1))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("larger than the frost photographs allow"),
        "{e}"
    );
}

#[test]
fn output_shape_and_sanity_on_real_images() {
    let (_, imgs) = cifar(12);
    for c in Corruption::all() {
        for sev in 1..=5 {
            for (k, img) in imgs.iter().enumerate() {
                let y = c.apply(img, 32, 32, sev, &stream(k as u64)).unwrap();
                // `apply` returns an error (not a saturated byte) if any float output left
                // 0..=255 or was NaN, so the unwrap above is the range check.
                assert_eq!(y.len(), 3072, "{c} s{sev}");
                // No corruption should leave a CIFAR image as a single flat colour.
                assert!(y.iter().any(|&v| v != y[0]), "{c} s{sev}: flat output");
            }
        }
    }
    // Non-square, non-32 sizes work too.
    let img: Vec<u8> = (0..20 * 48 * 3).map(|i| (i * 7 % 251) as u8).collect();
    for c in Corruption::all() {
        for sev in 1..=5 {
            let y = c.apply(&img, 20, 48, sev, &stream(3)).unwrap();
            assert_eq!(y.len(), img.len(), "{c} s{sev} on 20x48");
        }
    }
}

#[test]
fn determinism_per_seed_and_variation_across_seeds() {
    let (_, imgs) = cifar(4);
    for c in Corruption::all() {
        for sev in [1, 3, 5] {
            let mut differs = false;
            for (k, img) in imgs.iter().enumerate() {
                let k = k as u64;
                let a = c.apply(img, 32, 32, sev, &stream(7 + 100 * k)).unwrap();
                let b = c.apply(img, 32, 32, sev, &stream(7 + 100 * k)).unwrap();
                assert_eq!(a, b, "{c} s{sev}: same seed, different output");
                let d = c.apply(img, 32, 32, sev, &stream(8 + 100 * k)).unwrap();
                differs |= a != d;
            }
            assert_eq!(
                differs,
                c.is_random(),
                "{c} s{sev}: seed dependence should be {}",
                c.is_random()
            );
        }
    }
}

#[test]
fn batch_is_independent_of_split_and_threads() {
    let (labels, imgs) = cifar(10);
    let nchw: Vec<u8> = imgs
        .iter()
        .flat_map(|hwc| {
            let mut chw = vec![0u8; 3072];
            for i in 0..1024 {
                for c in 0..3 {
                    chw[c * 1024 + i] = hwc[i * 3 + c];
                }
            }
            chw
        })
        .collect();
    for c in [
        Corruption::GaussianNoise,
        Corruption::GlassBlur,
        Corruption::Snow,
        Corruption::ElasticTransform,
    ] {
        let all = corrupt_dataset(&nchw, &labels, c, 3, 42).unwrap();
        let first = corrupt_batch_nchw(&nchw[..4 * 3072], 3, 32, 32, c, 3, 42, 0).unwrap();
        let rest = corrupt_batch_nchw(&nchw[4 * 3072..], 3, 32, 32, c, 3, 42, 4).unwrap();
        assert_eq!(all, [first, rest].concat(), "{c}: split changes the result");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let single = pool.install(|| corrupt_dataset(&nchw, &labels, c, 3, 42).unwrap());
        assert_eq!(all, single, "{c}: thread count changes the result");
        // and equals the per-image API with image_stream
        for (k, img) in imgs.iter().enumerate() {
            let y = c
                .apply(img, 32, 32, 3, &image_stream(42, c, 3, k as u64))
                .unwrap();
            assert_eq!(
                chw_to_hwc(&all[k * 3072..(k + 1) * 3072], 32, 32),
                y,
                "{c} image {k}"
            );
        }
        let other_seed = corrupt_dataset(&nchw, &labels, c, 3, 43).unwrap();
        assert_ne!(all, other_seed, "{c}: seed ignored");
    }
}

// ---------------------------------------------------------------------------------------------
// identity at zero strength

#[test]
fn identity_at_zero_strength() {
    let (_, imgs) = cifar(6);
    use Corruption::*;
    // (corruption, parameters giving the identity, allowed max |Δ| in grey levels)
    let cases: Vec<(Corruption, Vec<f64>, u8)> = vec![
        (GaussianNoise, vec![0.0], 0),
        (SpeckleNoise, vec![0.0], 0),
        (ImpulseNoise, vec![0.0], 0),
        (ShotNoise, vec![1e7], 1),
        (Brightness, vec![0.0], 1),
        (Saturate, vec![1.0, 0.0], 1),
        (Contrast, vec![1.0], 1),
        (GaussianBlur, vec![0.0], 1),
        (GlassBlur, vec![0.0, 1.0, 0.0], 1),
        (MotionBlur, vec![0.0, 1.0], 0),
        (ZoomBlur, vec![1.0], 1),
        (Pixelate, vec![1.0], 0),
        (Frost, vec![1.0, 0.0], 0),
        (Fog, vec![0.0, 2.0], 1),
        (ElasticTransform, vec![0.0, 0.0, 0.0], 1),
        (Snow, vec![0.1, 0.2, 1.0, 2.0, 8.0, 3.0, 1.0], 1),
        (Spatter, vec![0.62, 0.1, 0.7, 0.7, 0.0, 0.0], 1),
        (Spatter, vec![0.65, 0.1, 0.7, 2.0, 0.6, 1.0], 1),
    ];
    for (c, p, tol) in cases {
        for (k, img) in imgs.iter().enumerate() {
            let y = c
                .apply_with_param(img, 32, 32, &p, &stream(k as u64))
                .unwrap();
            let d = max_diff(&y, img);
            assert!(d <= tol, "{c} {p:?}: max |Δ| = {d} > {tol}");
        }
    }
    // JPEG at quality 100 is near-identity, not identity.
    for img in &imgs {
        let y = JpegCompression
            .apply_with_param(img, 32, 32, &[100.0], &stream(0))
            .unwrap();
        assert!(mad(&y, img) < 2.0, "jpeg q100 mean |Δ| = {}", mad(&y, img));
    }
}

// ---------------------------------------------------------------------------------------------
// hand-computed values

#[test]
fn brightness_scales_rgb_by_new_over_old_value() {
    // Adding c to V with H, S fixed multiplies each channel by min(V + c, 1)/V.
    let px = [
        [40u8, 90, 200],
        [10, 20, 250],
        [200, 100, 50],
        [0, 0, 0],
        [255, 255, 255],
        [13, 77, 77],
    ];
    let mut img = constant(8, 8, [0, 0, 0]);
    for (k, p) in px.iter().enumerate() {
        img[k * 3..k * 3 + 3].copy_from_slice(p);
    }
    for c in [0.05, 0.1, 0.3] {
        let y = Corruption::Brightness
            .apply_with_param(&img, 8, 8, &[c], &stream(0))
            .unwrap();
        for (k, p) in px.iter().enumerate() {
            let v = *p.iter().max().unwrap() as f64 / 255.0;
            for ch in 0..3 {
                let e = if v == 0.0 {
                    // black: H = S = 0, V = c → grey c
                    c * 255.0
                } else {
                    p[ch] as f64 * (v + c).min(1.0) / v
                };
                assert_trunc(y[k * 3 + ch], e, &format!("brightness c={c} px{k} ch{ch}"));
            }
        }
    }
    // Hand-computed: (40, 90, 200) with c = 0.1: factor (200 + 25.5)/200 = 1.1275.
    let y = Corruption::Brightness
        .apply_with_param(&img, 8, 8, &[0.1], &stream(0))
        .unwrap();
    assert_eq!(&y[..3], &[45, 101, 225]);
}

#[test]
fn saturate_moves_channels_towards_value() {
    // With V and H fixed, channel = V − (V − channel)·S'/S.
    let px = [[40u8, 90, 200], [200, 100, 50], [120, 30, 60]];
    let mut img = constant(8, 8, [100, 100, 100]);
    for (k, p) in px.iter().enumerate() {
        img[k * 3..k * 3 + 3].copy_from_slice(p);
    }
    for (c0, c1) in [(0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1)] {
        let y = Corruption::Saturate
            .apply_with_param(&img, 8, 8, &[c0, c1], &stream(0))
            .unwrap();
        for (k, p) in px.iter().enumerate() {
            let v = *p.iter().max().unwrap() as f64;
            let mn = *p.iter().min().unwrap() as f64;
            let s = (v - mn) / v;
            let s2 = (s * c0 + c1).clamp(0.0, 1.0);
            for ch in 0..3 {
                let e = v - (v - p[ch] as f64) * s2 / s;
                assert_trunc(
                    y[k * 3 + ch],
                    e,
                    &format!("saturate {c0},{c1} px{k} ch{ch}"),
                );
            }
        }
    }
    // A grey pixel has H = 0 (red) and S = 0; severity 5 (2.5, 0.2) gives S = 0.2:
    // (v, v·0.8, v·0.8) = (100, 80, 80).
    let y = Corruption::Saturate
        .apply(&img, 8, 8, 5, &stream(0))
        .unwrap();
    let last = 63 * 3;
    assert_eq!(&y[last..last + 3], &[100, 80, 80]);
}

#[test]
fn contrast_hand_values() {
    // R: 32 pixels 0 and 32 pixels 200 (mean 100); G: 77 everywhere; B: 48×10 and 16×250 (mean 70).
    let mut img = vec![0u8; 64 * 3];
    for i in 0..64 {
        img[i * 3] = if i < 32 { 0 } else { 200 };
        img[i * 3 + 1] = 77;
        img[i * 3 + 2] = if i < 48 { 10 } else { 250 };
    }
    let y = Corruption::Contrast
        .apply_with_param(&img, 8, 8, &[0.5], &stream(0))
        .unwrap();
    assert_eq!(&y[..3], &[50, 77, 40]);
    assert_eq!(&y[63 * 3..], &[150, 77, 160]);
    // severity 5 (c = 0.15): R 100 ± 15, B 70 + (10 − 70)·0.15 = 61 and 70 + (250 − 70)·0.15 = 97
    let y = Corruption::Contrast
        .apply(&img, 8, 8, 5, &stream(0))
        .unwrap();
    for (k, e) in [(0usize, [85.0, 77.0, 61.0]), (63, [115.0, 77.0, 97.0])] {
        for ch in 0..3 {
            assert_trunc(y[k * 3 + ch], e[ch], &format!("contrast s5 px{k} ch{ch}"));
        }
    }
}

#[test]
fn pixelate_two_pass_box_rounding() {
    // 8×8 → 4×4 → 8×8 (c = 0.5): each 2×2 block becomes its two-pass rounded mean.
    // Block rows (10, 20) / (30, 41): horizontal pass 15 and 35.5 → 36, vertical (15 + 36)/2 = 25.5 → 26.
    let mut img = vec![0u8; 64 * 3];
    for i in 0..8 {
        for j in 0..8 {
            let v = match (i % 2, j % 2) {
                (0, 0) => 10,
                (0, 1) => 20,
                (1, 0) => 30,
                _ => 41,
            };
            for ch in 0..3 {
                img[(i * 8 + j) * 3 + ch] = v + ch as u8;
            }
        }
    }
    let y = Corruption::Pixelate
        .apply_with_param(&img, 8, 8, &[0.5], &stream(0))
        .unwrap();
    // channel 1: (11,21)→16, (31,42)→36.5→37, (16+37)/2 = 26.5 → 27; channel 2: (12,22)→17, (32,43)→37.5→38, 27.5→28
    for px in y.chunks(3) {
        assert_eq!(px, &[26, 27, 28]);
    }
    // Severity sizes int(32·c): 30, 28, 27, 24, 20. On a 32-wide ramp, the number of distinct
    // values per row equals the intermediate width.
    let ramp: Vec<u8> = (0..32 * 32)
        .flat_map(|i| [((i % 32) * 8) as u8; 3])
        .collect();
    for (sev, n) in [(1u32, 30usize), (2, 28), (3, 27), (4, 24), (5, 20)] {
        let y = Corruption::Pixelate
            .apply(&ramp, 32, 32, sev, &stream(0))
            .unwrap();
        let mut row: Vec<u8> = (0..32).map(|j| y[j * 3]).collect();
        row.dedup();
        assert_eq!(row.len(), n, "pixelate severity {sev}");
    }
}

#[test]
fn gaussian_blur_of_an_impulse_is_the_kernel_outer_product() {
    // σ = 1, truncate 4: w_t = exp(−t²/2)/Σ_{|u|≤4} exp(−u²/2).
    let z: f64 = (-4..=4).map(|t: i32| (-(t * t) as f64 / 2.0).exp()).sum();
    let wt = |t: i32| (-(t * t) as f64 / 2.0).exp() / z;
    let mut img = constant(16, 16, [0, 0, 0]);
    let c = (8 * 16 + 8) * 3;
    img[c..c + 3].copy_from_slice(&[255, 255, 255]);
    let y = Corruption::GaussianBlur
        .apply_with_param(&img, 16, 16, &[1.0], &stream(0))
        .unwrap();
    for (di, dj) in [(0, 0), (0, 1), (1, 1), (2, 0), (3, 2)] {
        let e = 255.0 * wt(di) * wt(dj);
        let k = ((8 + di as usize) * 16 + 8 + dj as usize) * 3;
        assert_trunc(y[k], e, &format!("blur at ({di},{dj})"));
    }
    assert_eq!(y[0], 0);
}

#[test]
fn noise_statistics_match_the_formulas() {
    let (h, w) = (64, 64);
    let img = constant(h, w, [128, 128, 128]);
    let x = 128.0 / 255.0;
    let stats = |y: &[u8]| {
        let n = y.len() as f64;
        let m = y.iter().map(|&v| v as f64).sum::<f64>() / n;
        let v = y.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n;
        (m, v.sqrt())
    };
    // gaussian: 255·(x + N(0, c²)) truncated → mean 128 − 0.5, sd 255·c
    let c = 0.1;
    let (m, sd) = stats(
        &Corruption::GaussianNoise
            .apply_with_param(&img, h, w, &[c], &stream(1))
            .unwrap(),
    );
    assert!((m - 127.5).abs() < 1.0, "gaussian mean {m}");
    assert!((sd / (255.0 * c) - 1.0).abs() < 0.05, "gaussian sd {sd}");
    // speckle: sd 255·x·c
    let c = 0.2;
    let (m, sd) = stats(
        &Corruption::SpeckleNoise
            .apply_with_param(&img, h, w, &[c], &stream(1))
            .unwrap(),
    );
    assert!((m - 127.5).abs() < 1.0, "speckle mean {m}");
    assert!((sd / (255.0 * x * c) - 1.0).abs() < 0.05, "speckle sd {sd}");
    // shot: trunc(255·min(K/c, 1)) with K ~ Poisson(x·c); mean and sd from the pmf by hand
    // (p_k = p_{k−1}·λ/k), covering both sampler branches (λ < 10 and λ ≥ 10).
    for c in [5.0, 15.0, 50.0, 500.0] {
        let (m, sd) = stats(
            &Corruption::ShotNoise
                .apply_with_param(&img, h, w, &[c], &stream(2))
                .unwrap(),
        );
        let lam: f64 = x * c;
        let (mut pk, mut e1, mut e2) = ((-lam).exp(), 0.0, 0.0);
        for k in 0..2000 {
            if k > 0 {
                pk *= lam / k as f64;
            }
            let v = (255.0 * (k as f64 / c).min(1.0)).floor();
            e1 += pk * v;
            e2 += pk * v * v;
        }
        let e_sd = (e2 - e1 * e1).sqrt();
        let n = (h * w * 3) as f64;
        assert!(
            (m - e1).abs() < 4.0 * e_sd / n.sqrt(),
            "shot c={c} mean {m} vs {e1}"
        );
        assert!(
            (sd / e_sd - 1.0).abs() < 0.05,
            "shot c={c} sd {sd} vs {e_sd}"
        );
    }
    // impulse: a fraction c of the elements becomes 0 or 255, half each
    let c = 0.07;
    let y = Corruption::ImpulseNoise
        .apply_with_param(&img, h, w, &[c], &stream(3))
        .unwrap();
    let n = y.len() as f64;
    let salt = y.iter().filter(|&&v| v == 255).count() as f64 / n;
    let pepper = y.iter().filter(|&&v| v == 0).count() as f64 / n;
    assert!(y.iter().all(|&v| v == 0 || v == 128 || v == 255));
    assert!(
        (salt - c / 2.0).abs() < 0.01 && (pepper - c / 2.0).abs() < 0.01,
        "salt {salt} pepper {pepper}"
    );
}

#[test]
fn motion_blur_is_one_sided() {
    // A single bright pixel on black: ImageMagick's kernel only looks forward along the angle, so
    // the smear lies on one side of the source pixel, within 2·ceil(radius) pixels.
    let mut img = constant(32, 32, [0, 0, 0]);
    let c = (16 * 32 + 16) * 3;
    img[c..c + 3].copy_from_slice(&[255, 255, 255]);
    let y = Corruption::MotionBlur
        .apply(&img, 32, 32, 1, &stream(5))
        .unwrap();
    let lit: Vec<(isize, isize)> = (0..32 * 32)
        .filter(|&k| y[k * 3] > 0)
        .map(|k| ((k / 32) as isize - 16, (k % 32) as isize - 16))
        .collect();
    assert!(lit.len() >= 2, "smear too short: {lit:?}");
    assert!(lit.iter().all(|&(dy, dx)| dy.abs() <= 12 && dx.abs() <= 12));
    // one-sided: all lit pixels lie in one closed half-plane through the source
    let (sy, sx) = lit.iter().fold((0, 0), |a, &(dy, dx)| (a.0 + dy, a.1 + dx));
    assert!(
        lit.iter().all(|&(dy, dx)| dy * sy + dx * sx >= 0),
        "{lit:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// degradation with severity

/// 1 − Pearson correlation between the corrupted and the clean pixel values.
fn decorrelation(a: &[u8], b: &[u8]) -> f64 {
    let n = a.len() as f64;
    let ma = a.iter().map(|&v| v as f64).sum::<f64>() / n;
    let mb = b.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        return 1.0;
    }
    1.0 - sab / (saa * sbb).sqrt()
}

/// Mean over `imgs` of `metric(corrupted, clean)` for corruption `c` with parameters `p`.
fn mean_metric(
    imgs: &[Vec<u8>],
    c: Corruption,
    p: &[f64],
    tag: u32,
    metric: fn(&[u8], &[u8]) -> f64,
) -> f64 {
    imgs.par_iter()
        .enumerate()
        .map(|(k, img)| {
            let s = image_stream(11, c, tag, k as u64);
            metric(&c.apply_with_param(img, 32, 32, p, &s).unwrap(), img)
        })
        .sum::<f64>()
        / imgs.len() as f64
}

/// Which severities the reference parameter table orders, for the mean |Δ| metric:
/// (pairs (a, b) that must satisfy d_a < d_b, pairs that are equal by construction (within 3 %)).
/// The default is the chain 1 < 2 < 3 < 4 < 5; the exceptions come from `make_cifar_c.py`'s table.
#[allow(clippy::type_complexity)]
fn mad_order(c: Corruption) -> (Vec<(usize, usize)>, Vec<(usize, usize)>) {
    let chain = vec![(1, 2), (2, 3), (3, 4), (4, 5)];
    match c {
        // (σ, δ, iterations) = (.05,1,1), (.25,1,1), (.4,1,1), (.25,1,2), (.4,1,2): σ ≤ 0.25 is a
        // near-identity blur (weights ≤ e⁻⁸), and a larger σ makes the shuffled neighbours more
        // alike, so only the iteration count orders the pixel change.
        Corruption::GlassBlur => (vec![(1, 4), (2, 4), (3, 5), (2, 5)], vec![(1, 2)]),
        // (radius, σ) = (6, 2) and (8, 2): the extra kernel taps weigh exp(−13²/8) ≈ 7e−10
        // (ImageMagick's outputs for the two are identical, see the fixture hashes).
        Corruption::MotionBlur => (vec![(1, 2), (2, 3), (3, 5), (4, 5)], vec![(3, 4)]),
        // (c₀, c₁): the clean weight c₀ drops from severity 3 on (darkening), which lowers
        // |Δ| while the overlay grows; ordered by decorrelation instead (below).
        Corruption::Frost => (vec![(1, 2), (2, 3)], vec![]),
        // severities 1–3 are water, 4–5 mud (different mechanisms).
        Corruption::Spatter => (vec![(1, 2), (2, 3), (4, 5)], vec![]),
        // (0.3, 0), (0.1, 0) desaturate, (1.5, 0), (2, .1), (2.5, .2) saturate.
        Corruption::Saturate => (vec![(1, 2), (3, 4), (4, 5)], vec![]),
        // The affine part shrinks with severity (2.56 → 0.96 px) while the elastic field grows;
        // tested per component in `elastic_components_follow_the_table`.
        Corruption::ElasticTransform => (vec![], vec![]),
        _ => (chain, vec![]),
    }
}

#[test]
fn degradation_grows_with_severity_on_real_images() {
    let (_, imgs) = cifar(300);
    let mut report = String::new();
    let mut failures = Vec::new();
    for c in Corruption::all() {
        let d: Vec<f64> = (1..=5u32)
            .map(|sev| mean_metric(&imgs, *c, &c.params(sev).unwrap(), sev, mad))
            .collect();
        let r: Vec<f64> = (1..=5u32)
            .map(|sev| mean_metric(&imgs, *c, &c.params(sev).unwrap(), sev, decorrelation))
            .collect();
        report += &format!(
            "{:<18} mean|Δ| {:?}  1−corr {:?}\n",
            c.name(),
            d.iter()
                .map(|v| (v * 100.0).round() / 100.0)
                .collect::<Vec<_>>(),
            r.iter()
                .map(|v| (v * 1e4).round() / 1e4)
                .collect::<Vec<_>>()
        );
        let (inc, eq) = mad_order(*c);
        for (a, b) in inc {
            if d[b - 1] <= d[a - 1] {
                failures.push(format!(
                    "{c}: mean|Δ| severity {b} ({:.3}) ≤ severity {a} ({:.3})",
                    d[b - 1],
                    d[a - 1]
                ));
            }
        }
        for (a, b) in eq {
            if (d[b - 1] - d[a - 1]).abs() > 0.03 * d[a - 1] {
                failures.push(format!(
                    "{c}: severities {a} and {b} should agree within 3 %: {:.3} vs {:.3}",
                    d[a - 1],
                    d[b - 1]
                ));
            }
        }
        if *c == Corruption::Frost {
            for s in 1..5 {
                if r[s] <= r[s - 1] {
                    failures.push(format!(
                        "frost: decorrelation severity {} ≤ severity {}",
                        s + 1,
                        s
                    ));
                }
            }
        }
        assert!(d[0] > 0.0, "{c}: severity 1 leaves the images unchanged");
    }
    eprintln!("degradation per severity (300 CIFAR-10 test images):\n{report}");
    assert!(failures.is_empty(), "{failures:#?}\n{report}");
}

#[test]
fn elastic_components_follow_the_table() {
    // Severity s has (alpha, sigma, affine); the field part alone (affine = 0) must grow from
    // severity 2 to 5 (alpha/sigma = 0.25, 1.33, 2.5, 3.33), the affine part alone (alpha = 0)
    // must shrink from severity 1 to 5 (2.56, 2.24, 1.92, 1.6, 0.96 px).
    let (_, imgs) = cifar(200);
    let c = Corruption::ElasticTransform;
    let field: Vec<f64> = (2..=5u32)
        .map(|sev| {
            let p = c.params(sev).unwrap();
            mean_metric(&imgs, c, &[p[0], p[1], 0.0], sev, mad)
        })
        .collect();
    let affine: Vec<f64> = (1..=5u32)
        .map(|sev| {
            let p = c.params(sev).unwrap();
            mean_metric(&imgs, c, &[0.0, 0.0, p[2]], sev, mad)
        })
        .collect();
    assert!(
        field.windows(2).all(|w| w[1] > w[0]),
        "field part {field:?}"
    );
    assert!(
        affine.windows(2).all(|w| w[1] < w[0]),
        "affine part {affine:?}"
    );
    assert!(field[0] > 0.0 && affine[4] > 0.0);
}

// ---------------------------------------------------------------------------------------------
// agreement with the reference implementation (fixtures/cifar_c_reference.txt)

fn fnv1a64(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h ^= b as u64;
        *h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

fn fixture_lines(kind: &str) -> Vec<Vec<String>> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cifar_c_reference.txt");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .filter(|l| l.starts_with(kind))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

#[test]
fn deterministic_corruptions_match_the_reference_bit_for_bit() {
    // Outputs of make_cifar_c.py (numpy/scipy/skimage/Pillow/OpenCV) on the first 50 test images.
    let (_, imgs) = cifar(50);
    let lines = fixture_lines("ref ");
    assert_eq!(lines.len(), 40, "fixture has 8 corruptions x 5 severities");
    for l in lines {
        let c = Corruption::from_name(&l[1]).unwrap();
        let sev: u32 = l[2].parse().unwrap();
        let ref_mad: f64 = l[4].parse().unwrap();
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut m = 0.0;
        for img in &imgs {
            let y = c.apply(img, 32, 32, sev, &stream(0)).unwrap();
            fnv1a64(&mut h, &y);
            m += mad(&y, img) / imgs.len() as f64;
        }
        assert_eq!(
            format!("{h:016x}"),
            l[3],
            "{c} s{sev}: output differs from the reference (mean|Δ| {m:.4} vs {ref_mad:.4})"
        );
    }
}

#[test]
fn jpeg_compression_matches_pil_within_two_levels() {
    // experiments/tests/fixtures/jpeg_pil.bin, written by scripts/fixtures/make_jpeg_fixtures.py
    // with Pillow (x.save(f, 'JPEG', quality=q); Image.open(f), as make_cifar_c.py does): per
    // image the clean HWC image, then its round trips at the qualities of severities 1..5.
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jpeg_pil.bin");
    let raw = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let rec = 6 * 3072;
    assert!(
        !raw.is_empty() && raw.len() % rec == 0,
        "{}: {} bytes is not a whole number of (clean + 5 severities) records",
        p.display(),
        raw.len()
    );
    let mut worst = [0u8; 5];
    let mut exact = [0usize; 5];
    for (k, r) in raw.chunks_exact(rec).enumerate() {
        let img = &r[..3072];
        for sev in 1..=5u32 {
            let want = &r[sev as usize * 3072..(sev as usize + 1) * 3072];
            let got = Corruption::JpegCompression
                .apply(img, 32, 32, sev, &stream(0))
                .unwrap();
            let d = max_diff(&got, want);
            let s = sev as usize - 1;
            worst[s] = worst[s].max(d);
            exact[s] += (got == want) as usize;
            assert!(
                d <= 2,
                "image {k} severity {sev}: max |Δ| from PIL = {d} (mean {:.3})",
                mad(&got, want)
            );
        }
    }
    eprintln!(
        "jpeg vs PIL over {} images: max |Δ| per severity {worst:?}, bit-identical images {exact:?}",
        raw.len() / rec
    );
}

#[test]
fn motion_blur_kernel_matches_imagemagick_bit_for_bit() {
    // ImageMagick 6.9.11-60 Q16 outputs (hashes) for the motion_blur and snow (radius, sigma).
    let raw = std::fs::read(cifar_path()).unwrap();
    let angles = [-135.0, -100.0, -60.0, -45.0, -10.0, 0.0, 7.3, 44.9];
    let lines = fixture_lines("im_motion_blur ");
    assert_eq!(lines.len(), 9);
    for l in lines {
        let (rad, sig): (f64, f64) = (l[1].parse().unwrap(), l[2].parse().unwrap());
        let ch: usize = l[3].parse().unwrap();
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for k in 0..4 {
            let r = &raw[k * 3073 + 1..(k + 1) * 3073];
            let mut img = vec![0u8; 1024 * ch];
            for i in 0..1024 {
                for c in 0..ch {
                    img[i * ch + c] = r[c * 1024 + i];
                }
            }
            for a in angles {
                fnv1a64(
                    &mut h,
                    &experiments::corrupt::ops::motion_blur_u8(&img, 32, 32, ch, rad, sig, a),
                );
            }
        }
        assert_eq!(
            format!("{h:016x}"),
            l[4],
            "motion blur radius {rad} sigma {sig} channels {ch}"
        );
    }
}

#[test]
fn spatter_water_chain_matches_opencv_bit_for_bit() {
    let raw = std::fs::read(cifar_path()).unwrap();
    let lines = fixture_lines("spatter_water ");
    assert_eq!(lines.len(), 4);
    let mut hs = [0xcbf2_9ce4_8422_2325u64; 4];
    for k in 0..50 {
        let red = &raw[k * 3073 + 1..k * 3073 + 1025];
        let l8: Vec<u8> = red.iter().map(|&v| if v > 160 { v } else { 0 }).collect();
        let st = experiments::corrupt::spatter::water_stages(&l8, 32, 32);
        for (h, s) in hs.iter_mut().zip(&st) {
            fnv1a64(h, s);
        }
    }
    for (l, h) in lines.iter().zip(hs) {
        assert_eq!(format!("{h:016x}"), l[2], "spatter water stage {}", l[1]);
    }
}

#[test]
fn elastic_warp_and_map_coordinates_match_opencv_and_scipy() {
    use experiments::corrupt::ops::{
        affine_from_points, map_coordinates_order1_reflect, warp_affine_f32,
    };
    let raw = std::fs::read(cifar_path()).unwrap();
    let (mut hw, mut hm) = (0xcbf2_9ce4_8422_2325u64, 0xcbf2_9ce4_8422_2325u64);
    for k in 0..20usize {
        let r = &raw[k * 3073 + 1..(k + 1) * 3073];
        let mut x = vec![0f32; 3072];
        for i in 0..1024 {
            for c in 0..3 {
                x[i * 3 + c] = r[c * 1024 + i] as f32 / 255.0;
            }
        }
        let pts1 = [[26.0f32, 26.0], [26.0, 6.0], [6.0, 6.0]];
        let mut pts2 = pts1;
        for t in 0..6 {
            pts2[t / 2][t % 2] += ((((k * 7 + t * 3) % 11) as f64 - 5.0) * 0.37) as f32;
        }
        let m = affine_from_points(
            pts1.map(|q| q.map(|v| v as f64)),
            pts2.map(|q| q.map(|v| v as f64)),
        )
        .unwrap();
        let warped = warp_affine_f32(&x, 32, 32, 3, m);
        let bytes: Vec<u8> = warped.iter().flat_map(|v| v.to_le_bytes()).collect();
        fnv1a64(&mut hw, &bytes);
        let (mut dx, mut dy) = (vec![0f64; 1024], vec![0f64; 1024]);
        for i in 0..32 {
            for j in 0..32 {
                dx[i * 32 + j] =
                    (((((i * 5 + j * 3 + k) % 17) as f64 - 8.0) / 8.0 * 1.3) as f32) as f64;
                dy[i * 32 + j] =
                    (((((i * 3 + j * 7 + 2 * k) % 13) as f64 - 6.0) / 6.0 * 1.1) as f32) as f64;
            }
        }
        let w64: Vec<f64> = warped.iter().map(|&v| v as f64).collect();
        let y: Vec<u8> = map_coordinates_order1_reflect(&w64, 32, 32, 3, &dy, &dx)
            .into_iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0) as u8)
            .collect();
        fnv1a64(&mut hm, &y);
    }
    assert_eq!(
        format!("{hw:016x}"),
        fixture_lines("elastic_warp ")[0][1],
        "warpAffine"
    );
    assert_eq!(
        format!("{hm:016x}"),
        fixture_lines("elastic_map ")[0][1],
        "map_coordinates"
    );
}

#[test]
fn random_corruptions_match_the_reference_with_injected_draws() {
    use experiments::corrupt::kinds::{glass_blur_with, snow_with};
    use experiments::corrupt::plasma::plasma_fractal_with;
    let frac = |k: f64| (k * 0.618_033_988_749_894_9) % 1.0;
    let (_, imgs) = cifar(20);
    type Case<'a> = &'a dyn Fn(&[u8], usize, u32) -> Vec<f64>;
    let hash = |f: Case| {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for sev in 1..=5u32 {
            for (k, img) in imgs.iter().enumerate() {
                let y: Vec<u8> = f(img, k, sev).into_iter().map(|v| v as u8).collect();
                fnv1a64(&mut h, &y);
            }
        }
        format!("{h:016x}")
    };
    let expect = |name: &str| {
        fixture_lines("injected ")
            .into_iter()
            .find(|l| l[1] == name)
            .unwrap()[2]
            .clone()
    };
    // fog (the formula x += c0·plasma; clip(x·max/(max + c0)) is written out here)
    let fog = hash(&|img: &[u8], _k, sev| {
        let p = Corruption::Fog.params(sev).unwrap();
        let pl = plasma_fractal_with(32, p[1], |call, e| frac((call * 1000 + e as u64) as f64));
        let x: Vec<f64> = img.iter().map(|&v| v as f64 / 255.0).collect();
        let mx = x.iter().cloned().fold(0.0, f64::max);
        x.iter()
            .enumerate()
            .map(|(i, &v)| ((v + p[0] * pl[i / 3]) * mx / (mx + p[0])).clamp(0.0, 1.0) * 255.0)
            .collect()
    });
    assert_eq!(fog, expect("fog"), "fog");
    let glass = hash(&|img: &[u8], _k, sev| {
        let p = Corruption::GlassBlur.params(sev).unwrap();
        let d = p[1] as isize;
        let n = 32 - 2 * d as usize; // positions per row/column
        glass_blur_with(img, 32, 32, p[0], d, p[2] as usize, |it, hi, wi, which| {
            let q = ((it * n + (32 - d as usize - hi)) * n + (32 - d as usize - wi)) * 2 + which;
            -d + (frac(q as f64) * (2 * d) as f64) as isize
        })
    });
    assert_eq!(glass, expect("glass_blur"), "glass_blur");
    let z: Vec<f64> = (0..1024).map(|e| (frac(e as f64) - 0.5) * 4.0).collect();
    let snow = hash(&|img: &[u8], k, sev| {
        let p = Corruption::Snow.params(sev).unwrap();
        snow_with(img, 32, 32, &p, &z, -135.0 + 90.0 * frac((7 + k) as f64))
    });
    assert_eq!(snow, expect("snow"), "snow");
    let spatter = hash(&|img: &[u8], k, sev| {
        let p = Corruption::Spatter.params(sev).unwrap();
        let z: Vec<f64> = (0..1024)
            .map(|e| (frac((3000 + 1024 * k + e) as f64) - 0.5) * 4.0)
            .collect();
        experiments::corrupt::spatter::spatter_with(img, 32, 32, &p, &z)
    });
    assert_eq!(spatter, expect("spatter"), "spatter");
    let elastic = hash(&|img: &[u8], k, sev| {
        let p = Corruption::ElasticTransform.params(sev).unwrap();
        let au: [f64; 6] = std::array::from_fn(|t| frac((100 + 7 * k + t) as f64));
        let dxu: Vec<f64> = (0..1024)
            .map(|e| frac((20000 + 1024 * k + e) as f64))
            .collect();
        let dyu: Vec<f64> = (0..1024)
            .map(|e| frac((50000 + 1024 * k + e) as f64))
            .collect();
        experiments::corrupt::kinds::elastic_with(img, 32, 32, &p, &au, &dxu, &dyu).unwrap()
    });
    assert_eq!(elastic, expect("elastic_transform"), "elastic_transform");
}

// ---------------------------------------------------------------------------------------------
// writers

#[test]
fn cifar_binary_writer_layout() {
    let (labels, imgs) = cifar(3);
    let nchw: Vec<u8> = imgs
        .iter()
        .flat_map(|hwc| (0..3).flat_map(move |c| (0..1024).map(move |i| hwc[i * 3 + c])))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("data_batch.bin");
    write_cifar_binary(&p, &labels, &nchw).unwrap();
    let b = std::fs::read(&p).unwrap();
    assert_eq!(b.len(), 3 * 3073);
    // Compare with the original file's records byte for byte.
    let orig = std::fs::read(cifar_path()).unwrap();
    assert_eq!(&b[..], &orig[..3 * 3073]);
    // And by hand: record 1 starts with its label, then R of pixel (0,0), ..., B of pixel (31,31).
    assert_eq!(b[3073], labels[1]);
    assert_eq!(b[3073 + 1], imgs[1][0]);
    assert_eq!(b[3073 + 1 + 1024], imgs[1][1]);
    assert_eq!(b[2 * 3073 - 1], imgs[1][3071]);
}

#[test]
fn corruption_grid_png() {
    let (_, imgs) = cifar(1);
    let (buf, w, h) = corruption_grid(&imgs[0], 32, 32, 0, 2).unwrap();
    assert_eq!((w, h), (6 * 64 + 7 * 2, 19 * 64 + 20 * 2));
    assert_eq!(buf.len(), w * h * 3);
    // The first column holds the clean image (top-left tile, pixel (0,0) upscaled ×2).
    assert_eq!(&buf[(2 * w + 2) * 3..(2 * w + 2) * 3 + 3], &imgs[0][..3]);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("grid.png");
    write_corruption_grid_png(&p, &imgs[0], 32, 32, 0, 2).unwrap();
    let dec = image::open(&p).unwrap().to_rgb8();
    assert_eq!((dec.width() as usize, dec.height() as usize), (w, h));
    assert_eq!(dec.into_raw(), buf);
    if let Ok(out) = std::env::var("EPSIM_CORRUPTION_GRID") {
        write_corruption_grid_png(std::path::Path::new(&out), &imgs[0], 32, 32, 0, 3).unwrap();
    }
}

/// Grayscale images (Fashion-MNIST's 28×28): every corruption runs at every severity and changes
/// the images (saturate excepted: a gray image has no saturation); per-pixel Gaussian noise keeps the per-channel standard deviation of its severity
/// (averaging three channels would shrink it by √3); a channel count other than 1 or 3 is refused.
#[test]
fn grayscale_images_are_corrupted_through_equal_channels() {
    let (h, w, n) = (28, 28, 3);
    let st = stream(8);
    let gray: Vec<u8> = (0..(n * h * w) as u64)
        .map(|i| (40.0 + 160.0 * st.uniform(i)) as u8)
        .collect();
    for &c in Corruption::all() {
        for sev in 1..=5 {
            let g = corrupt_batch_nchw(&gray, 1, h, w, c, sev, 5, 0)
                .unwrap_or_else(|e| panic!("{} s{sev}: {e}", c.name()));
            assert_eq!(g.len(), gray.len());
            if c == Corruption::Saturate {
                // A gray pixel has no saturation to scale.
                assert!(
                    max_diff(&g, &gray) <= 1,
                    "saturate s{sev} changed a gray image"
                );
            } else if sev == 5 {
                assert!(
                    mad(&g, &gray) > 0.5,
                    "{} s5 left the images as they were",
                    c.name()
                );
            }
        }
    }
    // Gaussian noise at severity 3 (σ = 0.08 of full scale in the reference table) on a flat
    // mid-gray image: the per-pixel spread stays σ·255 (≈ 20.4), not σ·255/√3 (≈ 11.8).
    let flat = vec![128u8; 64 * 64];
    let g = corrupt_batch_nchw(&flat, 1, 64, 64, Corruption::GaussianNoise, 3, 1, 0).unwrap();
    let m = g.iter().map(|&v| v as f64).sum::<f64>() / g.len() as f64;
    let sd = (g.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / g.len() as f64).sqrt();
    assert!((sd - 0.08 * 255.0).abs() < 1.5, "std {sd}");
    assert!(corrupt_batch_nchw(&flat, 2, 32, 32, Corruption::Contrast, 1, 0, 0).is_err());
    assert!(corrupt_batch_nchw(&flat[..100], 1, 28, 28, Corruption::Contrast, 1, 0, 0).is_err());
}

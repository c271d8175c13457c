//! The released CIFAR-10-C layout: the `cifar10c:DIR:CORRUPTION[:SEVERITY]` reader on fixtures the
//! test writes itself (its own `.npy` writer, not the library's), its errors, `epsim data info`,
//! and the round trip `epsim corrupt --format npy` → `cifar10c:` against the CIFAR binary output.

mod common;
use experiments::data::{DataError, DatasetSpec, load_eval_set};
use std::path::Path;
use std::process::Command;

/// An `.npy` file as NumPy's `np.save` writes it (version `major`.0, header padded to 64 bytes).
fn npy(descr: &str, shape: &[usize], data: &[u8], major: u8) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    let pre = if major == 1 { 10 } else { 12 };
    while (pre + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[major, 0]);
    if major == 1 {
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(data);
    out
}

const N: usize = 3; // images per severity
const H: usize = 4;
const W: usize = 5;

/// Pixel (row, y, x, channel) of the fixture.
fn px(row: usize, y: usize, x: usize, c: usize) -> u8 {
    ((row * 7 + y * 13 + x * 3 + c * 50) % 256) as u8
}

fn labels() -> Vec<i64> {
    (0..5 * N).map(|i| ((i * 3 + 1) % 10) as i64).collect()
}

fn images_nhwc(rows: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for r in 0..rows {
        for y in 0..H {
            for x in 0..W {
                for c in 0..3 {
                    v.push(px(r, y, x, c));
                }
            }
        }
    }
    v
}

/// A directory in the released layout: fog.npy (version 1 header), frost.npy (version 2),
/// labels.npy (int64, one per row).
fn fixture(dir: &Path) {
    let imgs = images_nhwc(5 * N);
    std::fs::write(dir.join("fog.npy"), npy("|u1", &[5 * N, H, W, 3], &imgs, 1)).unwrap();
    std::fs::write(
        dir.join("frost.npy"),
        npy("|u1", &[5 * N, H, W, 3], &imgs, 2),
    )
    .unwrap();
    let l: Vec<u8> = labels().iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("labels.npy"), npy("<i8", &[5 * N], &l, 1)).unwrap();
}

fn spec(s: &str) -> DatasetSpec {
    DatasetSpec::parse(s).unwrap()
}

fn load_err(s: &str) -> DataError {
    match spec(s).load() {
        Ok(d) => panic!("{s}: expected an error, loaded {} splits", d.len()),
        Err(e) => e,
    }
}

#[test]
fn one_severity_reads_its_rows_as_nchw_with_their_labels() {
    let t = tempfile::tempdir().unwrap();
    fixture(t.path());
    for name in ["fog", "frost"] {
        for sev in 1..=5usize {
            let ds = spec(&format!("cifar10c:{}:{name}:{sev}", t.path().display()))
                .load()
                .unwrap();
            assert_eq!(ds.len(), 1);
            let d = &ds[0];
            assert_eq!(d.name, "cifar10c");
            assert_eq!(d.split, format!("{name}:{sev}"));
            assert_eq!(d.shape, [N, 3, H, W]);
            assert_eq!(d.classes.len(), 10);
            let first = (sev - 1) * N;
            let want: Vec<u16> = labels()[first..first + N]
                .iter()
                .map(|&l| l as u16)
                .collect();
            assert_eq!(d.labels, want);
            for k in 0..N {
                let img = d.image(k);
                for c in 0..3 {
                    for y in 0..H {
                        for x in 0..W {
                            assert_eq!(img[c * H * W + y * W + x], px(first + k, y, x, c));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn without_severity_all_five_stacked_and_short_labels_repeat() {
    let t = tempfile::tempdir().unwrap();
    fixture(t.path());
    // labels.npy with only the N test labels (uint8): repeated for every severity.
    let l = [4u8, 0, 9];
    std::fs::write(t.path().join("labels.npy"), npy("|u1", &[N], &l, 1)).unwrap();
    let ds = spec(&format!("cifar10c:{}:fog", t.path().display()))
        .load()
        .unwrap();
    let d = &ds[0];
    assert_eq!(d.split, "fog");
    assert_eq!(d.shape, [5 * N, 3, H, W]);
    assert_eq!(d.labels, [4, 0, 9].repeat(5));
    assert_eq!(d.image(13)[2 * H * W + 3 * W + 4], px(13, 3, 4, 2));
    // the same through the generic loader the commands use
    let e =
        experiments::data::load_eval_set(&format!("cifar10c:{}:fog:2", t.path().display()), None)
            .unwrap();
    assert_eq!(e.len(), N);
    assert_eq!(e.image(0), d.image(N));
}

#[test]
fn spec_parsing_and_display() {
    let s = spec("cifar10c:/data/CIFAR-10-C:gaussian_noise:5");
    assert_eq!(s.corruption.as_deref(), Some("gaussian_noise"));
    assert_eq!(s.severity, Some(5));
    assert_eq!(s.to_string(), "cifar10c:/data/CIFAR-10-C:gaussian_noise:5");
    let s = spec("cifar100c:rel/dir");
    assert_eq!(s.kind.unwrap().name(), "cifar100c");
    assert_eq!((s.corruption, s.severity), (None, None));
    for (bad, want) in [
        ("cifar10c:/d:fog:6", "bad severity '6'"),
        ("cifar10c:/d:fog:0", "bad severity '0'"),
        ("cifar10c:/d:fog:x", "bad severity 'x'"),
        ("cifar10c:/d:fog:1:2", "DIR must not contain ':'"),
        ("cifar10c:", "needs a directory"),
        ("cifar10c:/d::1", "empty corruption"),
    ] {
        let e = DatasetSpec::parse(bad).unwrap_err();
        assert!(e.contains(want), "{bad}: {e}");
    }
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    fixture(dir);
    let ds = dir.display();

    // no corruption: the files found
    let e = load_err(&format!("cifar10c:{ds}"));
    assert_eq!(e.file, dir);
    assert!(e.to_string().contains("fog, frost"), "{e}");
    // unknown corruption: the missing file and the ones found
    let e = load_err(&format!("cifar10c:{ds}:snow:1"));
    assert_eq!(e.file, dir.join("snow.npy"));
    let m = e.to_string();
    assert!(
        m.contains("unknown corruption 'snow'") && m.contains("fog, frost"),
        "{m}"
    );
    // wrong dtype
    let f = npy("<f4", &[5 * N, H, W, 3], &vec![0; 5 * N * H * W * 3 * 4], 1);
    std::fs::write(dir.join("frost.npy"), f).unwrap();
    let e = load_err(&format!("cifar10c:{ds}:frost:1"));
    assert_eq!(e.file, dir.join("frost.npy"));
    assert!(e.to_string().contains("dtype <f4 is not uint8"), "{e}");
    // wrong shape: not five equal severities, and not 3 channels
    let f = npy("|u1", &[16, H, W, 3], &vec![0; 16 * H * W * 3], 1);
    std::fs::write(dir.join("frost.npy"), f).unwrap();
    let e = load_err(&format!("cifar10c:{ds}:frost"));
    assert!(e.to_string().contains("shape (16, 4, 5, 3)"), "{e}");
    let f = npy("|u1", &[5 * N, H, W], &vec![0; 5 * N * H * W], 1);
    std::fs::write(dir.join("frost.npy"), f).unwrap();
    let e = load_err(&format!("cifar10c:{ds}:frost"));
    assert!(
        e.to_string()
            .contains("shape (15, 4, 5) is not (5·N, H, W, 3)"),
        "{e}"
    );
    // truncated data
    let mut f = npy("|u1", &[5 * N, H, W, 3], &images_nhwc(5 * N), 1);
    f.truncate(f.len() - 7);
    std::fs::write(dir.join("frost.npy"), f).unwrap();
    let e = load_err(&format!("cifar10c:{ds}:frost:5"));
    assert_eq!(e.file, dir.join("frost.npy"));
    assert!(e.to_string().contains("truncated"), "{e}");
    // not an npy file at all
    std::fs::write(dir.join("frost.npy"), b"P6 not numpy").unwrap();
    let e = load_err(&format!("cifar10c:{ds}:frost:5"));
    assert!(e.to_string().contains("not an .npy file"), "{e}");
    // labels: wrong count, out of range, float, missing
    let l: Vec<u8> = [1i64; 7].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("labels.npy"), npy("<i8", &[7], &l, 1)).unwrap();
    let e = load_err(&format!("cifar10c:{ds}:fog:1"));
    assert_eq!(e.file, dir.join("labels.npy"));
    assert!(e.to_string().contains("holds 7 labels"), "{e}");
    let l: Vec<u8> = (0..15i64)
        .map(|i| i * 5)
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.join("labels.npy"), npy("<i8", &[15], &l, 1)).unwrap();
    let e = load_err(&format!("cifar10c:{ds}:fog:1"));
    let m = e.to_string();
    assert!(
        m.contains("label 10 at index 2 is outside 0..10") && m.contains("cifar100c"),
        "{m}"
    );
    // ... which CIFAR-100-C accepts
    let d = spec(&format!("cifar100c:{ds}:fog:1")).load().unwrap();
    assert_eq!(d[0].labels, vec![0, 5, 10]);
    std::fs::write(dir.join("labels.npy"), npy("<f8", &[15], &[0; 120], 1)).unwrap();
    let e = load_err(&format!("cifar10c:{ds}:fog:1"));
    assert!(
        e.to_string()
            .contains("dtype <f8 is not a little-endian integer"),
        "{e}"
    );
    std::fs::remove_file(dir.join("labels.npy")).unwrap();
    let e = load_err(&format!("cifar10c:{ds}:fog:1"));
    assert_eq!(e.file, dir.join("labels.npy"));
    assert!(e.to_string().contains("missing"), "{e}");
}

fn epsim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_epsim"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn stdout_ok(args: &[&str]) -> String {
    let o = epsim(args);
    assert!(
        o.status.success(),
        "epsim {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn data_info_summarizes_the_directory_and_a_selection() {
    let t = tempfile::tempdir().unwrap();
    fixture(t.path());
    let ds = t.path().display().to_string();
    let out = stdout_ok(&["data", "info", &format!("cifar10c:{ds}")]);
    assert!(out.contains("2 corruptions x 5 severities"), "{out}");
    assert!(out.contains("fog    (15, 4, 5, 3)  5 x 3 images"), "{out}");
    assert!(
        out.contains("labels:   15 in labels.npy, 10 classes"),
        "{out}"
    );
    // detected from the directory alone
    let out2 = stdout_ok(&["data", "info", &ds]);
    assert_eq!(out, out2);
    let out = stdout_ok(&["data", "info", &format!("cifar10c:{ds}:frost:2")]);
    assert!(
        out.contains("[frost:2]") && out.contains("images:   3"),
        "{out}"
    );
    let o = epsim(&["data", "info", &format!("cifar10c:{ds}:snow:2")]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("snow.npy") && err.contains("fog, frost"),
        "{err}"
    );
}

#[test]
fn corrupt_npy_output_reads_back_as_the_binary_output() {
    // 7 synthetic CIFAR-10 records; both formats from the same seed must hold the same images
    // and labels, so any evaluation of them gives the same accuracy.
    let t = tempfile::tempdir().unwrap();
    let rec: Vec<u8> = (0..7)
        .flat_map(|r| common::cifar10_record((r * 3 % 10) as u8, r))
        .collect();
    let src = common::write(t.path(), "test_batch.bin", &rec);
    let data = format!("cifar10:{}", src.display());
    let (npy_dir, bin_dir) = (t.path().join("npy"), t.path().join("bin"));
    let names = "fog,gaussian_noise,jpeg_compression,pixelate";
    for (fmt, dir) in [("npy", &npy_dir), ("binary", &bin_dir)] {
        stdout_ok(&[
            "--seed",
            "5",
            "corrupt",
            "--data",
            &data,
            "--corruption",
            names,
            "--format",
            fmt,
            "--out",
            &dir.display().to_string(),
        ]);
    }
    let mut files: Vec<String> = std::fs::read_dir(&npy_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "fog.npy",
            "gaussian_noise.npy",
            "jpeg_compression.npy",
            "labels.npy",
            "pixelate.npy"
        ]
    );
    // the released layout: (5·7, 32, 32, 3) uint8, and 35 int64 labels
    let head = std::fs::read(npy_dir.join("fog.npy")).unwrap();
    let text = String::from_utf8_lossy(&head[10..128]);
    assert!(
        text.contains("'descr': '|u1'") && text.contains("'shape': (35, 32, 32, 3)"),
        "{text}"
    );
    assert_eq!(head.len(), 128 + 35 * 3072);
    let lab = std::fs::read(npy_dir.join("labels.npy")).unwrap();
    assert!(
        String::from_utf8_lossy(&lab[..128])
            .contains("'descr': '<i8', 'fortran_order': False, 'shape': (35,)")
    );
    let mut all_images = Vec::new();
    for c in names.split(',') {
        for sev in 1..=5 {
            let a =
                load_eval_set(&format!("cifar10c:{}:{c}:{sev}", npy_dir.display()), None).unwrap();
            let b = load_eval_set(
                &format!(
                    "cifar10:{}",
                    bin_dir.join(format!("{c}_s{sev}.bin")).display()
                ),
                None,
            )
            .unwrap();
            assert_eq!(a.shape, b.shape, "{c} s{sev}");
            assert_eq!(a.labels, b.labels, "{c} s{sev}");
            assert!(a.images == b.images, "{c} s{sev}: images differ");
            all_images.extend_from_slice(&a.images);
        }
        // without a severity: the five stacked in order
        let all = load_eval_set(&format!("cifar10c:{}:{c}", npy_dir.display()), None).unwrap();
        assert_eq!(all.len(), 35);
        assert!(all.images[..] == all_images[all_images.len() - 35 * 3072..]);
    }
    // only all five severities make the released layout
    let o = epsim(&[
        "corrupt",
        "--data",
        &data,
        "--corruption",
        "fog",
        "--severity",
        "2",
        "--format",
        "npy",
        "--out",
        &npy_dir.display().to_string(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("all five severities"));
}

//! Chip export round trip: export → read back → the same weights (from the conductances) and the
//! same realized dynamics; bad exports are errors naming the file and path.

use devices::Preset;
use ep::compile::{CompileOptions, compile};
use ep::export::Manifest;
use ep::substrate::Realized;
use ep::{ConvLayer, EpNet, Loss, ModelSpec, Pool};
use experiments::export::{read_export, write_export as export};
use sim::netlist::{Loaded, Netlist, Origin, TileSize};
use sim::{Act, Cpu, Stream, Tensor};

fn spec() -> ModelSpec {
    ModelSpec {
        input: [2, 8, 8],
        conv: vec![ConvLayer {
            channels: 5,
            kernel: 3,
            stride: 1,
            padding: 1,
            pool: Pool::Max,
        }],
        fc: vec![12, 4],
        act: Act::MyHardSig,
        softmax: true,
        loss: Loss::CrossEntropy,
        t1: 12,
        t2: 4,
        input_norm: None,
    }
}

fn compiled(net: &EpNet<Cpu>, preset: &str) -> Loaded {
    let (w, b) = net.to_host(&Cpu).unwrap();
    let nl = compile(
        &net.spec,
        &w,
        &b,
        &Preset::builtin(preset).unwrap(),
        &CompileOptions {
            tile: TileSize { rows: 16, cols: 3 },
            name: "t".into(),
        },
    )
    .unwrap();
    Netlist::from_json(&nl.to_json(), Origin::memory()).unwrap()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let s = b.iter().fold(0f64, |m, v| m.max((*v as f64).abs()));
    a.iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()))
        / s
}

#[test]
fn round_trip_ideal_and_pcm() {
    let net = EpNet::init(&Cpu, spec(), &Stream::new(1, "init"), None).unwrap();
    for preset in ["ideal", "pcm"] {
        let dir = tempfile::tempdir().unwrap();
        let l = compiled(&net, preset);
        let m = export(&l, dir.path()).unwrap();
        // conv [5, 2·3·3 = 18] on 16x3 arrays: 2 row blocks x 2 column blocks.
        assert_eq!(m.layers[0].tiles.len(), 4);
        assert_eq!(m.layers[0].tiles[1].rows, [0, 16]);
        assert_eq!(m.layers[0].tiles[1].cols, [3, 5]);
        let t = &m.layers[0].tiles[3];
        let g: ndarray::ArrayD<f32> = ndarray_npy::read_npy(dir.path().join(&t.g_pos)).unwrap();
        assert_eq!(g.shape(), &[2, 2]);
        assert!(
            g.iter()
                .all(|v| *v >= 0.0 && *v as f64 <= t.g_range_us[1] + 1e-4)
        );
        // Manifest is valid JSON of the documented type.
        let text = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
        let back: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(back.layers.len(), m.layers.len());
        for (a, b) in back.layers.iter().zip(&m.layers) {
            assert_eq!(a.tiles.len(), b.tiles.len());
            for (x, y) in a.tiles.iter().zip(&b.tiles) {
                assert_eq!(
                    (x.rows, x.cols, &x.g_pos, x.levels),
                    (y.rows, y.cols, &y.g_pos, y.levels)
                );
                assert!((x.scale_us[0] - y.scale_us[0]).abs() < 1e-9 * y.scale_us[0]);
            }
        }
        let r = read_export(dir.path()).unwrap();
        for (i, (a, b)) in r.weights.iter().zip(&l.weights).enumerate() {
            let e = max_rel(a, b);
            assert!(e < 1e-6, "{preset} array {i}: {e}");
        }
        assert_eq!(r.biases, l.biases);
        assert_eq!(r.netlist.devices, l.netlist.devices);
        assert_eq!(r.netlist.converters, l.netlist.converters);
    }
    // The read-back netlist realizes the same dynamics.
    let dir = tempfile::tempdir().unwrap();
    export(&compiled(&net, "ideal"), dir.path()).unwrap();
    let r = Realized::new(&Cpu, &read_export(dir.path()).unwrap(), 0).unwrap();
    let x = Tensor::from_shape_fn(ndarray::IxDyn(&[2, 2, 8, 8]), |d| {
        ((d[1] * 64 + d[2] * 8 + d[3] + d[0]) % 11) as f32 / 11.0
    });
    let a = r.free_phase(&Cpu, &x, 12, 0).unwrap();
    let b = net.free_phase(&Cpu, &x, 12).unwrap();
    for (p, q) in a.layers.iter().zip(&b.layers) {
        assert!(max_rel(p, q) < 1e-5);
    }
}

#[test]
fn levelled_device_exports_level_indices() {
    let net = EpNet::init(&Cpu, spec(), &Stream::new(2, "init"), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let l = compiled(&net, "rram");
    let m = export(&l, dir.path()).unwrap();
    let t = &m.layers[1].tiles[0];
    assert_eq!(t.levels, 16);
    let lvl: ndarray::ArrayD<u32> =
        ndarray_npy::read_npy(dir.path().join(t.lvl_pos.as_ref().unwrap())).unwrap();
    let g: ndarray::ArrayD<f32> = ndarray_npy::read_npy(dir.path().join(&t.g_pos)).unwrap();
    let [g_min, g_max] = t.g_range_us;
    let step = (g_max - g_min) / 15.0;
    for (k, v) in lvl.iter().zip(g.iter()) {
        assert!(*k < 16);
        assert!((g_min + *k as f64 * step - *v as f64).abs() < 1e-3);
    }
    // Quantized targets: weights come back within half a level of the originals.
    let r = read_export(dir.path()).unwrap();
    for (i, (a, b)) in r.weights.iter().zip(&l.weights).enumerate() {
        let e = max_rel(a, b);
        assert!(e > 0.0 && e < 1.0 / 15.0 + 1e-6, "array {i}: {e}");
    }
}

#[test]
fn broken_exports_name_file_and_path() {
    let net = EpNet::init(&Cpu, spec(), &Stream::new(3, "init"), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    export(&compiled(&net, "ideal"), dir.path()).unwrap();
    let mp = dir.path().join("manifest.json");
    let text = std::fs::read_to_string(&mp).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["layers"][1]["tiles"].as_array_mut().unwrap().pop();
    std::fs::write(&mp, v.to_string()).unwrap();
    let e = read_export(dir.path()).unwrap_err();
    assert!(e.file.ends_with("manifest.json"), "{e}");
    assert_eq!(e.path, "$.layers[1].tiles");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["layers"][0]["tiles"][2]["g_pos"] = serde_json::json!("missing.npy");
    std::fs::write(&mp, v.to_string()).unwrap();
    let e = read_export(dir.path()).unwrap_err();
    assert_eq!(e.path, "$.layers[0].tiles[2].g_pos");
}

/// A re-export replaces the previous export whole (no stale tile file survives it); a folder
/// holding other files is refused and left untouched.
#[test]
fn re_export_leaves_no_stale_files_and_foreign_folders_are_refused() {
    let net = EpNet::init(&Cpu, spec(), &Stream::new(1, "init"), None).unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("chip");
    export(&compiled(&net, "pcm"), &dir).unwrap();
    let first: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    // A file of an earlier, larger export (say a tile that no longer exists).
    std::fs::write(dir.join("layer9_tile99_g_pos.npy"), b"stale").unwrap();
    export(&compiled(&net, "ideal"), &dir).unwrap();
    let mut second: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(!dir.join("layer9_tile99_g_pos.npy").exists());
    let mut first = first;
    first.sort();
    second.sort();
    assert_eq!(first, second, "the same files, and only them");
    read_export(&dir).unwrap();
    // Nothing is left beside it either.
    let beside: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("chip")]);

    let other = root.path().join("notes");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("todo.txt"), b"keep me").unwrap();
    let e = export(&compiled(&net, "ideal"), &other).unwrap_err();
    assert!(format!("{e:#}").contains("not an epsim export"), "{e:#}");
    assert_eq!(std::fs::read(other.join("todo.txt")).unwrap(), b"keep me");
}

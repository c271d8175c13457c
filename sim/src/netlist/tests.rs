//! Unit tests of the netlist IR: parsing, validation errors with their JSON paths, tiling.
use super::*;

/// A small valid netlist: input 1x4x4, conv 2 channels k3 p1 + max pool -> [2,2,2], dense 3, readout 2.
fn sample() -> serde_json::Value {
    let inline = |shape: &[usize]| {
        let n: usize = shape.iter().product();
        serde_json::json!({"shape": shape, "data": (0..n).map(|i| (i as f32) * 0.01).collect::<Vec<_>>()})
    };
    serde_json::json!({
        "format_version": 1,
        "name": "t",
        "input": {"name": "x", "shape": [1, 4, 4]},
        "populations": [
            {"name": "h1", "shape": [2, 2, 2], "neuron": {"act": "my_hard_sig"}},
            {"name": "h2", "shape": [3], "neuron": {"act": "my_hard_sig", "noise_std": 0.01}}
        ],
        "arrays": [
            {"name": "a0", "from": "x", "to": "h1", "geometry": {"kind": "conv", "kernel": 3, "padding": 1},
             "pool": "p0", "weight": inline(&[2, 1, 3, 3]), "bias": inline(&[2]), "device": "d",
             "tile": {"rows": 4, "cols": 1},
             "forward": {"dac": "dac", "adc": "adc"}},
            {"name": "a1", "from": "h1", "to": "h2", "geometry": {"kind": "dense"},
             "weight": inline(&[3, 8]), "device": "d"},
            {"name": "r", "from": "h2", "to": "logits", "geometry": {"kind": "dense"},
             "weight": inline(&[2, 3]), "device": "d"}
        ],
        "converters": [
            {"name": "dac", "kind": "dac", "bits": 7, "bound": 1.0},
            {"name": "adc", "kind": "adc", "bits": 9, "bound": 12.0, "noise_std": 0.06}
        ],
        "pools": [{"name": "p0", "kind": "max", "kernel": 2, "stride": 2}],
        "devices": {"d": {"preset": "ideal"}},
        "dynamics": {"t1": 5, "t2": 2, "loss": "cross_entropy", "readout": "r"}
    })
}

fn check(v: &serde_json::Value) -> NResult<Loaded> {
    Netlist::from_json(&v.to_string(), Origin::memory())
}

fn err(v: &serde_json::Value) -> NetlistError {
    check(v).expect_err("must be rejected")
}

#[test]
fn sample_is_valid_and_round_trips() {
    let l = check(&sample()).unwrap();
    assert_eq!(l.weights[0].shape(), &[2, 1, 3, 3]);
    assert_eq!(l.biases[1].shape(), &[3]);
    assert_eq!(l.weights[2].shape(), &[2, 3]);
    assert_eq!(l.netlist.n_dynamic_arrays(), 2);
    let again = check(&serde_json::from_str(&l.netlist.to_json()).unwrap()).unwrap();
    assert_eq!(again.netlist, l.netlist);
    assert!(l.netlist.summary().contains("array a0"));
}

#[test]
fn unknown_part_names_the_path() {
    let mut v = sample();
    v["widgets"] = serde_json::json!([]);
    let e = err(&v);
    assert_eq!(e.path, "$.widgets");
    assert!(e.msg.contains("unknown part"), "{e}");
    let mut v = sample();
    v["arrays"][1]["colour"] = serde_json::json!("red");
    let e = err(&v);
    assert_eq!(e.path, "$.arrays[1]");
    assert!(e.msg.contains("colour"), "{e}");
    let mut v = sample();
    v["pools"][0]["kind"] = serde_json::json!("median");
    assert_eq!(err(&v).path, "$.pools[0]");
}

#[test]
fn shape_mismatch_names_the_tensor() {
    let mut v = sample();
    v["arrays"][1]["weight"]["shape"] = serde_json::json!([4, 6]);
    let e = err(&v);
    assert_eq!(e.path, "$.arrays[1].weight");
    assert!(e.msg.contains("shape mismatch"), "{e}");
    let mut v = sample();
    v["populations"][0]["shape"] = serde_json::json!([2, 4, 4]);
    let e = err(&v);
    assert_eq!(e.path, "$.arrays[0].to");
    assert!(e.msg.contains("shape mismatch"), "{e}");
    let mut v = sample();
    v["arrays"][0]["weight"]["data"] = serde_json::json!([0.0, 1.0]);
    assert_eq!(err(&v).path, "$.arrays[0].weight.data");
}

#[test]
fn dangling_nets_and_references() {
    let mut v = sample();
    v["arrays"][1]["from"] = serde_json::json!("h9");
    let e = err(&v);
    assert_eq!(e.path, "$.arrays[1].from");
    assert!(e.msg.contains("dangling"), "{e}");
    let mut v = sample();
    v["arrays"][0]["forward"]["adc"] = serde_json::json!("nope");
    assert_eq!(err(&v).path, "$.arrays[0].forward.adc");
    let mut v = sample();
    v["arrays"][0]["forward"]["adc"] = serde_json::json!("dac");
    assert!(err(&v).msg.contains("adc is needed"));
    let mut v = sample();
    v["arrays"][2]["device"] = serde_json::json!("zz");
    assert_eq!(err(&v).path, "$.arrays[2].device");
    let mut v = sample();
    v["dynamics"]["readout"] = serde_json::json!("a9");
    assert_eq!(err(&v).path, "$.dynamics.readout");
    let mut v = sample();
    v["arrays"][0]["pool"] = serde_json::json!("p9");
    assert_eq!(err(&v).path, "$.arrays[0].pool");
}

#[test]
fn out_of_range_parameters() {
    for (ptr, val, path) in [
        (
            "/converters/0/bits",
            serde_json::json!(1),
            "$.converters[0].bits",
        ),
        (
            "/converters/1/bound",
            serde_json::json!(-2.0),
            "$.converters[1].bound",
        ),
        (
            "/converters/1/noise_std",
            serde_json::json!(-0.1),
            "$.converters[1].noise_std",
        ),
        (
            "/populations/1/neuron/noise_std",
            serde_json::json!(-1.0),
            "$.populations[1].neuron.noise_std",
        ),
        ("/pools/0/stride", serde_json::json!(0), "$.pools[0].stride"),
        (
            "/arrays/0/tile/rows",
            serde_json::json!(0),
            "$.arrays[0].tile",
        ),
        ("/dynamics/t1", serde_json::json!(0), "$.dynamics.t1"),
        ("/format_version", serde_json::json!(7), "$.format_version"),
    ] {
        let mut v = sample();
        *v.pointer_mut(ptr).unwrap() = val;
        let e = err(&v);
        assert_eq!(e.path, path, "{ptr}: {e}");
    }
}

#[test]
fn converter_management_options() {
    let mut v = sample();
    v["converters"][0]["noise_management"] = serde_json::json!("abs_max");
    v["converters"][0]["nm_thres"] = serde_json::json!(0.0);
    v["converters"][1]["bound_management"] = serde_json::json!("iterative");
    v["converters"][1]["max_bm_factor"] = serde_json::json!(1000);
    v["converters"][1]["max_bm_res"] = serde_json::json!(0.25);
    let l = check(&v).unwrap();
    assert_eq!(
        l.netlist.converters[0].noise_management,
        Some(NoiseManagement::AbsMax)
    );
    assert_eq!(
        l.netlist.converters[1].bound_management,
        Some(BoundManagement::Iterative)
    );
    // Absent means none (older netlists read as before).
    let plain = check(&sample()).unwrap();
    assert_eq!(plain.netlist.converters[1].bound_management, None);
    for (conv, key, val, path) in [
        (
            0,
            "bound_management",
            serde_json::json!("iterative"),
            "$.converters[0].bound_management",
        ),
        (
            1,
            "noise_management",
            serde_json::json!("abs_max"),
            "$.converters[1].noise_management",
        ),
        (
            1,
            "max_bm_factor",
            serde_json::json!(0),
            "$.converters[1].max_bm_factor",
        ),
        (
            1,
            "max_bm_res",
            serde_json::json!(-1.0),
            "$.converters[1].max_bm_res",
        ),
        (
            0,
            "nm_thres",
            serde_json::json!(-1.0),
            "$.converters[0].nm_thres",
        ),
        (
            0,
            "noise_management",
            serde_json::json!("loud"),
            "$.converters[0]",
        ),
    ] {
        let mut b = v.clone();
        b["converters"][conv][key] = val;
        let e = err(&b);
        assert_eq!(e.path, path, "{key}: {e}");
    }
}

#[test]
fn nan_weights_and_bad_json_are_errors() {
    let mut v = sample();
    v["arrays"][1]["weight"]["data"][5] = serde_json::Value::Null;
    let e = err(&v);
    assert_eq!(e.path, "$.arrays[1].weight.data[5]");
    let e = Netlist::from_json("{\"format_version\": 1,", Origin::memory()).unwrap_err();
    assert_eq!(e.path, "$");
    assert!(e.to_string().starts_with("<memory>: $:"), "{e}");
}

#[test]
fn npy_weights_are_loaded_and_checked() {
    use ndarray_npy::WriteNpyExt;
    let dir = std::env::temp_dir().join(format!("epsim-netlist-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut w = crate::tensor(&[3, 8], (0..24).map(|i| i as f32).collect()).unwrap();
    w.write_npy(std::fs::File::create(dir.join("w.npy")).unwrap())
        .unwrap();
    let mut v = sample();
    v["arrays"][1]["weight"] = serde_json::json!({"npy": "w.npy"});
    let path = dir.join("net.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let l = Netlist::read(&path).unwrap();
    assert_eq!(l.weights[1], w);
    w[[1, 2]] = f32::NAN;
    w.write_npy(std::fs::File::create(dir.join("w.npy")).unwrap())
        .unwrap();
    let e = Netlist::read(&path).unwrap_err();
    assert_eq!(e.path, "$.arrays[1].weight");
    assert!(e.file.ends_with("net.json"), "{e}");
    assert!(e.msg.contains("non-finite"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn tiling_covers_the_matrix_once() {
    // 5 outputs x 7 inputs on 3x2 arrays: row blocks [0,3) [3,6) [6,7); column blocks [0,2) [2,4) [4,5).
    let t = tiles(5, 7, TileSize { rows: 3, cols: 2 });
    assert_eq!(t.len(), 9);
    assert_eq!(t[0].rows, (0, 3));
    assert_eq!(t[0].cols, (0, 2));
    assert_eq!(t[2].cols, (4, 5));
    assert_eq!(t[8].rows, (6, 7));
    assert_eq!(t[8].cols, (4, 5));
    let mut hit = [0; 35];
    for tile in &t {
        for o in tile.cols.0..tile.cols.1 {
            for i in tile.rows.0..tile.rows.1 {
                hit[o * 7 + i] += 1;
            }
        }
    }
    assert!(hit.iter().all(|&h| h == 1));
}

#[test]
fn documented_example_is_valid() {
    use ndarray_npy::WriteNpyExt;
    // docs/netlist-example.json refers to syn1.weight.npy next to it: supply one in a temp dir.
    let dir = std::env::temp_dir().join(format!("epsim-netlist-doc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = include_str!("../../../docs/netlist-example.json");
    std::fs::write(dir.join("net.json"), text).unwrap();
    let w = crate::tensor(&[3, 8], vec![0.1; 24]).unwrap();
    w.write_npy(std::fs::File::create(dir.join("syn1.weight.npy")).unwrap())
        .unwrap();
    let l = Netlist::read(&dir.join("net.json")).unwrap();
    assert_eq!(l.weights[1], w);
    assert_eq!(l.biases[1].shape(), &[3]);
    assert_eq!(l.netlist.devices.len(), 2);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn spiking_neurons_parse_validate_and_round_trip() {
    // Old netlists (no `kind`) are analog and serialize without the spiking fields.
    let l = check(&sample()).unwrap();
    assert_eq!(l.netlist.populations[1].neuron.kind, NeuronKind::Analog);
    assert!(!l.netlist.to_json().contains("\"kind\": \"analog\""));
    assert!(!l.netlist.to_json().contains("window"));
    let mut v = sample();
    v["populations"][1]["neuron"] = serde_json::json!({
        "act": "my_hard_sig", "kind": "spiking", "window": 16, "threshold": 0.5,
        "leak": 0.1, "phase": "half", "noise_std": 0.01
    });
    v["populations"][0]["neuron"]["kind"] = serde_json::json!("spiking");
    let l = check(&v).unwrap();
    let m = &l.netlist.populations[1].neuron;
    assert_eq!(m.kind, NeuronKind::Spiking);
    assert_eq!(
        (m.window, m.threshold, m.leak, m.phase),
        (Some(16), Some(0.5), Some(0.1), Some(SpikePhase::Half))
    );
    // Absent spiking parameters stay absent (defaults applied by the realization).
    assert_eq!(l.netlist.populations[0].neuron.window, None);
    let again = check(&serde_json::from_str(&l.netlist.to_json()).unwrap()).unwrap();
    assert_eq!(again.netlist, l.netlist);
}

#[test]
fn spiking_parameter_errors_name_the_field() {
    let base = || {
        let mut v = sample();
        v["populations"][1]["neuron"] =
            serde_json::json!({"act": "my_hard_sig", "kind": "spiking", "window": 8});
        v
    };
    assert!(check(&base()).is_ok());
    for (key, val, path, what) in [
        ("window", serde_json::json!(0), "window", "out-of-range"),
        ("window", serde_json::json!(-3), "window", "-3"),
        ("window", serde_json::json!(2.5), "window", "2.5"),
        (
            "window",
            serde_json::json!((1u64 << 20) + 1),
            "window",
            "out-of-range",
        ),
        ("threshold", serde_json::json!(0.0), "threshold", "> 0"),
        ("threshold", serde_json::json!("high"), "threshold", "high"),
        ("leak", serde_json::json!(1.0), "leak", "[0, 1)"),
        ("leak", serde_json::json!(-0.1), "leak", "[0, 1)"),
        (
            "phase",
            serde_json::json!("sometimes"),
            "phase",
            "sometimes",
        ),
        ("kind", serde_json::json!("digital"), "kind", "digital"),
        ("act", serde_json::json!("identity"), "act", "Identity"),
        ("act", serde_json::json!("my_sigmoid"), "act", "MySigmoid"),
        ("refractory", serde_json::json!(2), "", "refractory"),
    ] {
        let mut v = base();
        v["populations"][1]["neuron"][key] = val.clone();
        let e = err(&v);
        let want = if path.is_empty() {
            "$.populations[1].neuron".to_string()
        } else {
            format!("$.populations[1].neuron.{path}")
        };
        assert_eq!(e.path, want, "{key} = {val}: {e}");
        assert!(e.msg.contains(what), "{key} = {val}: {e}");
    }
    // Spiking parameters on an analog neuron are rejected at the parameter.
    for key in ["window", "threshold", "leak", "phase"] {
        let mut v = sample();
        v["populations"][0]["neuron"][key] = if key == "phase" {
            serde_json::json!("zero")
        } else {
            serde_json::json!(0.5)
        };
        if key == "window" {
            v["populations"][0]["neuron"][key] = serde_json::json!(8);
        }
        let e = err(&v);
        assert_eq!(e.path, format!("$.populations[0].neuron.{key}"), "{e}");
        assert!(e.msg.contains("spiking"), "{e}");
    }
}

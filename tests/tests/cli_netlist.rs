//! The hardware commands end to end: compile, netlist check (valid and broken files), eval on
//! netlist substrates with --set, export + reader.

use std::process::ExitCode;

use epsim_tests::{epsim, s, tiny_model_and_data};

#[test]
fn compile_check_eval_export() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ckpt, data) = tiny_model_and_data(d, true, 16);
    let net_json = d.join("net.json");
    assert_eq!(
        epsim(&[
            "compile",
            "--model",
            s(&ckpt),
            "--device",
            "pcm",
            "--set",
            "read_noise_scale=0.5,t_inference=3600",
            "--tile",
            "16x4",
            "-o",
            s(&net_json)
        ]),
        ExitCode::SUCCESS
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&net_json).unwrap()).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["devices"]["dev"]["cell"]["read_noise_scale"], 0.5);
    assert_eq!(v["devices"]["dev"]["inference"]["t_inference_s"], 3600.0);
    assert_eq!(v["arrays"][0]["tile"]["rows"], 16);
    assert_eq!(
        epsim(&["netlist", "check", s(&net_json), "--realize"]),
        ExitCode::SUCCESS
    );
    // Broken files are errors (exit code 1), not panics.
    for (ptr, val) in [
        ("/gadgets", serde_json::json!(1)),
        ("/arrays/1/from", serde_json::json!("h7")),
        ("/converters/0/bits", serde_json::json!(1)),
        ("/arrays/0/weight/shape", serde_json::json!([4, 3, 3, 2])),
        (
            "/devices/dev/cell/read_noise_scale",
            serde_json::json!(-1.0),
        ),
        ("/dynamics/readout", serde_json::json!("h1")),
        ("/arrays/0/weight/data/5", serde_json::Value::Null),
    ] {
        let mut b = v.clone();
        match b.pointer_mut(ptr) {
            Some(slot) => *slot = val,
            None => {
                b.as_object_mut().unwrap().insert(ptr[1..].into(), val);
            }
        }
        let bad = d.join("bad.json");
        std::fs::write(&bad, b.to_string()).unwrap();
        assert_eq!(
            epsim(&["netlist", "check", s(&bad)]),
            ExitCode::FAILURE,
            "{ptr}"
        );
    }
    std::fs::write(d.join("nan.json"), "{\"format_version\": 1, ").unwrap();
    assert_eq!(
        epsim(&["netlist", "check", s(&d.join("nan.json"))]),
        ExitCode::FAILURE
    );
    for sub in ["netlist:ideal", "netlist:rram"] {
        assert_eq!(
            epsim(&[
                "eval",
                "--model",
                s(&ckpt),
                "--data",
                &data,
                "--substrate",
                sub,
                "--batch-size",
                "8"
            ]),
            ExitCode::SUCCESS,
            "{sub}"
        );
    }
    assert_eq!(
        epsim(&[
            "eval",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--substrate",
            "netlist:pcm",
            "--set",
            "read_noise_scale=0.5,t_inference=3600"
        ]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        epsim(&[
            "eval",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--substrate",
            &format!("netlist:{}", net_json.display())
        ]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        epsim(&[
            "eval",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--substrate",
            "netlist:pcm",
            "--set",
            "no_such_knob=1"
        ]),
        ExitCode::FAILURE
    );
    let out = d.join("export");
    assert_eq!(
        epsim(&[
            "export",
            "--model",
            s(&ckpt),
            "--device",
            "rram",
            "--tile",
            "16x4",
            "--out",
            s(&out)
        ]),
        ExitCode::SUCCESS
    );
    assert!(out.join("manifest.json").exists());
    assert!(out.join("syn0.tile0.g_pos.npy").exists());
    assert!(out.join("syn0.tile0.lvl_neg.npy").exists());
    let back = experiments::export::read_export(&out).unwrap();
    assert_eq!(back.netlist.arrays.len(), 2);
    assert_eq!(
        epsim(&[
            "export",
            "--netlist",
            s(&net_json),
            "--out",
            s(&d.join("e2"))
        ]),
        ExitCode::SUCCESS
    );
}

/// Spiking neurons from the command line: `--set neuron.kind=spiking,neuron.window=N` on compile
/// and eval, `netlist check` of a spiking netlist and of broken spiking parameters.
#[test]
fn spiking_neurons_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ckpt, data) = tiny_model_and_data(d, true, 16);
    let net_json = d.join("net.json");
    assert_eq!(
        epsim(&[
            "compile",
            "--model",
            s(&ckpt),
            "--device",
            "ideal",
            "--set",
            "neuron.kind=spiking,neuron.window=8,neuron.phase=half",
            "-o",
            s(&net_json)
        ]),
        ExitCode::SUCCESS
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&net_json).unwrap()).unwrap();
    for p in v["populations"].as_array().unwrap() {
        assert_eq!(p["neuron"]["kind"], "spiking");
        assert_eq!(p["neuron"]["window"], 8);
        assert_eq!(p["neuron"]["phase"], "half");
    }
    assert_eq!(
        epsim(&["netlist", "check", s(&net_json), "--realize"]),
        ExitCode::SUCCESS
    );
    for (ptr, val, path) in [
        (
            "/populations/0/neuron/window",
            serde_json::json!(0),
            "$.populations[0].neuron.window",
        ),
        (
            "/populations/0/neuron/leak",
            serde_json::json!(1.0),
            "$.populations[0].neuron.leak",
        ),
        (
            "/populations/0/neuron/phase",
            serde_json::json!("late"),
            "$.populations[0].neuron.phase",
        ),
    ] {
        let mut b = v.clone();
        *b.pointer_mut(ptr).unwrap() = val;
        let bad = d.join("bad.json");
        std::fs::write(&bad, b.to_string()).unwrap();
        assert_eq!(
            epsim(&["netlist", "check", s(&bad)]),
            ExitCode::FAILURE,
            "{ptr}"
        );
        let e = sim::netlist::Netlist::read(&bad).unwrap_err();
        assert_eq!(e.path, path, "{e}");
    }
    for (set, ok) in [
        ("neuron.kind=spiking,neuron.window=8", true),
        ("neuron.kind=spiking,neuron.window=4,neuron.leak=0.1", true),
        ("neuron.kind=spiking,neuron.window=0", false),
        ("neuron.kind=pulsing", false),
    ] {
        assert_eq!(
            epsim(&[
                "eval",
                "--model",
                s(&ckpt),
                "--data",
                &data,
                "--substrate",
                "netlist:ideal",
                "--set",
                set,
            ]),
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            },
            "{set}"
        );
    }
}

/// The documented example passes `epsim netlist check` as shipped (its `syn1.weight.npy` lies
/// beside it in docs/), and realizes (`--realize`).
#[test]
fn the_documented_example_checks_as_shipped() {
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/netlist-example.json");
    assert_eq!(epsim(&["netlist", "check", doc]), ExitCode::SUCCESS);
    assert_eq!(
        epsim(&["netlist", "check", doc, "--realize"]),
        ExitCode::SUCCESS
    );
}

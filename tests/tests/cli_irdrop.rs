//! IR drop from the command line: `--set ir_drop.*` reaches the compiled netlist's device entry and
//! the realization (`epsim eval --substrate netlist:ideal`), bad values are refused.

use std::path::Path;
use std::process::ExitCode;

use epsim_tests::{epsim, s, tiny_model_and_data};

#[test]
fn ir_drop_set_compile_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ckpt, data) = tiny_model_and_data(d, false, 8);
    let compiled = |set: Option<&str>, out: &Path| {
        let mut a = vec![
            "compile",
            "--model",
            s(&ckpt),
            "--device",
            "ideal",
            "--tile",
            "16x4",
            "-o",
            s(out),
        ];
        if let Some(v) = set {
            a.extend_from_slice(&["--set", v]);
        }
        assert_eq!(epsim(&a), ExitCode::SUCCESS);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
        v["devices"]["dev"].clone()
    };
    let plain = compiled(None, &d.join("plain.json"));
    assert!(plain.get("ir_drop").is_none(), "{plain}");
    let net_json = d.join("ir.json");
    let dev = compiled(
        Some("ir_drop.r_wire_ohm=0.5,ir_drop.r_sense_ohm=20"),
        &net_json,
    );
    assert_eq!(dev["ir_drop"]["r_wire_ohm"], 0.5);
    assert_eq!(dev["ir_drop"]["r_sense_ohm"], 20.0);
    assert_eq!(
        epsim(&["netlist", "check", s(&net_json)]),
        ExitCode::SUCCESS
    );
    let eval = |sub: &str, set: Option<&str>| {
        let mut a = vec![
            "eval",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--substrate",
            sub,
            "--tile",
            "16x4",
            "--batch-size",
            "4",
        ];
        if let Some(v) = set {
            a.extend_from_slice(&["--set", v]);
        }
        epsim(&a)
    };
    assert_eq!(
        eval("netlist:ideal", Some("ir_drop.r_wire_ohm=2")),
        ExitCode::SUCCESS
    );
    assert_eq!(
        eval(&format!("netlist:{}", net_json.display()), None),
        ExitCode::SUCCESS
    );
    assert_eq!(
        eval("netlist:ideal", Some("ir_drop.r_wire_ohm=-1")),
        ExitCode::FAILURE
    );
}

//! The index contract of `epsim study` without a scheduler: the manifest (refused for another
//! study file), chunking of array tasks, `--run-cell` by index (idempotent: a done cell is kept
//! as it is), `collect` naming exactly the missing cells of a partial run, and the collected
//! records equal to those of a plain local run, cell by cell.

use std::path::Path;
use std::process::ExitCode;

use epsim_tests::{
    epsim, epsim_failure, s, tiny_cifar_ep_net, tiny_study_text, write_ep_model, write_tiny_cifar,
};
use experiments::study::cells::{StudyOptions, cell_path, run_study};
use experiments::study::index::{
    StudyGrid, collect, pending, read_plan, task_cells, task_count, task_index, write_plan,
};
use experiments::study::spec::StudySpec;
use serde_json::Value;

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("wall_s");
            v
        })
        .collect()
}

#[test]
fn array_tasks_chunk_the_cells() {
    assert_eq!(task_count(12, 1), 12);
    assert_eq!(task_count(12, 5), 3);
    assert_eq!(task_count(10, 5), 2);
    assert_eq!(task_cells(0, 5, 12).unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!(task_cells(2, 5, 12).unwrap(), vec![10, 11]);
    assert_eq!(task_cells(7, 1, 12).unwrap(), vec![7]);
    let e = task_cells(3, 5, 12).unwrap_err().to_string();
    assert!(e.contains("out of range") && e.contains("3 tasks"), "{e}");
    assert!(task_cells(0, 0, 12).is_err());
    assert_eq!(task_index(Some(4), 0).unwrap(), 4);
    assert_eq!(task_index(Some(4), 1).unwrap(), 3);
    assert!(task_index(Some(0), 1).is_err());
}

#[test]
fn plan_run_cell_collect_equals_a_local_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_ep_model(&tiny_cifar_ep_net(true), &d.join("a.safetensors"));
    write_ep_model(&tiny_cifar_ep_net(false), &d.join("b.safetensors"));
    write_tiny_cifar(&d.join("test.bin"), 80, 2);
    // 2 models × 2 substrates × (clean + 1 PGD ε + 1 corruption) = 12 cells.
    let (local, arr) = (d.join("local"), d.join("arr"));
    let study_local = d.join("local.toml");
    std::fs::write(&study_local, tiny_study_text(d, &local, "\"0.05\"")).unwrap();
    let study = d.join("arr.toml");
    std::fs::write(&study, tiny_study_text(d, &arr, "\"0.05\"")).unwrap();
    let spec = StudySpec::read(&study).unwrap();
    let grid = |spec: &StudySpec, file: &Path| StudyGrid {
        spec: spec.clone(),
        file: file.to_path_buf(),
    };

    // run-cell before plan is refused, naming the step.
    assert_eq!(
        epsim(&["study", s(&study), "--run-cell", "--index", "0"]),
        ExitCode::FAILURE
    );
    let (out, cells) = write_plan(&grid(&spec, &study)).unwrap();
    assert_eq!((out.clone(), cells), (arr.clone(), 12));
    let plan = std::fs::read_to_string(arr.join("plan.jsonl")).unwrap();
    assert_eq!(plan.lines().count(), 12);
    for (i, l) in plan.lines().enumerate() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["index"], i);
    }
    // Planning again is a no-op; the same out_dir for another study file is refused.
    assert_eq!(epsim(&["study", s(&study), "--plan"]), ExitCode::SUCCESS);
    assert_eq!(
        plan,
        std::fs::read_to_string(arr.join("plan.jsonl")).unwrap()
    );
    let other = d.join("other.toml");
    std::fs::write(&other, tiny_study_text(d, &arr, "\"0.02\"")).unwrap();
    let e = write_plan(&grid(&StudySpec::read(&other).unwrap(), &other)).unwrap_err();
    assert!(
        format!("{e:#}").contains("another version of the study"),
        "{e:#}"
    );

    // Task 1 of 3-cell chunks: cells 3, 4, 5; cell 7 by itself.
    assert_eq!(
        epsim(&[
            "study",
            s(&study),
            "--run-cell",
            "--index",
            "1",
            "--points-per-task",
            "3"
        ]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        epsim(&["study", s(&study), "--run-cell", "--index", "7"]),
        ExitCode::SUCCESS
    );
    let (missing, failed) = pending(&arr, 12);
    assert_eq!(
        (missing.clone(), failed),
        (vec![0, 1, 2, 6, 8, 9, 10, 11], vec![])
    );
    // A partial run collects nothing and names exactly the missing cells.
    let e = collect(&sim::Cpu, &grid(&spec, &study), false).unwrap_err();
    assert!(
        format!("{e:#}").contains("8 of 12 cells are not done: missing [0, 1, 2, 6, 8, 9, 10, 11]"),
        "{e:#}"
    );
    assert!(!arr.join("results.jsonl").exists());
    assert_eq!(epsim(&["study", s(&study), "--collect"]), ExitCode::FAILURE);
    // --partial reports the finished cells, headed by the missing ones.
    assert_eq!(
        epsim(&["study", s(&study), "--collect", "--partial"]),
        ExitCode::SUCCESS
    );
    let partial = std::fs::read_to_string(arr.join("report.md")).unwrap();
    assert!(
        partial.starts_with(
            "> **Partial report**: 4 of 12 cells done; not done yet: cells 0-2, 6, 8-11."
        ),
        "{partial}"
    );
    assert_eq!(records(&arr.join("results.jsonl")).len(), 4);

    // A done cell is kept as it is (idempotent): its file is not rewritten.
    let before = std::fs::read(cell_path(&arr, 4)).unwrap();
    let mtime = std::fs::metadata(cell_path(&arr, 4))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        epsim(&["study", s(&study), "--run-cell", "--index", "4"]),
        ExitCode::SUCCESS
    );
    assert_eq!(std::fs::read(cell_path(&arr, 4)).unwrap(), before);
    assert_eq!(
        std::fs::metadata(cell_path(&arr, 4))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    for i in ["0", "1", "2", "6", "8", "9", "10", "11"] {
        assert_eq!(
            epsim(&["study", s(&study), "--run-cell", "--index", i]),
            ExitCode::SUCCESS
        );
    }
    assert_eq!(epsim(&["study", s(&study), "--collect"]), ExitCode::SUCCESS);
    assert!(arr.join("report.md").exists());

    // The same records as a plain local run, cell by cell.
    let o = run_study(
        &sim::Cpu,
        &StudySpec::read(&study_local).unwrap(),
        &study_local,
        &StudyOptions::default(),
    )
    .unwrap();
    assert_eq!(o.cells, 12);
    assert_eq!(
        records(&arr.join("results.jsonl")),
        records(&local.join("results.jsonl"))
    );

    // Comments and layout are not the study: an edited comment keeps the plan.
    let text = tiny_study_text(d, &arr, "\"0.05\"");
    std::fs::write(&study, format!("# a note\n{text}\n# edited\n")).unwrap();
    read_plan(&grid(&spec, &study)).unwrap();
    // A changed setting the cell list does not show (PGD steps) is refused by run-cell, collect
    // and a local run alike.
    std::fs::write(&study, text.replace("steps = 3", "steps = 4")).unwrap();
    let e = read_plan(&grid(&spec, &study)).unwrap_err();
    assert!(format!("{e:#}").contains("changed after planning"), "{e:#}");
    let e = run_study(
        &sim::Cpu,
        &StudySpec::read(&study).unwrap(),
        &study,
        &StudyOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("settings changed"), "{e:#}");
}

/// `--slurm` refuses a study with a model that has neither a checkpoint nor a training config
/// (a model with a config is trained by a job before the array: `study_slurm.rs`). Nothing is
/// planned or submitted.
#[test]
fn slurm_refuses_models_it_cannot_train() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_ep_model(&tiny_cifar_ep_net(true), &d.join("a.safetensors"));
    write_tiny_cifar(&d.join("test.bin"), 20, 2);
    let out = d.join("out");
    let study = d.join("s.toml");
    std::fs::write(&study, tiny_study_text(d, &out, "\"0.05\"")).unwrap();
    let (code, msg) = epsim_failure(&["study", s(&study), "--slurm"]);
    assert_eq!(code, 1, "{msg}");
    assert!(msg.contains("b.safetensors"), "{msg}");
    assert!(!out.join("plan.jsonl").exists());
    assert!(!out.join("study.sbatch").exists());
}

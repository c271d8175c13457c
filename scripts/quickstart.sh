#!/usr/bin/env bash
# The main job: installs what it needs, builds epsim and runs the quick-start study
# (configs/studies/quickstart.toml: the shipped Fashion-MNIST EP-CNN on the digital engine and on
# simulated PCM and RRAM crossbars, beside a backprop CNN on the same three, under PGD and Square attacks with both
# protocols). Results in runs/quickstart/ (report.md, results.jsonl, plots). Interrupted? Run it
# again: the cells already done are kept (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
cargo build --release -p experiments --bin epsim
./target/release/epsim study configs/studies/quickstart.toml --resume "$@"

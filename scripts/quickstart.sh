#!/usr/bin/env bash
# The main job: installs what it needs, builds epsim, and runs the quick-start study.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
cargo build --release -p experiments --bin epsim
./target/release/epsim smoke "$@"

#!/usr/bin/env bash
# The full test suite: installs what the tests need, then runs every test of the workspace.
# Long studies are opt-in (EPSIM_LONG=1) and say so when they are not run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
cargo test --workspace --release --no-fail-fast "$@"

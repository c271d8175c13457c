#!/usr/bin/env bash
# The full test suite: installs what the tests need, then runs every test of the workspace.
# Long studies are opt-in (EPSIM_LONG=1) and say so when they are not run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
cargo test --workspace --release --no-fail-fast "$@"
# The fuzz targets once more with overflow checks (the dev profile): in release an arithmetic
# overflow on a hostile size wraps silently instead of failing the run, which hides exactly the
# bugs fuzzing is for.
cargo test -p epsim-tests --test fuzz_parsers "$@"

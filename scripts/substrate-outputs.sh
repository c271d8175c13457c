#!/usr/bin/env bash
# The substrate outputs of one epsim binary, for checking that a kernel change keeps the bits:
# accuracy and bound-management counts of the quick-start EP-CNN on netlist:pcm, rram and ecram,
# with --tol, with IR drop, with spiking neurons, and of the quick-start BP-CNN on pcm (speeds
# removed). Run it with the binaries before and after a change and compare the two files:
#   scripts/substrate-outputs.sh /tmp/epsim-before before.txt
#   scripts/substrate-outputs.sh target/release/epsim after.txt && cmp before.txt after.txt
# Run from the repository root (it reads models/ and Fashion-MNIST's test set).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 EPSIM_BINARY OUTPUT_FILE" >&2
  exit 2
fi
B=$1
OUT=$2
M=models/quickstart-epcnn.safetensors
speed='s/ *([0-9.]* img\/s)//'
eval_on() { "$B" --threads 2 eval --data fashion-mnist:test "$@" 2>&1 | sed "$speed"; }
{
  for sub in netlist:pcm netlist:rram netlist:ecram; do
    eval_on --model $M --subset 300 --substrate $sub
  done
  eval_on --model $M --subset 200 --substrate netlist:pcm --tol 0.3
  eval_on --model $M --subset 100 --substrate netlist:ideal --set ir_drop.r_wire_ohm=5
  eval_on --model $M --subset 200 --substrate netlist:pcm --set neuron.kind=spiking,neuron.window=4
  eval_on --model models/quickstart-bpcnn.safetensors --subset 200 --substrate netlist:pcm
} > "$OUT"

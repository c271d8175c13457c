#!/usr/bin/env bash
# A normalized transcript of epsim's fast CLI commands: what each prints (stdout and stderr) and
# what it writes (text files in full, binary files by SHA-256), with wall times and rates masked.
# Two transcripts of the same code are identical; comparing the transcripts of two builds shows
# whether a change altered any user-visible output:
#
#   bash scripts/cli-transcript.sh target/release/epsim /tmp/before.txt   # on the old commit
#   bash scripts/cli-transcript.sh target/release/epsim /tmp/after.txt    # on the new one
#   diff /tmp/before.txt /tmp/after.txt
#
# Needs Fashion-MNIST (scripts/system-deps.sh) and ../shared/datasets/cifar10 (or
# EPSIM_CIFAR10_DIR); takes about a minute on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
EPSIM=$(realpath "${1:?usage: cli-transcript.sh EPSIM_BINARY OUT_FILE}")
OUT=$(realpath -m "${2:?usage: cli-transcript.sh EPSIM_BINARY OUT_FILE}")
CIFAR=$(realpath -m "${EPSIM_CIFAR10_DIR:-../shared/datasets/cifar10}")
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
: > "$OUT"

# Mask what differs between two runs of the same code: times, rates, paths of the temp dir.
norm() {
  sed -E \
    -e "s#$W#<W>#g" -e "s#$PWD#<repo>#g" \
    -e 's/(\\?")(wall_s|[a-z_]*time_s|[a-z_]*per_s)(\\?"):[0-9.eE+-]+/\1\2\3:<t>/g' \
    -e 's/"commit":"[^"]*"/"commit":<c>/g' \
    -e 's/commit [0-9a-f]{7,40}(-dirty)?|commit unknown/commit <c>/g' \
    -e 's/[0-9]+(\.[0-9]+)? ?(img\/s|s|ms|µs|min)\b/<t>/g' \
    -e 's/\| [0-9]+\.[0-9] \|$/| <t> |/' \
    -e 's/ +[0-9]+\.[0-9]$/ <t>/'
}

run() {
  echo "### \$ epsim $*" | norm >> "$OUT"
  local rc=0
  (cd "$W" && "$EPSIM" "$@") > "$W/.stdout" 2> "$W/.stderr" || rc=$?
  echo "# exit $rc" >> "$OUT"
  echo "# stdout" >> "$OUT"; norm < "$W/.stdout" >> "$OUT"
  echo "# stderr" >> "$OUT"; norm < "$W/.stderr" >> "$OUT"
}

files() {
  echo "### files under $1" >> "$OUT"
  (cd "$W" && { find "$1" -type f 2>/dev/null || true; } | LC_ALL=C sort) | while read -r f; do
    case "$f" in
      *.md|*.jsonl|*.json|*.txt)
        [ "$(stat -c %s "$W/$f")" -gt 20000 ] && { echo "## $f $(sha256sum < "$W/$f" | cut -c1-16)" >> "$OUT"; continue; }
        echo "## $f" >> "$OUT"; norm < "$W/$f" >> "$OUT" ;;
      *.safetensors)
        # The header (metadata holds times) normalized, the tensor bytes hashed.
        echo "## $f" >> "$OUT"
        python3 -c 'import sys,struct,hashlib; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; import json; print(json.dumps(json.loads(b[8:8+n]), sort_keys=True)); print("data", hashlib.sha256(b[8+n:]).hexdigest()[:16])' "$W/$f" | norm >> "$OUT" ;;
      *)
        echo "## $f $(sha256sum < "$W/$f" | cut -c1-16)" >> "$OUT" ;;
    esac
  done
}

cat > "$W/suite.toml" <<'EOF'
protocols = ["standard", "advep"]
[[attack]]
name = "pgd-linf"
eps = ["0", "0.05", "0.3"]
steps = 3
save_examples = 2
EOF
cat > "$W/suite-std.toml" <<'EOF'
[[attack]]
name = "pgd-linf"
eps = ["0.05"]
steps = 2
EOF
cat > "$W/suite-rgb.toml" <<'EOF'
[[attack]]
name = "square-linf"
eps = ["8/255"]
steps = 20
[corruptions]
names = ["gaussian_noise", "contrast"]
severities = [1, 5]
EOF
cat > "$W/bp.toml" <<'EOF'
kind = "bp_cnn"
name = "bp"
seed = 3
[data]
train = "fashion-mnist:train"
test = "fashion-mnist:test"
train_subset = 256
test_subset = 128
mean = [0.2860]
std = [0.3530]
[model]
input = [1, 28, 28]
conv = [
  { channels = 4, kernel = 5, stride = 1, padding = 0, pool = "max" },
  { channels = 8, kernel = 5, stride = 1, padding = 0, pool = "max" },
]
fc = [10]
[optim]
algorithm = { kind = "sgd", momentum = 0.9 }
lrs = [0.05]
wds = [5e-4]
[train]
epochs = 1
batch_size = 64
EOF

M=smoke/checkpoint.safetensors
mkdir -p "$W/att" "$W/bp"
run smoke --out smoke
files smoke
run data info fashion-mnist:test
run eval --model $M --data fashion-mnist:test --subset 200
run eval --model $M --data fashion-mnist:test --subset 100 --steps 4 --per-step --plot acc.png
run eval --model $M --data fashion-mnist:test --subset 100 --substrate netlist:pcm
run --seed 2 eval --model $M --data fashion-mnist:test --subset 100 --substrate netlist:ideal --set neuron.kind=spiking,neuron.window=4 --tile 64x32
run eval --model $M --data fashion-mnist:test --subset 10 --substrate bogus
run eval --model $M --data fashion-mnist:test --subset 10 --set adc.bits=4
run attack --model $M --data fashion-mnist:test --subset 40 --attack pgd-linf --eps 0,0.05,1/10 --steps 3 --out att/results.jsonl --save-examples 3
run attack --model $M --data fashion-mnist:test --subset 20 --attack square-linf --eps 0.1 --steps 30 --protocol advep --out att/results.jsonl
run attack --model $M --data fashion-mnist:test --subset 20 --attack pgd-l2 --eps 0.5 --steps 2 --substrate netlist:pcm --eot 2 --out att/results.jsonl
run attack --model $M --data fashion-mnist:test --subset 20 --attack nope-linf --eps 0.1 --out att/bad.jsonl
files att
run robustness --model $M --data fashion-mnist:test --subset 30 --t-attack 5 --suite "$W/suite.toml" --out-dir rob
files rob
run report --results att/results.jsonl rob/results.jsonl --label "$M=EP-smoke" --out rep/report.md
files rep
run compile --model $M --device pcm --set adc.bits=6 -o hw/net.json
run netlist check hw/net.json --realize
run export --model $M --device rram --tile 128x64 --out hw/chip
run export --netlist hw/net.json --out hw/chip2
files hw
run sweep --model $M --data fashion-mnist:test --subset 30 --device pcm --param prog_noise_scale=0,2 --suite "$W/suite-std.toml" --substrate-seeds 2 --out-dir sw
run sweep --model $M --data fashion-mnist:test --subset 30 --device pcm --param prog_noise_scale=0,2 --suite "$W/suite-std.toml" --substrate-seeds 2 --out-dir sw --resume
files sw
run train --config "$W/bp.toml" --out bp
files bp
run eval --model bp/checkpoint.safetensors --data fashion-mnist:test --subset 100
run attack --model bp/checkpoint.safetensors --data fashion-mnist:test --subset 20 --attack pgd-linf --eps 0.05 --steps 2 --out bp/att.jsonl
run train --config "$PWD/configs/fmnist-mlp-ecram.toml" --epochs 1 --max-batches 2 --out sub
files sub
if [ -e "$CIFAR/test_batch.bin" ]; then
  run corrupt --data "cifar10:$CIFAR/test_batch.bin" --corruption gaussian_noise,frost --severity 2 --out corr
  files corr
  sed -e 's#fashion-mnist:train#cifar10:'"$CIFAR"'/test_batch.bin#' -e 's#fashion-mnist:test#cifar10:'"$CIFAR"'/test_batch.bin#' \
    -e 's#input = \[1, 28, 28\]#input = [3, 32, 32]#' -e 's#\[0.2860\]#[0.49, 0.48, 0.45]#' -e 's#\[0.3530\]#[0.25, 0.24, 0.26]#' -e 's#name = "bp"#name = "bpc"#' "$W/bp.toml" > "$W/bpc.toml"
  run train --config "$W/bpc.toml" --out bpc
  run robustness --model bpc/checkpoint.safetensors --data "cifar10:$CIFAR/test_batch.bin" --subset 10 --suite "$W/suite-rgb.toml" --out-dir robc
  files robc
fi
run settle --model $M --input nope.npy --steps 3
echo "transcript: $OUT ($(wc -l < "$OUT") lines)"

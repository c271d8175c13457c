#!/usr/bin/env bash
# The GPU backend's parity check and CPU-vs-GPU timings, prepared here and run in one call on a
# machine with an NVIDIA GPU (which has no Rust toolchain and no network):
#
#   bash scripts/gpu-bench.sh build      # here: builds the test, bench and CLI binaries, strips
#                                        # them into .gpubench/, fetches the Vulkan loader .debs
#                                        # into .gl/ (both ignored by git, carried to the machine)
#   bash scripts/gpu-bench.sh run DIR    # there: installs the loader, runs the GPU conformance
#                                        # and CPU-vs-GPU parity tests, compares `epsim settle
#                                        # --dump` on both devices, times CPU and GPU side by side
#                                        # (benchmarks, `eval --substrate netlist:pcm`, and
#                                        # `eval --tol` against plain T1 on the GPU; the conv
#                                        # and EP-step benches time the direct implicit GEMM
#                                        # against Winograd F(2x2) and F(4x4): rows
#                                        # *_winograd2/4, *_gpu_direct, *_gpu_winograd4);
#                                        # everything lands in DIR (log.txt, bench.txt, parity.txt);
#                                        # EPSIM_GPU_BENCH_QUICK=1 skips the timings (a dry run)
#
# With the device tool: run(command="bash scripts/gpu-bench.sh run $OUT", carry=[".gpubench", ".gl"],
# timeout_s=540). Record the numbers in BENCHMARKS.md with the card's name from log.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

build() {
  for d in .gpubench .gl; do
    grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >>.git/info/exclude
  done
  rm -rf .gpubench && mkdir -p .gpubench
  # Test and bench executables, located from cargo's JSON messages.
  { cargo test --release -p host-gpu --no-run --message-format=json 2>/dev/null
    cargo bench -p host-gpu --no-run --message-format=json 2>/dev/null; } >.gpubench/artifacts.json
  python3 - .gpubench/artifacts.json <<'PY'
import json, shutil, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable")
    if m.get("reason") == "compiler-artifact" and exe:
        kind = m["target"]["kind"][0]
        if kind in ("test", "bench"):
            shutil.copy(exe, f".gpubench/{kind}-{m['target']['name']}")
PY
  rm .gpubench/artifacts.json
  cargo build --release -p experiments --bin epsim
  cp target/release/epsim .gpubench/epsim
  strip .gpubench/test-* .gpubench/bench-* .gpubench/epsim
  # Compressed: the carried tree must stay under the device tool's 64 MiB.
  gzip -9 -f .gpubench/test-* .gpubench/bench-* .gpubench/epsim
  # Inputs for the settle comparison: 16 CIFAR-10-shaped images, and the shipped
  # Fashion-MNIST model with 16 of its inputs.
  python3 - <<'PY'
import struct, random
def npy(path, shape, values):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % "".join(f"{s}," for s in shape)
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack(f"<{len(values)}f", *values))
rng = random.Random(7)
npy(".gpubench/x_fmnist.npy", (16, 1, 28, 28), [rng.random() for _ in range(16 * 784)])
npy(".gpubench/x_cifar.npy", (16, 3, 32, 32), [rng.random() for _ in range(16 * 3072)])
PY
  # The small CIFAR-10 EP-CNN (3x3 layers of 32-64-128 channels: Winograd under the GPU's Auto).
  cp models/quickstart-epcnn.safetensors models/cifar10-small-epcnn-t60.safetensors .gpubench/
  # The Fashion-MNIST test set for the substrate timings (the machine has no network).
  mkdir -p .gpubench/fmnist
  cp /usr/share/datasets/fashion-mnist/t10k-* .gpubench/fmnist/
  # Vulkan loader for the device machine (its image has the NVIDIA driver but no libvulkan).
  if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
    mkdir -p .gl /tmp/amd64/partial
    local o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    # shellcheck disable=SC2086
    apt-get $o update -qq && (cd .gl && apt-get $o download libvulkan1)
  fi
  du -sh .gpubench .gl
  echo "ready: run 'bash scripts/gpu-bench.sh run \$OUT' on the GPU machine, carrying .gpubench and .gl"
}

run() {
  local out=${1:?usage: gpu-bench.sh run OUT_DIR}
  mkdir -p "$out"
  exec > >(tee "$out/log.txt") 2>&1
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  fi
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv || true
  nproc
  local b=/tmp/gpubench
  rm -rf $b && cp -r .gpubench $b && gunzip $b/*.gz && chmod +x $b/test-* $b/bench-* $b/epsim
  echo "== conformance and parity on the GPU"
  for t in $b/test-*; do
    echo "-- $t"
    "$t" 2>&1 | tail -n 5 | tee -a "$out/parity.txt"
  done
  echo "== settle on both devices (Fashion-MNIST quick-start: direct convs; small CIFAR-10: Winograd)"
  for m in quickstart-epcnn:x_fmnist cifar10-small-epcnn-t60:x_cifar; do
    local model=${m%%:*} x=${m##*:}
    for dev in cpu gpu; do
      "$b/epsim" --device $dev settle --model "$b/$model.safetensors" --input "$b/$x.npy" \
        --steps 60 --at 1,10,60 --dump "$out/settle_${model}_$dev.npz"
    done
    python3 - "$model" "$out/settle_${model}_cpu.npz" "$out/settle_${model}_gpu.npz" <<'PY' | tee -a "$out/parity.txt"
# No numpy: the .npz is a zip of .npy files of little-endian f32 (`epsim settle --dump`).
import ast, struct, sys, zipfile
def load(path):
    arrays = {}
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            raw = z.read(name)
            assert raw[:6] == b"\x93NUMPY", f"{path}:{name}: not a .npy"
            wide = raw[6] >= 2
            size = struct.unpack("<I" if wide else "<H", raw[8:12] if wide else raw[8:10])[0]
            start = 12 if wide else 10
            head = ast.literal_eval(raw[start:start + size].decode("latin1"))
            assert head["descr"] == "<f4" and not head["fortran_order"], f"{path}:{name}: {head}"
            n = 1
            for d in head["shape"]:
                n *= d
            arrays[name] = (head["shape"], struct.unpack(f"<{n}f", raw[start + size:start + size + 4 * n]))
    return arrays
a, b = load(sys.argv[2]), load(sys.argv[3])
assert a.keys() == b.keys() and all(a[k][0] == b[k][0] for k in a), "the dumps' arrays differ"
worst = max(max(abs(x - y) for x, y in zip(a[k][1], b[k][1])) for k in a)
print(f"settle --dump cpu vs gpu, {sys.argv[1]}: {len(a)} arrays, max abs difference {worst:.3e}",
      "(bar 1e-4)", "PASS" if worst <= 1e-4 else "FAIL")
PY
  done
  if [ "${EPSIM_GPU_BENCH_QUICK:-0}" = 1 ]; then
    echo "EPSIM_GPU_BENCH_QUICK=1: parity only, no timings"
    return
  fi
  echo "== netlist:pcm inference, CPU and GPU (crossbar reads on the device), 2000 images"
  for dev in cpu gpu cpu gpu; do
    EPSIM_FASHION_MNIST_DIR=$b/fmnist "$b/epsim" --device $dev eval \
      --model $b/quickstart-epcnn.safetensors --data fashion-mnist:test --subset 2000 \
      --substrate netlist:pcm 2>&1 | grep -v WARN | tee -a "$out/bench.txt"
  done
  echo "== settling to a tolerance on the GPU (issue 19's lever): plain T = 20 vs --tol 0.3, 2000 images"
  for flags in "" "--tol 0.3" "" "--tol 0.3"; do
    # shellcheck disable=SC2086
    EPSIM_FASHION_MNIST_DIR=$b/fmnist "$b/epsim" --device gpu eval \
      --model $b/quickstart-epcnn.safetensors --data fashion-mnist:test --subset 2000 $flags \
      2>&1 | grep -v WARN | tee -a "$out/bench.txt"
  done
  echo "== timings (divan, medians; CPU and GPU in one run)"
  for t in $b/bench-*; do
    echo "-- $t"
    case "$t" in
      # The substrate's paper-config CPU row would take most of the call: GPU only there.
      *bench-substrate) "$t" fmnist cifar10_paper_pcm_5_free_steps_gpu 2>&1 | tee -a "$out/bench.txt" ;;
      *) "$t" 2>&1 | tee -a "$out/bench.txt" ;;
    esac
  done
}

case "${1:-}" in
  build) build ;;
  run) shift; run "$@" ;;
  *) sed -n 2,16p "$0"; exit 2 ;;
esac

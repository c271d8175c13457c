#!/usr/bin/env bash
# Installs the Debian packages epsim's main job and tests need (idempotent; run as root).
#   dataset-fashion-mnist : Fashion-MNIST IDX files in /usr/share/datasets/fashion-mnist
#   mesa-vulkan-drivers, libvulkan1 : the Vulkan loader and Mesa's software Vulkan driver (lavapipe),
#                         so the GPU backend's tests run on machines without a GPU
#   slurm-wlm, munge    : a single-node Slurm for the cluster-mode test (scripts/slurm-local.sh)
set -euo pipefail
pkgs=(dataset-fashion-mnist mesa-vulkan-drivers libvulkan1 slurm-wlm munge)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Pillow (PyPI), for scripts/fixtures/make_jpeg_fixtures.py: the PIL-made JPEG reference that
# experiments/tests/fixtures/jpeg_pil.bin holds (the tests read the committed file; regenerate
# it with `python3 scripts/fixtures/make_jpeg_fixtures.py OUT.bin ../shared/datasets/cifar10/test_batch.bin`).
# scripts/fixtures/make_frost_fixtures.py (experiments/tests/fixtures/frost_cv2.bin) also needs
# `python3 -m pip install numpy opencv-python-headless`; not installed here, the tests do not run it.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import PIL' 2>/dev/null; then
  echo "installing Pillow (pip)"
  python3 -m pip install --quiet pillow 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages pillow \
    || echo "warning: could not install Pillow; only scripts/fixtures/make_jpeg_fixtures.py needs it" >&2
fi

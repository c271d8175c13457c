#!/usr/bin/env bash
# Installs the Debian packages epsim's main job and tests need (idempotent; run as root).
#   dataset-fashion-mnist : Fashion-MNIST IDX files in /usr/share/datasets/fashion-mnist
set -euo pipefail
pkgs=(dataset-fashion-mnist)
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

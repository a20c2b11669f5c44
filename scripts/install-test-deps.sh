#!/usr/bin/env bash
# What the optional tests need beyond scripts/install-deps.sh (CI runs both; a test whose
# tool is missing skips itself with exit 77 and says why):
# - Debian's python3-torch + python3-torchvision: the PyTorch peer (e2e_peer, bench/) and timm's
#   side of e2e_timm; importable only by /usr/bin/python3.
# - a venv over them, BUILD/pyvenv, with tensorboard (e2e_tensorboard reads dcal's event files
#   with it) and timm 1.0.31 (e2e_timm builds a random ViT-B/16 with it).
#   bash scripts/install-test-deps.sh [BUILD=build]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
pkgs=(python3-torch python3-torchvision python3-venv)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
mkdir -p "$build"
[ -x "$build/pyvenv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$build/pyvenv"
"$build/pyvenv/bin/pip" install -q tensorboard timm==1.0.31
"$build/pyvenv/bin/python" -c "import torch, timm, tensorboard; print('dcal: test venv', '$build/pyvenv', 'torch', torch.__version__, 'timm', timm.__version__)"

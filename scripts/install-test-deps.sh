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
bash scripts/install-deps.sh python3-torch python3-torchvision
mkdir -p "$build"
[ -x "$build/pyvenv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$build/pyvenv"
"$build/pyvenv/bin/pip" install -q tensorboard timm==1.0.31
"$build/pyvenv/bin/python" -c "import torch, timm, tensorboard; print('dcal: test venv', '$build/pyvenv', 'torch', torch.__version__, 'timm', timm.__version__)"

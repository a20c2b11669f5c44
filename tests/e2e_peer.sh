#!/usr/bin/env bash
# e2e_peer.sh: bench/peer.py (the PyTorch peer that the benchmarks compare
# against) computes the same step as dcal: one --dump-step of the tiny config
# checked by `peer.py --check` (selection exact, logits/CE/loss within 1e-4,
# accumulated gradients within 1e-3), plain and with per-block checkpointing;
# and a dump whose largest element of one gradient is changed by 1% is
# refused, so the check can fail. Skipped (77) where the Python has no torch
# (CI).
# PEER_PYTHON picks the interpreter (default /usr/bin/python3: Debian's
# python3-torch is importable only there).
set -eu
dcal=$1; src=$2
py=${PEER_PYTHON:-/usr/bin/python3}
if ! "$py" -c 'import torch' 2>/dev/null; then
  echo "skip: $py cannot import torch (apt-get install python3-torch, or set PEER_PYTHON)"; exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-peer.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null
"$dcal" train --config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs" \
  --dump-step "$tmp/step.safetensors" > /dev/null 2>&1
peer=("$py" "$src/bench/peer.py" --threads 1 --check)
"${peer[@]}" "$tmp/step.safetensors" || { echo "FAIL: the peer's step differs from dcal's"; exit 1; }
"${peer[@]}" "$tmp/step.safetensors" --checkpoint-blocks > "$tmp/ckpt.txt" \
  || { cat "$tmp/ckpt.txt"; echo "FAIL: --checkpoint-blocks changes the peer's step"; exit 1; }

# The largest element of grad.blocks.1.mlp.fc1.weight scaled by 1.01: the check must say so.
"$py" - "$tmp/step.safetensors" "$tmp/bad.safetensors" <<'EOF'
import json, struct, sys
raw = bytearray(open(sys.argv[1], "rb").read())
(n,) = struct.unpack("<Q", raw[:8])
a, b = json.loads(raw[8:8 + n])["grad.blocks.1.mlp.fc1.weight"]["data_offsets"]
g = struct.unpack("<%df" % ((b - a) // 4), raw[8 + n + a:8 + n + b])
i = max(range(len(g)), key=lambda j: abs(g[j]))
at = 8 + n + a + 4 * i
raw[at:at + 4] = struct.pack("<f", g[i] * 1.01)
open(sys.argv[2], "wb").write(raw)
EOF
if "${peer[@]}" "$tmp/bad.safetensors" > "$tmp/bad.txt"; then
  cat "$tmp/bad.txt"; echo "FAIL: a changed gradient passed the check"; exit 1
fi
grep -q "grad.blocks .*FAIL" "$tmp/bad.txt" || { cat "$tmp/bad.txt"; echo "FAIL: the change was not named"; exit 1; }
echo "ok: peer.py computes dcal's step; a 1% change in one gradient element is caught"

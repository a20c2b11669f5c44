#!/usr/bin/env bash
# e2e_timm.sh: timm weights through `dcal convert` give timm's own logits.
# A randomly initialised timm deit_tiny_patch16_224 (dcal's deit_t preset; the same
# VisionTransformer and names as ViT-B, 15x smaller: ViT-B/16 itself is
# long_timm_vitb.sh's, label long; DCAL_TIMM_MODEL/DCAL_TIMM_PRESET choose) (1000 classes, every
# parameter perturbed) is saved as a .pth and as the original ViT .npz layout
# (tests/timm_reference.py); tools/convert_timm.py dumps the .pth, `dcal
# convert` maps both files (--keep-head), and `dcal predict --pretrained
# --tensor --logits` on the same input tensor must give timm's forward within
# 1e-4 (fp32), head included. Needs torch (Debian python3-torch, python3-torchvision)
# and timm 1.0.31 from PyPI in the tests' venv (build/pyvenv, made by scripts/install-test-deps.sh,
# or here when missing; e2e_tensorboard uses the same one);
# exits 77 (skip) when they cannot be had.
set -u
dcal=$1; src=$2
# The same numbers under a sanitizer would cost CI a minute more and a second venv: the plain build checks them.
if ldd "$dcal" 2>/dev/null | grep -q 'libasan\|libubsan'; then echo "SKIP: sanitizer build (the plain build runs e2e_timm)"; exit 77; fi
venv=${DCAL_TIMM_VENV:-$PWD/pyvenv}
py=$venv/bin/python
if ! "$py" -c "import timm, torch" 2>/dev/null; then
  if ! /usr/bin/python3 -c "import torch, torchvision" 2>/dev/null; then
    echo "SKIP: /usr/bin/python3 cannot import torch and torchvision (apt-get install python3-torch python3-torchvision)"; exit 77
  fi
  [ -x "$py" ] || /usr/bin/python3 -m venv --system-site-packages "$venv" >/dev/null 2>&1
  if ! timeout 600 "$venv/bin/pip" install -q timm==1.0.31 >/dev/null 2>&1 ||
     ! "$py" -c "import timm, torch" 2>/dev/null; then
    echo "SKIP: cannot install timm==1.0.31 into $venv (needs PyPI and python3-venv)"; exit 77
  fi
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-timm.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
fail=0
t0=$(date +%s)
model=${DCAL_TIMM_MODEL:-deit_tiny_patch16_224} preset=${DCAL_TIMM_PRESET:-deit_t}
"$py" "$src/tests/timm_reference.py" make "$tmp" "$model" || exit 1
"$py" "$src/tools/convert_timm.py" "$tmp/vit.pth" "$tmp/timm.safetensors" || exit 1
shape=(--dataset cub --set model.preset="$preset" --set model.img_size=224 --set data.crop=224 --set data.resize=256 --set model.num_classes=1000)
for in in timm.safetensors vit.npz; do
  "$dcal" convert "$tmp/$in" --out "$tmp/dcal.safetensors" --keep-head || { echo "FAIL: dcal convert $in"; fail=1; continue; }
  "$dcal" predict --pretrained "$tmp/dcal.safetensors" "${shape[@]}" --tensor "$tmp/images.safetensors" --logits \
    --batch 3 > "$tmp/dcal.jsonl" 2> "$tmp/err.txt" || { echo "FAIL: dcal predict on $in"; cat "$tmp/err.txt"; fail=1; continue; }
  "$py" "$src/tests/timm_reference.py" compare "$tmp" "$tmp/dcal.jsonl" || { echo "FAIL: logits from $in differ"; fail=1; }
  # Without the head the file is what --pretrained reads; the classifier is dropped.
  "$dcal" convert "$tmp/$in" --out "$tmp/backbone.safetensors" > "$tmp/conv.txt" || { echo "FAIL: convert $in without head"; fail=1; }
  grep -q "2 classifier tensors dropped" "$tmp/conv.txt" || { echo "FAIL: head not dropped:"; cat "$tmp/conv.txt"; fail=1; }
done
echo "e2e_timm: $(( $(date +%s) - t0 )) s"
exit $fail

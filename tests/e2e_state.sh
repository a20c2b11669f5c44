#!/usr/bin/env bash
# e2e_state.sh: a checkpoint's training state is verified end to end. A NaN
# written into the AdamW state of a stopped run makes `dcal train --resume`
# refuse (naming the tensor and element, exit != 0, the file left as it was)
# and `dcal audit` FAIL.
set -eu
dcal=$1; src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-state.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null
"$dcal" train --config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs" \
  --set train.run_name=r --set train.max_steps=1 > "$tmp/log.txt"
ck="$tmp/runs/r/checkpoint.safetensors"
"$dcal" audit "$tmp/runs/r" > "$tmp/audit.txt" 2>&1 || { echo "FAIL: audit of an intact run"; cat "$tmp/audit.txt"; exit 1; }
# The last 4 bytes are the last element of the last tensor (adam.v.<last parameter>): make it a NaN.
size=$(stat -c %s "$ck")
printf '\000\000\300\177' | dd of="$ck" bs=1 seek=$((size - 4)) conv=notrunc status=none
before=$(sha256sum "$ck")
if "$dcal" train --resume "$tmp/runs/r" > "$tmp/out.txt" 2> "$tmp/err.txt"; then
  echo "FAIL: resume accepted a NaN in the AdamW state"; cat "$tmp/out.txt"; exit 1
fi
grep -qE "checkpoint.safetensors: tensor 'adam\.v\.[a-z0-9_.]+': element [0-9]+ is NaN" "$tmp/err.txt" ||
  { echo "FAIL: error does not name the tensor:"; cat "$tmp/err.txt"; exit 1; }
[ "$(sha256sum "$ck")" = "$before" ] || { echo "FAIL: the refused checkpoint was changed"; exit 1; }
if "$dcal" audit "$tmp/runs/r" > "$tmp/audit.txt" 2>&1; then echo "FAIL: audit passed a NaN"; cat "$tmp/audit.txt"; exit 1; fi
grep -q "is NaN" "$tmp/audit.txt" && grep -q "^FAIL .*checkpoint.safetensors" "$tmp/audit.txt" ||
  { cat "$tmp/audit.txt"; exit 1; }
echo "ok: NaN in the AdamW state refused on resume and by the audit"

# A position outside the run's schedule (batch 1 of a 4-micro-batch step; epoch 9 of 2) is refused
# on resume naming the fields, instead of quietly skipping training.
"$dcal" train --config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs" \
  --set train.run_name=p --set train.max_steps=1 > /dev/null 2>&1
ck="$tmp/runs/p/checkpoint.safetensors"
for edit in '"batch":"4"/"batch":"1"' '"epoch":"0"/"epoch":"9"'; do
  cp "$ck" "$tmp/orig.st"
  python3 - "$ck" "${edit%%/*}" "${edit##*/}" <<'PY'
import sys
p, a, b = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
d = open(p, 'rb').read()
assert d.count(a) == 1, (a, d[:400])
open(p, 'wb').write(d.replace(a, b))
PY
  if "$dcal" train --resume "$tmp/runs/p" > "$tmp/out.txt" 2> "$tmp/err.txt"; then echo "FAIL: resume accepted $edit"; exit 1; fi
  grep -q "lie outside this run's schedule" "$tmp/err.txt" || { echo "FAIL: $edit:"; cat "$tmp/err.txt"; exit 1; }
  cp "$tmp/orig.st" "$ck"
done
echo "ok: checkpoint positions outside the schedule are refused"

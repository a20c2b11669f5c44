#!/usr/bin/env bash
# e2e_errors.sh: bad inputs give one clear line and a non-zero exit, and
# leave what was already written intact: missing image, corrupt JPEG,
# wrong-shape weights, truncated checkpoint, failing compliance.
set -u
dcal=$1; src=$2; fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-err.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null || exit 1
common=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs")
expect() {  # expect PATTERN -- cmd...: non-zero exit, one 'dcal:' error line containing PATTERN
  local pat=$1; shift 2
  "$@" > "$tmp/out.txt" 2> "$tmp/err.txt"; local rc=$?
  if [ $rc -eq 0 ]; then echo "FAIL: '$*' succeeded"; fail=1; return; fi
  if ! grep -q -- "$pat" "$tmp/err.txt"; then echo "FAIL: '$*': stderr lacks '$pat':"; cat "$tmp/err.txt"; fail=1; return; fi
  echo "ok: $(grep -- "$pat" "$tmp/err.txt" | head -1)"
}
# A run stopped at step 2 leaves a checkpoint whose hash must survive every failure below.
"$dcal" train "${common[@]}" --set train.run_name=r --set train.max_steps=2 > /dev/null || exit 1
ck="$tmp/runs/r/checkpoint.safetensors"; h0=$(sha256sum "$ck" | cut -d' ' -f1)
# Corrupt JPEG / PNG: named by file.
img=$(awk 'NR==1 {print $2}' "$tmp/data/images.txt")
cp "$tmp/data/images/$img" "$tmp/saved.png"; head -c 200 "$tmp/saved.png" > "$tmp/data/images/$img"
expect "$img" -- "$dcal" train "${common[@]}" --set train.run_name=corrupt
# A resume on the changed data is refused by the dataset fingerprint before any image is read.
expect "dataset fingerprint" -- "$dcal" train --resume "$tmp/runs/r"
# data.skip_bad: the run goes on, and the skipped image is counted in metrics and in the summary.
"$dcal" train "${common[@]}" --set train.run_name=skip --set data.skip_bad=true > "$tmp/skip.txt" 2>/dev/null || { echo "FAIL: skip_bad run"; fail=1; }
grep -q '"skipped_images":[1-9]' "$tmp/runs/skip/metrics.jsonl" || { echo "FAIL: skipped image not recorded"; fail=1; }
grep -q "unreadable training images were skipped 2 time(s)" "$tmp/skip.txt" || { echo "FAIL: skipped image not reported"; fail=1; }
# Stopped after the first epoch's skip and resumed: the count goes on over the whole run.
"$dcal" train "${common[@]}" --set train.run_name=skip2 --set data.skip_bad=true --set train.max_steps=5 > /dev/null 2>&1
"$dcal" train --resume "$tmp/runs/skip2" --set train.max_steps=0 > "$tmp/skip2.txt" 2>/dev/null
grep -q "unreadable training images were skipped 2 time(s)" "$tmp/skip2.txt" || { echo "FAIL: a resumed run's skip count"; grep skipped "$tmp/skip2.txt"; fail=1; }
[ "$(grep -o '"skipped_images":[0-9]*' "$tmp/runs/skip2/metrics.jsonl" | tail -1)" = '"skipped_images":2' ] || { echo "FAIL: a resumed run's last skipped_images"; fail=1; }
cp "$tmp/saved.png" "$tmp/data/images/$img"
# Missing image file.
mv "$tmp/data/images/$img" "$tmp/gone.png"
expect "$img" -- "$dcal" train --resume "$tmp/runs/r"
mv "$tmp/gone.png" "$tmp/data/images/$img"
# Truncated checkpoint (on a copy of the run).
cp -r "$tmp/runs/r" "$tmp/runs/t"; head -c 5000 "$ck" > "$tmp/runs/t/checkpoint.safetensors"
expect "checkpoint.safetensors" -- "$dcal" train --resume "$tmp/runs/t"
# Wrong-shape weights for --init: the checkpoint of a D=32 model into a D=48 model.
expect "blocks.0.attn.qkv.weight" -- "$dcal" train "${common[@]}" --set model.dim=48 --set train.run_name=w --init "$ck" --dump-step "$tmp/d.safetensors"
# A missing dataset root names the expected layout and where the data comes from.
expect "get it from https://data.caltech.edu" -- "$dcal" train --dataset cub --data-root "$tmp/no-such-dir"
# Compliance: the paper config with micro-batch 8 refuses to train, naming the rule.
expect "effective_batch" -- "$dcal" train --dataset cub --set train.micro_batch=8 --data-root "$tmp/data"
# NaN loss: start from weights with a NaN in the final LN; training stops with a message.
"$dcal" train "${common[@]}" --dump-step "$tmp/w.safetensors" > /dev/null 2>&1 || exit 1
python3 - "$tmp/w.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
off = 8 + n + h['norm.weight']['data_offsets'][0]
b[off:off + 4] = struct.pack('<f', float('nan'))
open(p, 'wb').write(b)
PY
expect "loss is nan" -- "$dcal" train "${common[@]}" --set train.run_name=nan --init "$tmp/w.safetensors"
h1=$(sha256sum "$ck" | cut -d' ' -f1)
[ "$h0" = "$h1" ] || { echo "FAIL: the earlier checkpoint changed"; fail=1; }
# audit notices data that changed under a run.
"$dcal" audit "$tmp/runs/r" > "$tmp/audit.txt" 2>&1 || { echo "FAIL: audit of an intact run"; cat "$tmp/audit.txt"; fail=1; }
echo "x" >> "$tmp/data/images/$img"
if "$dcal" audit "$tmp/runs/r" > "$tmp/audit.txt" 2>&1; then echo "FAIL: audit missed changed data"; fail=1; fi
grep -q "FAIL dataset: .* fingerprints to" "$tmp/audit.txt" || { echo "FAIL: audit output:"; cat "$tmp/audit.txt"; fail=1; }
cp "$tmp/saved.png" "$tmp/data/images/$img"
# And the untouched run still resumes to the end.
"$dcal" train --resume "$tmp/runs/r" > /dev/null || { echo "FAIL: intact run no longer resumes"; fail=1; }
exit $fail

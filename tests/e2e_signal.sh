#!/usr/bin/env bash
# e2e_signal.sh: SIGTERM and SIGINT during training finish the current step,
# save a checkpoint, exit 0, and the run resumes from it.
set -eu
dcal=$1; src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-sig.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null
for sig in TERM INT; do
  run="$tmp/runs/$sig"
  "$dcal" train --config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs" \
    --set train.run_name=$sig --set optim.epochs=100000 > "$tmp/$sig.txt" 2>&1 &
  pid=$!
  for i in $(seq 1 300); do   # wait for the first logged step
    grep -q '"kind":"train"' "$run/metrics.jsonl" 2>/dev/null && break; sleep 0.1
  done
  kill -$sig $pid
  rc=0; wait $pid || rc=$?
  [ $rc -eq 0 ] || { echo "FAIL: SIG$sig: exit $rc"; cat "$tmp/$sig.txt"; exit 1; }
  grep -q "interrupted" "$tmp/$sig.txt" || { echo "FAIL: SIG$sig: no 'interrupted' message"; cat "$tmp/$sig.txt"; exit 1; }
  [ -s "$run/checkpoint.safetensors" ] || { echo "FAIL: SIG$sig: no checkpoint"; exit 1; }
  step=$(sed -nE 's/.*interrupted.* at step ([0-9]+).*/\1/p' "$tmp/$sig.txt")
  echo "SIG$sig: stopped cleanly at step $step"
  "$dcal" train --resume "$run" --set train.max_steps=$((step + 2)) > "$tmp/$sig.resume.txt" 2>&1
  grep -q "resuming at step $step " "$tmp/$sig.resume.txt" || { echo "FAIL: resume did not start at $step"; cat "$tmp/$sig.resume.txt"; exit 1; }
  grep -q "at step $((step + 2))" "$tmp/$sig.resume.txt" || { echo "FAIL: resume did not continue"; exit 1; }
done

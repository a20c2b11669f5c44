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
# SIGTERM during an evaluation (a large test split; the signal right after the epoch's last
# step): the evaluation finishes, the run stops at the epoch boundary, and the resumed run ends
# with the uninterrupted run's weights and eval, val, best and final rows.
"$dcal" make-synthetic --out "$tmp/big" --classes 10 --per-class 8 --test-per-class 150 --img 36 >/dev/null
ev=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/big" --set train.out_dir="$tmp/runs" --set optim.epochs=2)
"$dcal" train "${ev[@]}" --set train.run_name=evfull > "$tmp/evfull.txt" 2>&1
"$dcal" train "${ev[@]}" --set train.run_name=ev > "$tmp/ev.txt" 2>&1 &
pid=$!
for i in $(seq 1 1000); do grep -q '"kind":"train","step":5,' "$tmp/runs/ev/metrics.jsonl" 2>/dev/null && break; sleep 0.01; done
kill -TERM $pid
rc=0; wait $pid || rc=$?
[ $rc -eq 0 ] || { echo "FAIL: SIGTERM in eval: exit $rc"; cat "$tmp/ev.txt"; exit 1; }
# (A signal landing before the step's own check stops at step 5 before the evaluation: the
# resume then evaluates epoch 1 as its first act. Either way the run must end the same.)
grep -q "interrupted at step 5" "$tmp/ev.txt" || { echo "FAIL: SIGTERM in eval: not stopped at step 5"; cat "$tmp/ev.txt"; exit 1; }
"$dcal" train --resume "$tmp/runs/ev" > "$tmp/ev2.txt" 2>&1 || { cat "$tmp/ev2.txt"; exit 1; }
fin() { sed -nE 's/.*final weights sha256 ([0-9a-f]{64}).*/\1/p' "$1"; }
rows() { grep -E '"kind":"(eval|val|best|final)"' "$1/metrics.jsonl" | sed 's/,"time".*//'; }
[ -n "$(fin "$tmp/evfull.txt")" ] && [ "$(fin "$tmp/ev2.txt")" = "$(fin "$tmp/evfull.txt")" ] || { echo "FAIL: SIGTERM in eval: weights differ"; exit 1; }
[ "$(rows "$tmp/runs/ev")" = "$(rows "$tmp/runs/evfull")" ] || { echo "FAIL: SIGTERM in eval: rows differ"; diff <(rows "$tmp/runs/ev") <(rows "$tmp/runs/evfull"); exit 1; }
echo "SIGTERM in eval: $(grep -o 'interrupted at step 5[^:]*' "$tmp/ev.txt"); resumed to the uninterrupted run's weights and rows"


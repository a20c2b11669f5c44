#!/usr/bin/env bash
# e2e_signal.sh: SIGTERM and SIGINT during training finish the current step,
# save a checkpoint, exit 0, and the run resumes from it; during an evaluation, too, and while
# the evaluation's loader is stuck on a read that never returns.
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

# SIGTERM while the evaluation's loader waits on a read that never returns (a hung network
# filesystem; tests/lib/stuck_read.c, preloaded, turns one test image's open into a pipe nobody
# writes): the stop is honoured within the loader's grace, the checkpoint is saved, no eval row
# is written for the epoch, and the resumed run (no shim) evaluates that epoch first and ends with
# the uninterrupted run's weights and rows; audit passes.
cc -shared -fPIC -o "$tmp/stuck.so" "$src/tests/lib/stuck_read.c" -ldl
st=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs" --set optim.epochs=2
    --set data.workers=1)
stuck=$(awk 'NR == FNR { if ($2 == 0) t[$1] = 1; next } ($1 in t) { print $2; exit }' \
  "$tmp/data/train_test_split.txt" "$tmp/data/images.txt")   # the first test image
"$dcal" train "${st[@]}" --set train.run_name=stfull > "$tmp/stfull.txt" 2>&1
# ASan's runtime must come first among the libraries; the shim is loaded before it here.
DCAL_STUCK_NAME=$stuck DCAL_STUCK_MARK="$tmp/stuck.mark" LD_PRELOAD="$tmp/stuck.so" \
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
  "$dcal" train "${st[@]}" --set train.run_name=st > "$tmp/st.txt" 2>&1 &
pid=$!
for i in $(seq 1 600); do [ -e "$tmp/stuck.mark" ] && break; sleep 0.1; done
[ -e "$tmp/stuck.mark" ] || { echo "FAIL: the evaluation never opened $stuck"; kill -9 $pid; cat "$tmp/st.txt"; exit 1; }
sleep 0.5   # the worker is in read(2) now, the trainer waiting on it
t0=$(date +%s)
kill -TERM $pid
for i in $(seq 1 200); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done   # 20 s: a hang is a failure
if kill -0 $pid 2>/dev/null; then kill -9 $pid; echo "FAIL: SIGTERM on a stuck read: still running after 20 s"; cat "$tmp/st.txt"; exit 1; fi
rc=0; wait $pid || rc=$?
dt=$(($(date +%s) - t0))
[ $rc -eq 0 ] || { echo "FAIL: SIGTERM on a stuck read: exit $rc"; cat "$tmp/st.txt"; exit 1; }
grep -q "still blocked in a read" "$tmp/st.txt" && grep -q "interrupted at step 5 (after epoch 1): checkpoint" "$tmp/st.txt" \
  || { echo "FAIL: SIGTERM on a stuck read: expected the loader's give-up and the checkpoint lines"; cat "$tmp/st.txt"; exit 1; }
! grep -q '"kind":"eval"' "$tmp/runs/st/metrics.jsonl" || { echo "FAIL: a cut evaluation wrote an eval row"; exit 1; }
"$dcal" train --resume "$tmp/runs/st" > "$tmp/st2.txt" 2>&1 || { cat "$tmp/st2.txt"; exit 1; }
grep -q "epoch 1 has no test split evaluation in metrics.jsonl (a stop cut it short): evaluating it now" "$tmp/st2.txt" \
  || { echo "FAIL: the resume did not evaluate epoch 1 first"; cat "$tmp/st2.txt"; exit 1; }
[ -n "$(fin "$tmp/stfull.txt")" ] && [ "$(fin "$tmp/st2.txt")" = "$(fin "$tmp/stfull.txt")" ] \
  || { echo "FAIL: SIGTERM on a stuck read: weights differ"; exit 1; }
[ "$(rows "$tmp/runs/st")" = "$(rows "$tmp/runs/stfull")" ] \
  || { echo "FAIL: SIGTERM on a stuck read: rows differ"; diff <(rows "$tmp/runs/st") <(rows "$tmp/runs/stfull"); exit 1; }
"$dcal" audit "$tmp/runs/st" > "$tmp/st.audit.txt" 2>&1 || { echo "FAIL: audit of the resumed run"; cat "$tmp/st.audit.txt"; exit 1; }
echo "SIGTERM on a stuck eval read: stopped in ${dt} s; resumed to the uninterrupted run's weights and rows; audit passes"

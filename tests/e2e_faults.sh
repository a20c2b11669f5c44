#!/usr/bin/env bash
# e2e_faults.sh: crash safety.
#  1. kill -9 at 20 random points of a short run that checkpoints every epoch,
#     keeps the last two and chooses best.safetensors on a validation split,
#     then resume: each time the run ends with weights bitwise equal to an
#     uninterrupted run's, the same metrics rows in the same order (train, eval,
#     val, checkpoint, best, final; clock and memory fields aside) and kept files,
#     and `dcal audit` passes (no duplicate or missing rows, no torn files).
#  2. A full disk (ulimit -f) while a checkpoint is written: the last good
#     checkpoint survives byte for byte and the run exits 1 with a clear error.
# The kill points are drawn from a fixed seed, so a failure can be replayed.
set -eu
dcal=$1; src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-faults.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null
common=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs"
        --set optim.epochs=6 --set train.save_every=1 --set train.eval_every=1 --set train.keep_last=2
        --set data.val_fraction=0.25 --allow-deviation val_split)
final() { sed -nE 's/.*final weights sha256 ([0-9a-f]{64}).*/\1/p' "$1"; }
. "$src/tests/lib/rundir.sh"   # record_rows, kept, ms

t0=$(ms)
"$dcal" train "${common[@]}" --set train.run_name=full > "$tmp/full.txt" 2>/dev/null
dur=$(( $(ms) - t0 ))
want=$(final "$tmp/full.txt")
[ -n "$want" ] || { echo "FAIL: the uninterrupted run did not finish"; cat "$tmp/full.txt"; exit 1; }
want_best=$(record_rows "$tmp/runs/full"); want_kept=$(kept "$tmp/runs/full")
[ -n "$want_best" ] || { echo "FAIL: the uninterrupted run chose no best.safetensors"; exit 1; }
echo "uninterrupted: $dur ms, final weights $want; $(echo "$want_best" | wc -l) metrics rows; files $want_kept"

for i in $(seq 1 20); do
  name=k$i
  delay=$(awk -v s="$i" -v d="$dur" 'BEGIN { srand(s); printf "%.3f", (0.1 + 0.85 * rand()) * d / 1000 }')
  "$dcal" train "${common[@]}" --set train.run_name=$name > "$tmp/$name.txt" 2>&1 &
  pid=$!
  sleep "$delay"
  kill -9 $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  if grep -q "final weights" "$tmp/$name.txt"; then
    got=$(final "$tmp/$name.txt"); how="finished before the kill"
  elif [ ! -f "$tmp/runs/$name/manifest.json" ]; then
    # Killed before the run was recorded (on a loaded machine start-up can outlast 10% of the
    # run): nothing to resume, and resume says so; the same command starts it again, in the
    # same directory (its leftovers are dcal's own).
    "$dcal" train --resume "$tmp/runs/$name" > "$tmp/$name.resume.txt" 2>&1 &&
      { echo "FAIL: kill $i (after ${delay}s): resumed a run with no manifest"; exit 1; }
    grep -qE "no run (there|to resume here)" "$tmp/$name.resume.txt" ||
      { echo "FAIL: kill $i (after ${delay}s): unclear resume error"; cat "$tmp/$name.resume.txt"; exit 1; }
    "$dcal" train "${common[@]}" --set train.run_name=$name > "$tmp/$name.again.txt" 2>&1 ||
      { echo "FAIL: kill $i (after ${delay}s): starting again failed"; cat "$tmp/$name.again.txt"; exit 1; }
    got=$(final "$tmp/$name.again.txt"); how="killed before the run was recorded; started again"
  else
    "$dcal" train --resume "$tmp/runs/$name" > "$tmp/$name.resume.txt" 2>&1 ||
      { echo "FAIL: kill $i (after ${delay}s): resume failed"; cat "$tmp/$name.txt" "$tmp/$name.resume.txt"; exit 1; }
    got=$(final "$tmp/$name.resume.txt")
    how=$(grep -oE "resuming at step [0-9]+|no checkpoint yet[^;]*" "$tmp/$name.resume.txt" | head -1)
  fi
  [ "$got" = "$want" ] || { echo "FAIL: kill $i (after ${delay}s): final weights $got, uninterrupted $want"; exit 1; }
  [ "$(record_rows "$tmp/runs/$name")" = "$want_best" ] ||
    { echo "FAIL: kill $i (after ${delay}s): metrics rows differ"; diff <(record_rows "$tmp/runs/$name") <(echo "$want_best"); exit 1; }
  [ "$(kept "$tmp/runs/$name")" = "$want_kept" ] ||
    { echo "FAIL: kill $i (after ${delay}s): files $(kept "$tmp/runs/$name"), uninterrupted $want_kept"; exit 1; }
  "$dcal" audit "$tmp/runs/$name" > "$tmp/$name.audit.txt" 2>&1 ||
    { echo "FAIL: kill $i (after ${delay}s): audit"; cat "$tmp/$name.audit.txt"; exit 1; }
  echo "kill $i after ${delay}s: ${how:-resumed}; weights equal, audit passes"
done

# Full disk: a run with a checkpoint resumes under a file-size limit too small for the
# next checkpoint. The write fails, the old checkpoint stays, the exit is 1 with a message.
"$dcal" train "${common[@]}" --set train.run_name=disk --set train.max_steps=5 > /dev/null 2>&1
ck="$tmp/runs/disk/checkpoint.safetensors"
before=$(sha256sum "$ck" | cut -d' ' -f1)
size_kb=$(( $(stat -c %s "$ck") / 1024 ))
rc=0
( trap '' XFSZ; ulimit -f $(( size_kb / 2 )); exec "$dcal" train --resume "$tmp/runs/disk" --set train.max_steps=0 ) > "$tmp/disk.txt" 2> "$tmp/disk.err" || rc=$?
[ $rc = 1 ] || { echo "FAIL: full disk: exit $rc (want 1)"; cat "$tmp/disk.txt" "$tmp/disk.err"; exit 1; }
[ "$(sha256sum "$ck" | cut -d' ' -f1)" = "$before" ] || { echo "FAIL: full disk: the last checkpoint changed"; exit 1; }
grep -qiE "no space|too large|cannot write" "$tmp/disk.err" || { echo "FAIL: full disk: unclear error"; cat "$tmp/disk.err"; exit 1; }
errs=$(grep -v "WARNING: deviating" "$tmp/disk.err")   # the config's declared deviations are announced first
[ "$(grep -c '' <<<"$errs")" -le 2 ] || { echo "FAIL: full disk: more than a short error"; cat "$tmp/disk.err"; exit 1; }
echo "full disk: exit 1, last checkpoint intact: $errs"
ls "$tmp/runs/disk" | grep -q '\.tmp' && { echo "FAIL: a temporary file was left behind"; ls -la "$tmp/runs/disk"; exit 1; }
"$dcal" train --resume "$tmp/runs/disk" --set train.max_steps=0 > "$tmp/disk2.txt" 2>&1 || { echo "FAIL: resume after the full disk"; cat "$tmp/disk2.txt"; exit 1; }
[ "$(final "$tmp/disk2.txt")" = "$want" ] || { echo "FAIL: the run continued after the full disk differs"; exit 1; }
echo "ok: the run continued after the full disk ends equal"

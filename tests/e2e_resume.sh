#!/usr/bin/env bash
# e2e_resume.sh: a run stopped (mid-epoch, then at an epoch boundary) and
# resumed ends with weights bit-identical to an uninterrupted run (CPU).
set -eu
dcal=$1; src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-resume.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null
common=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs")
hash_of() { sed -nE 's/.*final weights sha256 ([0-9a-f]{64}).*/\1/p' "$1"; }
"$dcal" train "${common[@]}" --set train.run_name=full > "$tmp/full.txt"
"$dcal" train "${common[@]}" --set train.run_name=cut --set train.max_steps=3 > "$tmp/cut1.txt"
grep -q "stopped (train.max_steps) at step 3" "$tmp/cut1.txt"
# A kill -9 between the checkpoint's rename and its ledger row leaves no row for
# the checkpoint: the audit names it, the resume writes it, the audit passes.
m="$tmp/runs/cut/metrics.jsonl"
n=$(grep -n '"kind": *"checkpoint"' "$m" | tail -1 | cut -d: -f1)
[ -n "$n" ] || { echo "FAIL: no checkpoint row in $m"; cat "$m"; exit 1; }
sed -i "${n}d" "$m"
"$dcal" audit "$tmp/runs/cut" > "$tmp/audit0.txt" 2>&1 || true   # the run's only row: a WARN (an older dcal's run)
grep -q 'step 3 has no "checkpoint" row' "$tmp/audit0.txt" || { cat "$tmp/audit0.txt"; exit 1; }
"$dcal" train --resume "$tmp/runs/cut" --set train.max_steps=5 > "$tmp/cut2.txt"   # stops at the epoch boundary
grep -q "at step 5" "$tmp/cut2.txt"
grep -q "no row for the checkpoint at step 3 .*recorded now" "$tmp/cut2.txt" || { cat "$tmp/cut2.txt"; exit 1; }
grep -q '"kind":"checkpoint","step":3,"params_sha256":"[0-9a-f]\{64\}","adam_sha256"' "$m" || { echo "FAIL: step 3's row"; cat "$m"; exit 1; }
"$dcal" audit "$tmp/runs/cut" > "$tmp/audit1.txt" 2>&1 || { echo "FAIL: audit after the repair"; cat "$tmp/audit1.txt"; exit 1; }
grep -q "checkpoint.safetensors: matches the run's record of step 5" "$tmp/audit1.txt" || { cat "$tmp/audit1.txt"; exit 1; }
! grep -q 'no "checkpoint" row' "$tmp/audit1.txt" || { cat "$tmp/audit1.txt"; exit 1; }
"$dcal" train --resume "$tmp/runs/cut" --set train.max_steps=0 > "$tmp/cut3.txt"
a=$(hash_of "$tmp/full.txt"); b=$(hash_of "$tmp/cut3.txt")
echo "uninterrupted $a"; echo "resumed       $b"
[ -n "$a" ] && [ "$a" = "$b" ] || { echo "FAIL: resumed run differs"; cat "$tmp/full.txt" "$tmp/cut3.txt"; exit 1; }
# No checkpoint yet (as a kill before the first save leaves it): the resume starts again from
# step 0, quietly (no ledger or step-file repair of a checkpoint that is not there), and ends
# as the uninterrupted run.
"$dcal" train "${common[@]}" --set train.run_name=none --set train.max_steps=2 --set train.keep_last=2 > /dev/null
rm "$tmp/runs/none/checkpoint.safetensors" "$tmp/runs/none"/checkpoint-step*.safetensors
"$dcal" train --resume "$tmp/runs/none" --set train.max_steps=0 > "$tmp/none.txt" 2> "$tmp/none.err"
grep -q "has no checkpoint yet (stopped before the first save): starting again from step 0" "$tmp/none.txt" || { cat "$tmp/none.txt"; exit 1; }
! grep -v "WARNING: deviating" "$tmp/none.err" | grep -q . || { echo "FAIL: errors on a restart"; cat "$tmp/none.err"; exit 1; }
"$dcal" audit "$tmp/runs/none" > "$tmp/none.audit.txt" 2>&1 || { cat "$tmp/none.audit.txt"; exit 1; }
[ "$(hash_of "$tmp/none.txt")" = "$a" ] || { echo "FAIL: the run started again differs"; exit 1; }
# A stop between two progress lines (20 steps an epoch: a line every 4): the first line after
# the resume averages the whole window, as the uninterrupted run's does.
w=(--set train.accum_steps=1 --set optim.epochs=1 --allow-deviation effective_batch)
"$dcal" train "${common[@]}" "${w[@]}" --set train.run_name=wfull > /dev/null
"$dcal" train "${common[@]}" "${w[@]}" --set train.run_name=wcut --set train.max_steps=6 > /dev/null
"$dcal" train --resume "$tmp/runs/wcut" --set train.max_steps=0 > /dev/null
train_rows() { grep '"kind":"train"' "$1/metrics.jsonl" | sed -E 's/,"img_s".*//'; }
[ "$(train_rows "$tmp/runs/wcut")" = "$(train_rows "$tmp/runs/wfull")" ] ||
  { echo "FAIL: train rows after a stop between progress lines"; diff <(train_rows "$tmp/runs/wcut") <(train_rows "$tmp/runs/wfull"); exit 1; }
[ "$(train_rows "$tmp/runs/wfull" | wc -l)" -ge 5 ] || { echo "FAIL: expected a row every 4 steps"; exit 1; }
# Changing the model on resume is refused.
if "$dcal" train --resume "$tmp/runs/cut" --set model.dim=64 2> "$tmp/err.txt"; then echo "FAIL: resume accepted a model change"; exit 1; fi
grep -q "would change the run" "$tmp/err.txt"
# So is a memory budget: the checkpoint's position counts micro-batches of the run's size.
if "$dcal" train --resume "$tmp/runs/cut" --max-memory 8G 2> "$tmp/err.txt"; then echo "FAIL: resume accepted --max-memory"; exit 1; fi
grep -q "cannot change a resumed run's micro-batch" "$tmp/err.txt" || { cat "$tmp/err.txt"; exit 1; }
# A new run may not reuse an existing run directory.
if "$dcal" train "${common[@]}" --set train.run_name=full 2> "$tmp/err.txt" > /dev/null; then echo "FAIL: run dir reused"; exit 1; fi
cat "$tmp/err.txt"

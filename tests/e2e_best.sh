#!/usr/bin/env bash
# e2e_best.sh: train.keep_last and best.safetensors in a real run. Without a
# validation split there is no best file and no kept history (today's run
# directory). With data.val_fraction the held-out images leave training, the
# compliance table shows the deviation, the manifest records the split, and
# best.safetensors is chosen on it; keep_last keeps the newest N checkpoints
# across a stop and resume; the audit verifies every file and catches a best
# file that does not match the run's record or was not chosen on a val split.
set -u
dcal=$1; src=$2; fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-best.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null || exit 1
common=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs" --set train.threads=1)
check() {  # check MESSAGE CONDITION...
  local msg=$1; shift
  if "$@"; then echo "ok: $msg"; else echo "FAIL: $msg"; fail=1; fi
}

# 1. The default: no validation split, no best file, no step files.
"$dcal" train "${common[@]}" --set train.run_name=plain --set optim.epochs=1 > "$tmp/plain.txt" 2>&1 || { cat "$tmp/plain.txt"; exit 1; }
check "no best.safetensors without a validation split" test ! -e "$tmp/runs/plain/best.safetensors"
check "keep_last 1 keeps checkpoint.safetensors alone" test -z "$(ls "$tmp/runs/plain" | grep checkpoint-step)"
check "no val rows" test "$(grep -c '"kind":"val"' "$tmp/runs/plain/metrics.jsonl")" = 0

# 2. A split without declaring it is refused by the gate (it changes the paper's training set).
"$dcal" train "${common[@]}" --set train.run_name=undeclared --set data.val_fraction=0.25 > /dev/null 2> "$tmp/err.txt"
check "an undeclared val split is refused" grep -q "^dcal: compliance rule 'val_split' fails" "$tmp/err.txt"

# 3. Held out, stopped at step 4, resumed to the end (3 epochs of 3 steps): 20 of 80 images held out.
val=(--set train.run_name=val --set data.val_fraction=0.25 --set train.keep_last=2 --set optim.epochs=3 --allow-deviation val_split)
"$dcal" train "${common[@]}" "${val[@]}" --set train.max_steps=4 > "$tmp/val1.txt" 2>&1 || { cat "$tmp/val1.txt"; exit 1; }
run="$tmp/runs/val"
"$dcal" train --resume "$run" --set train.max_steps=0 > "$tmp/val2.txt" 2>&1 || { cat "$tmp/val2.txt"; exit 1; }
check "the held-out images leave training" grep -q "synthetic: 60 train / 20 test images" "$tmp/val1.txt"
check "the split is announced" grep -q "validation split: 20 training images held out (data.val_fraction 0.25 per class, seed 7)" "$tmp/val1.txt"
check "compliance.txt shows the deviation" grep -qE "^val_split +DEVIATION +whole training split \(data.val_fraction 0\) +0.25 of each class held out" "$run/compliance.txt"
check "the manifest records the split" grep -qE '"val_split": *\{"fraction": *0.25, *"per": *"class", *"seed": *7, *"n": *20, *"sha256": *"[0-9a-f]{64}"\}' "$run/manifest.json"
check "a val row per epoch" test "$(grep -c '"kind":"val"' "$run/metrics.jsonl")" = 3
check "best chosen on the validation split" grep -q "best.safetensors: epoch .* on the validation split (chosen there, never on test)" "$tmp/val1.txt"
kept=$(cd "$run" && ls checkpoint-step*.safetensors | tr '\n' ' ')
check "keep_last 2 keeps the newest two across the resume (got: $kept)" test "$kept" = "checkpoint-step00000006.safetensors checkpoint-step00000009.safetensors "
check "the newest kept file is the latest checkpoint" cmp -s "$run/checkpoint.safetensors" "$run/checkpoint-step00000009.safetensors"
"$dcal" audit "$run" > "$tmp/audit.txt" 2>&1
check "audit passes" grep -q "audit passed" "$tmp/audit.txt"
check "audit verifies best.safetensors as weights" grep -q "^OK   $run/best.safetensors: step [0-9]*: [0-9]* tensors (params; the best on the validation split)" "$tmp/audit.txt"
check "audit finds best.safetensors the first highest val accuracy" grep -q "^OK   $run/best.safetensors: the first highest validation accuracy in metrics.jsonl" "$tmp/audit.txt"
check "audit matches best.safetensors to its row" grep -q "^OK   $run/best.safetensors: matches the run's record" "$tmp/audit.txt"
check "audit checks each kept file against its row" grep -q "^OK   $run/checkpoint-step00000006.safetensors: matches the run's record of step 6" "$tmp/audit.txt"
# Stopped in the last epoch and resumed: the resumed run still knows the best so far
# (it must not take a worse last epoch for the best): the same best as uninterrupted.
"$dcal" train "${common[@]}" "${val[@]}" --set train.run_name=val7 --set train.max_steps=7 > /dev/null 2>&1
"$dcal" train --resume "$tmp/runs/val7" --set train.max_steps=0 > /dev/null 2>&1
"$dcal" train "${common[@]}" "${val[@]}" --set train.run_name=whole > /dev/null 2>&1
best_rows() { grep '"kind":"best"' "$1/metrics.jsonl" | sed 's/,"time".*//'; }
check "a resume keeps the best so far (rows: $(best_rows "$tmp/runs/val7" | cut -c1-40 | tr '\n' ' '))" \
  test "$(best_rows "$tmp/runs/val7")" = "$(best_rows "$tmp/runs/whole")"
# Killed between an epoch's checkpoint and its better best.safetensors: the resume saves it
# from the checkpoint (the same weights), so the run ends with the uninterrupted run's best.
# Made from the whole run: its kept checkpoint of step 6 (epoch 2's end, which beats epoch 1
# here) as the latest, epoch 1's best file (from a run stopped in epoch 2), no step-6 best row.
"$dcal" train "${common[@]}" "${val[@]}" --set train.run_name=pend1 --set train.max_steps=4 > /dev/null 2>&1
cp -r "$tmp/runs/whole" "$tmp/runs/pend"
if [ "$(best_rows "$tmp/runs/pend" | grep -c '"step":6,')" = 1 ] && [ "$(best_rows "$tmp/runs/pend1" | tail -1 | grep -c '"step":3,')" = 1 ]; then
  cp "$tmp/runs/pend/checkpoint-step00000006.safetensors" "$tmp/runs/pend/checkpoint.safetensors"
  cp "$tmp/runs/pend1/best.safetensors" "$tmp/runs/pend/"
  n=$(grep -n '"kind":"best","step":6,' "$tmp/runs/pend/metrics.jsonl" | cut -d: -f1)
  sed -i "${n}d" "$tmp/runs/pend/metrics.jsonl"
  "$dcal" train --resume "$tmp/runs/pend" --set train.max_steps=0 > "$tmp/pend.txt" 2>&1
  check "the resume saves the pending best" grep -q "epoch 2's validation accuracy (.*) beat best.safetensors, but the run stopped before saving it: saved now" "$tmp/pend.txt"
  check "the pending best ends as uninterrupted" test "$(best_rows "$tmp/runs/pend")" = "$(best_rows "$tmp/runs/whole")"
  "$dcal" audit "$tmp/runs/pend" > "$tmp/pend.audit.txt" 2>&1
  check "the audit passes after the pending best" grep -q "audit passed" "$tmp/pend.audit.txt"
  # A signal during epoch 2's evaluation: the checkpoint is saved, the eval, val and best rows
  # are not. The resume evaluates epoch 2 first, and ends as the uninterrupted run.
  cp -r "$tmp/runs/whole" "$tmp/runs/cut"
  cp "$tmp/runs/cut/checkpoint-step00000006.safetensors" "$tmp/runs/cut/checkpoint.safetensors"
  cp "$tmp/runs/pend1/best.safetensors" "$tmp/runs/cut/"
  sed -i -E '/"kind":"(eval|val|best)","(split":"[a-z]+","step|step)":6,/d' "$tmp/runs/cut/metrics.jsonl"
  check "the cut epoch's rows are gone" test "$(grep -cE '"kind":"(eval|val)".*"step":6,' "$tmp/runs/cut/metrics.jsonl")" = 0
  "$dcal" train --resume "$tmp/runs/cut" --set train.max_steps=0 > "$tmp/cut.txt" 2>&1
  check "the resume evaluates the cut epoch" grep -q "epoch 2 has no test split evaluation in metrics.jsonl (a stop cut it short): evaluating it now" "$tmp/cut.txt"
  check "the cut eval ends as uninterrupted" test "$(best_rows "$tmp/runs/cut")" = "$(best_rows "$tmp/runs/whole")"
  eval_rows() { grep -E '"kind":"(eval|val|final)"' "$1/metrics.jsonl" | sed 's/,"time".*//' | sort; }
  check "the eval, val and final rows are the uninterrupted run's" test "$(eval_rows "$tmp/runs/cut")" = "$(eval_rows "$tmp/runs/whole")"
  # Cut short in the validation split's part: only that part runs again (no second test row).
  cp -r "$tmp/runs/whole" "$tmp/runs/cutv"
  cp "$tmp/runs/cutv/checkpoint-step00000006.safetensors" "$tmp/runs/cutv/checkpoint.safetensors"
  cp "$tmp/runs/pend1/best.safetensors" "$tmp/runs/cutv/"
  sed -i -E '/"kind":"(val|best)","(split":"[a-z]+","step|step)":6,/d' "$tmp/runs/cutv/metrics.jsonl"
  "$dcal" train --resume "$tmp/runs/cutv" --set train.max_steps=0 > "$tmp/cutv.txt" 2>&1
  check "the resume evaluates the cut validation split" grep -q "epoch 2 has no validation split evaluation in metrics.jsonl (a stop cut it short): evaluating it now" "$tmp/cutv.txt"
  check "the val-only redo ends as uninterrupted" test "$(eval_rows "$tmp/runs/cutv")" = "$(eval_rows "$tmp/runs/whole")"
  check "... with the same best" test "$(best_rows "$tmp/runs/cutv")" = "$(best_rows "$tmp/runs/whole")"
else
  echo "FAIL: epoch 2 no longer beats epoch 1 on this data: the pending-best case needs other epochs"; fail=1
fi
"$dcal" eval --checkpoint "$run/best.safetensors" > "$tmp/eval.txt" 2>&1
check "dcal eval reads best.safetensors" grep -q "top-1 SA+GLCA" "$tmp/eval.txt"

# 4. A kill -9 between best.safetensors' rename and its row: the audit names the missing row;
#    the resume writes it from the file, and the audit passes again. One between the last
#    checkpoint and its step file: the resume makes the file.
cp -r "$run" "$tmp/lost"
rm "$tmp/lost/checkpoint-step00000009.safetensors"
n=$(grep -n '"kind":"best"' "$tmp/lost/metrics.jsonl" | tail -1 | cut -d: -f1)
sed -i "${n}d" "$tmp/lost/metrics.jsonl"
"$dcal" audit "$tmp/lost" > "$tmp/audit4.txt" 2>&1
check "a missing best row fails the audit" grep -q "^FAIL $tmp/lost/best.safetensors: step [0-9]* has no \"best\" row" "$tmp/audit4.txt"
"$dcal" train --resume "$tmp/lost" --set train.max_steps=0 > "$tmp/lost.txt" 2>&1 || cat "$tmp/lost.txt"
check "the resume records the best row" grep -q "no row for best.safetensors (step [0-9]*; the run stopped before writing it); recorded now" "$tmp/lost.txt"
"$dcal" audit "$tmp/lost" > "$tmp/audit5.txt" 2>&1
kept=$(cd "$tmp/lost" && ls checkpoint-step*.safetensors | tr '\n' ' ')
check "the resume makes the last step file (got: $kept)" test "$kept" = "checkpoint-step00000006.safetensors checkpoint-step00000009.safetensors "
check "the audit passes after the repair" grep -q "^OK   $tmp/lost/best.safetensors: matches the run's record" "$tmp/audit5.txt"
check "the repaired row is the one the run wrote" test "$(grep '"kind":"best"' "$tmp/lost/metrics.jsonl" | tail -1 | sed 's/,"time".*//')" = "$(grep '"kind":"best"' "$run/metrics.jsonl" | tail -1 | sed 's/,"time".*//')"

# 5. A best file that is not what the run recorded, or in a run without a split, fails the audit.
cp -r "$run" "$tmp/edited"
sed -i -E '/"kind":"best"/s/"params_sha256":"[0-9a-f]{64}"/"params_sha256":"0000000000000000000000000000000000000000000000000000000000000000"/' "$tmp/edited/metrics.jsonl"
"$dcal" audit "$tmp/edited" > "$tmp/audit2.txt" 2>&1
check "an edited best row fails the audit" grep -q "^FAIL $tmp/edited/best.safetensors: hashes differ from the run's record" "$tmp/audit2.txt"
cp -r "$run" "$tmp/choice"   # a val row raised above the chosen epoch's: the file is no longer the rule's choice
n=$(grep -n '"kind":"val"' "$tmp/choice/metrics.jsonl" | tail -1 | cut -d: -f1)
sed -i -E "${n}s/\"acc_combined\":[0-9.]+/\"acc_combined\":1.000000/; ${n}s/\"acc_sa\":[0-9.]+/\"acc_sa\":1.000000/" "$tmp/choice/metrics.jsonl"
"$dcal" audit "$tmp/choice" > "$tmp/audit6.txt" 2>&1
check "a best file that is not the first highest val accuracy fails the audit" grep -q "^FAIL $tmp/choice/best.safetensors: step [0-9]*, but the first highest validation accuracy in metrics.jsonl (100.00%, epoch 3) is at step 9" "$tmp/audit6.txt"
cp "$run/best.safetensors" "$tmp/runs/plain/"
"$dcal" audit "$tmp/runs/plain" > "$tmp/audit3.txt" 2>&1
check "a best file in a run without a val split fails the audit" grep -q "^FAIL $tmp/runs/plain/best.safetensors: not chosen on a validation split" "$tmp/audit3.txt"
exit $fail

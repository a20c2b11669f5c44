#!/usr/bin/env bash
# e2e_train.sh: the README demo end to end — make the synthetic set, train the
# synthetic config on the CPU, and require real learning: the final SA+GLCA
# top-1 on the test split must be well above chance (10 classes: 10%).
# Threshold: 45% (observed: 59% SA+GLCA, 54% SA, 58% GLCA after 12 epochs, ~95 s on 2 cores).
set -eu
dcal=$1; src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-e2e.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 60 --test-per-class 10 --img 72 >/dev/null
start=$(date +%s)
"$dcal" train --config "$src/configs/fgvc/synthetic.yaml" --set data.root="$tmp/data" \
  --set train.out_dir="$tmp/runs" > "$tmp/log.txt" 2> "$tmp/err.txt" || { cat "$tmp/log.txt" "$tmp/err.txt"; exit 1; }
echo "trained in $(( $(date +%s) - start )) s"
grep '^eval' "$tmp/log.txt"
last=$(grep '^eval' "$tmp/log.txt" | tail -1)
first=$(grep '^eval' "$tmp/log.txt" | head -1)
comb() { sed -E 's/.*SA\+GLCA ([0-9.]+)%.*/\1/' <<<"$1"; }
echo "first epoch SA+GLCA $(comb "$first")%, last $(comb "$last")%"
awk -v a="$(comb "$last")" 'BEGIN { exit !(a >= 45) }' || { echo "FAIL: final SA+GLCA accuracy $(comb "$last")% < 45%"; exit 1; }
awk -v a="$(comb "$last")" -v b="$(comb "$first")" 'BEGIN { exit !(a > b) }' || { echo "FAIL: accuracy did not rise"; exit 1; }
# The run directory is complete and passes its own audit.
for f in config.yaml compliance.txt manifest.json metrics.jsonl checkpoint.safetensors; do
  [ -s "$tmp/runs/synthetic/$f" ] || { echo "FAIL: run lacks $f"; exit 1; }
done
"$dcal" audit "$tmp/runs/synthetic" || { echo "FAIL: audit of a fresh run"; exit 1; }
# The SA-only configuration (no GLCA, no PWCA) trains through the same path: one epoch here; the
# baseline's accuracy on the demo's whole budget is long_baseline.sh's (label long, outside CI).
"$dcal" train --config "$src/configs/fgvc/synthetic.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs" \
  --set train.run_name=sa_only --set model.glca_blocks=0 --set model.pwca_blocks=0 --set optim.epochs=1 \
  --set optim.warmup_epochs=0 --allow-deviation glca_blocks > "$tmp/sa.txt" 2> "$tmp/err.txt" \
  || { cat "$tmp/sa.txt" "$tmp/err.txt"; exit 1; }
grep -q '^eval.*top-1 SA [0-9.]*%' "$tmp/sa.txt" || { echo "FAIL: the SA-only run printed no eval line"; cat "$tmp/sa.txt"; exit 1; }
"$dcal" audit "$tmp/runs/sa_only" || { echo "FAIL: audit of the SA-only run"; exit 1; }
# eval on the checkpoint reproduces the last epoch's numbers.
"$dcal" eval --checkpoint "$tmp/runs/synthetic/checkpoint.safetensors" --dataset synthetic --data-root "$tmp/data" > "$tmp/eval.txt"
cat "$tmp/eval.txt"
want=$(comb "$last")
grep -q "top-1 SA+GLCA  ${want}%" "$tmp/eval.txt" || { echo "FAIL: eval differs from training's last eval ($want%)"; exit 1; }

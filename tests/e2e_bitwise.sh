#!/usr/bin/env bash
# e2e_bitwise.sh: refactors must not change a single bit of CPU training.
# Runs (1) --dump-step on the tiny config and (2) a short CPU synthetic demo
# (2 epochs on 160 images, with eval and a checkpoint) and compares their
# sha256s with tests/golden/bitwise.txt; (3) compares two tiny runs, AdamW
# inside backward and after it (train.update_in_backward), with each other. The golden values are tied to the CPU
# kind and the OpenBLAS build they were made with (recorded in that file, one block per kind):
# on a kind with no block the test skips (77) and says how to add one.
# Regenerate (only when CPU numerics change on purpose, and say why in the commit):
#   DCAL_GOLDEN_WRITE=1 ctest -R e2e_bitwise
set -eu
dcal=$1; src=$2
golden="$src/tests/golden/bitwise.txt"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-bitwise.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=2

# (1) the first optimizer step of the tiny config: inputs, pairing, selection, logits, losses, every gradient.
"$dcal" make-synthetic --out "$tmp/tinydata" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null
"$dcal" train --config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/tinydata" \
  --dump-step "$tmp/dump.safetensors" >/dev/null 2>&1
dump=$(sha256sum "$tmp/dump.safetensors" | cut -d' ' -f1)

# (3, on any kind) train.update_in_backward: at accumulation 1, AdamW updating each block inside
# backward gives the same steps and weights as updating the whole model after it, and the
# plan holds one block's gradient instead of all of them.
for u in true false; do
  "$dcal" train --config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/tinydata" --set train.out_dir="$tmp/uib" \
    --set train.run_name=$u --set train.micro_batch=16 --set train.accum_steps=1 --set optim.epochs=2 \
    --set train.update_in_backward=$u > "$tmp/uib_$u.txt" 2>&1 || { cat "$tmp/uib_$u.txt"; exit 1; }
done
cmp "$tmp/uib/true/steps.tsv" "$tmp/uib/false/steps.tsv" || { echo "FAIL: update in backward changed steps.tsv"; exit 1; }
hash_of() { sed -nE 's/.*final weights sha256 ([0-9a-f]{64}).*/\1/p' "$1"; }
[ -n "$(hash_of "$tmp/uib_true.txt")" ] && [ "$(hash_of "$tmp/uib_true.txt")" = "$(hash_of "$tmp/uib_false.txt")" ] ||
  { echo "FAIL: update in backward changed the final weights"; exit 1; }
[ "$(wc -l < "$tmp/uib/true/steps.tsv")" -gt 2 ] || { echo "FAIL: too few steps to compare"; exit 1; }
plan_grads() { "$dcal" plan --config "$src/configs/fgvc/tiny.yaml" --set train.micro_batch=16 --set train.accum_steps=1 \
  --set train.update_in_backward=$1 | awk '$1 == "grads" { print $3 }'; }
gt=$(plan_grads true); gf=$(plan_grads false)
[ -n "$gt" ] && [ "$gt" -lt "$gf" ] || { echo "FAIL: plan grads $gt (in backward) not below $gf"; exit 1; }
echo "ok: update in backward: same steps and weights; plan grads $gt bytes instead of $gf"

# (2) the synthetic demo, shortened: every step, eval and the checkpoint's weights.
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 16 --test-per-class 4 --img 72 >/dev/null
"$dcal" train --config "$src/configs/fgvc/synthetic.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs" \
  --set optim.epochs=2 --set train.eval_every=1 > "$tmp/log.txt" 2> "$tmp/err.txt" || { cat "$tmp/log.txt" "$tmp/err.txt"; exit 1; }
# The kind: the CPU model and the OpenBLAS build and core type it ran (from the run's manifest),
# and where oneDNN ran the fp32 GEMMs instead (sgemm.c: an AVX-512 CPU that OpenBLAS runs AVX2
# kernels on: a Zen 5 here; a Zen 4 gets OpenBLAS's Cooperlake kernels), its version and kernel,
# since two CPUs named "AMD EPYC" with the same OpenBLAS core can differ in the engine that ran.
blas=$(sed -nE 's/.*"openblas": *"([^"]*)".*/\1/p' "$tmp/runs/synthetic/manifest.json" | head -1)
gemm=$(sed -nE 's/.*GEMM fp32 \((oneDNN [^,]*, fp32 matmul [^ ]*) .*/\1/p' "$tmp/runs/synthetic/manifest.json" | head -1)
kind="$(grep -m1 '^model name' /proc/cpuinfo | sed 's/.*: //') | $blas${gemm:+ | $gemm}"
weights=$(sed -nE 's/.*final weights sha256 ([0-9a-f]{64}).*/\1/p' "$tmp/log.txt")
# The numbers a user reads: losses, lr, gradient norms and accuracies (not timings).
numbers=$(sed -E 's/ [0-9.]+ img\/s ETA [0-9m]+s rss [0-9]+ MiB//; s/ in [0-9.]+ s;/;/' "$tmp/log.txt" |
          grep -E '^(step|eval)' | sha256sum | cut -d' ' -f1)
[ -n "$weights" ] || { echo "FAIL: no final weights hash in the demo log"; cat "$tmp/log.txt"; exit 1; }

now="dump $dump
demo_weights $weights
demo_numbers $numbers"
# The golden file holds one block per kind ("kind K" and its three lines): writing replaces this
# kind's block (or adds one), reading takes it; another kind's values are never compared.
block() { awk -v k="kind $1" '$0 == k { on = 1; next } /^kind / { on = 0 } on && NF == 2' "$golden"; }
if [ "${DCAL_GOLDEN_WRITE:-0}" = 1 ]; then
  others=$(awk -v k="kind $kind" '/^#/ { next } $0 == k { skip = 1; next } /^kind / { skip = 0 } !skip' "$golden" 2>/dev/null)
  { echo "# written by tests/e2e_bitwise.sh (this kind's block on $(date -u +%F)); regenerate only when CPU numerics change on purpose"
    [ -n "$others" ] && echo "$others"; echo "kind $kind"; echo "$now"; } > "$golden.new" && mv "$golden.new" "$golden"
  echo "wrote $golden"; cat "$golden"; exit 0
fi
want=$(block "$kind")
if [ -z "$want" ]; then
  echo "SKIP: no golden values for '$kind' (made for: $(sed -n 's/^kind //p' "$golden" | paste -sd';' -)); add them with DCAL_GOLDEN_WRITE=1"
  exit 77
fi
fail=0
while read -r key val; do
  w=$(sed -n "s/^$key //p" <<<"$want")
  if [ "$w" = "$val" ]; then echo "ok: $key $val"; else echo "FAIL: $key is $val, golden $w"; fail=1; fi
done <<<"$now"
[ $fail = 0 ] || { grep -E '^(step|eval)' "$tmp/log.txt"; exit 1; }

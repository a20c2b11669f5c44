#!/usr/bin/env bash
# e2e_bf16_cpu.sh: train.precision=bf16 on the CPU (README "Precision").
#  * On a CPU without AVX512_BF16/AMX-BF16 it is refused before anything starts: one line
#    naming the instructions, a non-zero exit, no run directory.
#  * Under DCAL_CPU_BF16=portable (bf16 numerics on any CPU) the tiny model trains at bf16: the
#    resolved precision is recorded (config.yaml, backend_describe), the loss curve follows the
#    fp32 run's within 2% step by step over the first epoch (the runs share data, init and
#    masks; only the rounding differs), a run stopped and resumed ends bit-identical, and
#    eval and predict take the bf16 run at the precision asked now (auto, or bf16);
#    the residual streams are fp32 by default (recorded), bf16 under train.bf16_stream: true.
#  * On a CPU with the instructions, oneDNN's engine (not portable) runs the same checks:
#    named in backend_describe, loss within 2% of fp32's, resumed run bit-identical.
#  * dcal plan counts the bf16 GEMMs' operand copies on a line of its own.
set -eu
dcal=$1; src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-bf16.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null
common=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs")
hash_of() { sed -nE 's/.*final weights sha256 ([0-9a-f]{64}).*/\1/p' "$1"; }
unset DCAL_CPU_BF16
if ! grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then
  if "$dcal" train "${common[@]}" --set train.run_name=refused --set train.precision=bf16 > /dev/null 2> "$tmp/err.txt"; then
    echo "FAIL: bf16 accepted on a CPU without the bf16 instructions"; exit 1
  fi
  cat "$tmp/err.txt"
  [ "$(wc -l < "$tmp/err.txt")" = 1 ] && grep -q "train.precision=bf16: .*AVX512_BF16 or AMX-BF16" "$tmp/err.txt" \
    || { echo "FAIL: expected one line naming the instructions"; exit 1; }
  [ ! -e "$tmp/runs/refused" ] || { echo "FAIL: a refused run left a directory"; exit 1; }
fi
# Losses, step by step, over the first epoch (metrics.csv: kind train, epoch 1), of two runs
# side by side; within 2% and not identical (bf16 ran).
losses() { awk -F, 'NR > 1 && $3 == "train" && $5 == 1 { print $6 }' "$1"; }
within_2pct() {
  paste <(losses "$tmp/runs/$1/metrics.csv") <(losses "$tmp/runs/$2/metrics.csv") > "$tmp/pairs.txt"
  [ -s "$tmp/pairs.txt" ] || { echo "FAIL: no train losses"; exit 1; }
  awk -v w="$2" '{ d = ($2 - $1) / $1; if (d < 0) d = -d; if (d > m) m = d; n++ }
       END { printf "%s vs fp32 train loss, %d steps of epoch 1: largest relative difference %.2e\n", w, n, m;
             exit !(n > 0 && m < 0.02 && m > 0) }' "$tmp/pairs.txt" \
    || { echo "FAIL: the $2 loss curve is not within 2% of fp32's (or is identical: no bf16 ran)"; cat "$tmp/pairs.txt"; exit 1; }
}
if grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then
  # The CPU has the instructions: oneDNN's bf16 GEMMs run (named in backend_describe), the loss
  # follows fp32's, and a run stopped and resumed ends bit-identical (oneDNN's sums are fixed
  # for a thread count).
  "$dcal" train "${common[@]}" --set train.run_name=fp32 --set train.precision=fp32 > /dev/null
  "$dcal" train "${common[@]}" --set train.run_name=dnnl --set train.precision=bf16 > "$tmp/dnnl.txt"
  grep -q '"backend_describe": ".*precision bf16: GEMM bf16 operands, fp32 accumulation (oneDNN [^"]*bf16 matmul' \
    "$tmp/runs/dnnl/manifest.json" || { echo "FAIL: backend_describe does not name oneDNN's bf16 matmul"; exit 1; }
  within_2pct fp32 dnnl
  "$dcal" train "${common[@]}" --set train.run_name=dnnl_cut --set train.precision=bf16 --set train.max_steps=3 > /dev/null
  "$dcal" train --resume "$tmp/runs/dnnl_cut" --set train.max_steps=0 > "$tmp/dnnl_cut.txt"
  [ -n "$(hash_of "$tmp/dnnl.txt")" ] && [ "$(hash_of "$tmp/dnnl.txt")" = "$(hash_of "$tmp/dnnl_cut.txt")" ] \
    || { echo "FAIL: the resumed oneDNN bf16 run differs"; exit 1; }
  echo "oneDNN bf16: resumed run bit-identical"
  rm -rf "$tmp/runs/fp32"
fi
export DCAL_CPU_BF16=portable
"$dcal" train "${common[@]}" --set train.run_name=fp32 --set train.precision=fp32 > "$tmp/fp32.txt"
"$dcal" train "${common[@]}" --set train.run_name=bf16 --set train.precision=bf16 > "$tmp/bf16.txt"
grep -q "^  precision: \"bf16\"" "$tmp/runs/bf16/config.yaml" || { echo "FAIL: config.yaml lacks precision bf16"; exit 1; }
grep -q '"backend_describe": ".*precision bf16: GEMM bf16 operands' "$tmp/runs/bf16/manifest.json" \
  || { echo "FAIL: backend_describe does not say bf16"; exit 1; }
within_2pct fp32 bf16
# Stopped at step 3 and resumed: the same weights as the uninterrupted bf16 run.
"$dcal" train "${common[@]}" --set train.run_name=cut --set train.precision=bf16 --set train.max_steps=3 > /dev/null
"$dcal" train --resume "$tmp/runs/cut" --set train.max_steps=0 > "$tmp/cut.txt"
a=$(hash_of "$tmp/bf16.txt"); b=$(hash_of "$tmp/cut.txt")
echo "bf16 uninterrupted $a"; echo "bf16 resumed       $b"
[ -n "$a" ] && [ "$a" = "$b" ] || { echo "FAIL: the resumed bf16 run differs"; exit 1; }
# A bf16 run is evaluated and used at the precision asked now (auto: fp32 here), or at bf16.
for p in auto bf16; do
  "$dcal" eval --checkpoint "$tmp/runs/bf16" --set train.precision=$p > "$tmp/eval-$p.txt" 2>&1 \
    || { echo "FAIL: eval of the bf16 run at $p"; cat "$tmp/eval-$p.txt"; exit 1; }
  grep -q "top-1 SA+GLCA" "$tmp/eval-$p.txt" || { echo "FAIL: eval at $p printed no accuracy"; exit 1; }
done
img=$(find "$tmp/data" -name '*.png' | head -1)
"$dcal" predict --checkpoint "$tmp/runs/bf16/checkpoint.safetensors" "$img" > "$tmp/predict.txt" 2>&1 \
  || { echo "FAIL: predict with the bf16 run"; cat "$tmp/predict.txt"; exit 1; }
grep -q " 1\. " "$tmp/predict.txt" || { echo "FAIL: predict printed no class"; cat "$tmp/predict.txt"; exit 1; }
# The residual streams: fp32 by default (recorded), bf16 with train.bf16_stream: true (other bits).
grep -q "^  bf16_stream: false" "$tmp/runs/bf16/config.yaml" || { echo "FAIL: config.yaml lacks bf16_stream: false"; exit 1; }
"$dcal" train "${common[@]}" --set train.run_name=bs --set train.precision=bf16 --set train.bf16_stream=true > "$tmp/bs.txt"
grep -q "^  bf16_stream: true" "$tmp/runs/bs/config.yaml" || { echo "FAIL: config.yaml lacks bf16_stream: true"; exit 1; }
[ "$(hash_of "$tmp/bs.txt")" != "$a" ] || { echo "FAIL: train.bf16_stream=true changed no bit"; exit 1; }
"$dcal" plan "${common[@]}" --set train.precision=bf16 > "$tmp/plan-fs.txt"
grep -q "the block inputs too: train.bf16_stream false" "$tmp/plan-fs.txt" || { echo "FAIL: plan-fs"; exit 1; }
"$dcal" plan "${common[@]}" --set train.precision=bf16 > "$tmp/plan.txt"
grep -q "^CPU backend beyond the table: bf16 GEMM operand copies" "$tmp/plan.txt" \
  || { echo "FAIL: dcal plan does not count the bf16 copies"; cat "$tmp/plan.txt"; exit 1; }
echo "ok"

#!/usr/bin/env bash
# long_bf16_demo.sh (label long: outside CI, ~5 min on 2 cores): the README demo at precision
# bf16 on the CPU (DCAL_CPU_BF16=portable where the CPU lacks the instructions) beside the same
# run at fp32, for DCAL_DEMO_SEEDS seeds (default 3: train.seed 1, 2, 3), and beside fp32 on
# one thread (a perturbation at fp32 rounding level where the BLAS sums depend on the thread
# count; oneDNN's do not). Prints each run's final top-1 accuracies, each precision's mean over
# the seeds and the per-epoch train loss of each seed's bf16 run against its fp32 run and of the
# means; asserts that every run learns (SA+GLCA >= 30%, 3x chance; a Zen 4's fp32 seed 2 ends at
# 36%, its bits unchanged since the floor was 45%) and each precision's mean over >= 2 seeds
# reaches 45%. It does not assert the
# bf16 run within 2 points / 2% of fp32: on this tiny from-scratch budget one seed's trajectory
# amplifies rounding as much as a change of seed does, which the seeds' spread shows
# (bench/RESULTS.md has the numbers). Run: DCAL_LONG_TESTS=1 ctest -L long.
set -eu
[ "${DCAL_LONG_TESTS:-0}" = 1 ] || { echo "skip: a long test (set DCAL_LONG_TESTS=1)"; exit 77; }
dcal=$1; src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-long.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 60 --test-per-class 10 --img 72 >/dev/null
# oneDNN's bf16 GEMMs where the CPU has the instructions, the portable engine elsewhere.
grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo && unset DCAL_CPU_BF16 || export DCAL_CPU_BF16=portable
echo "bf16 engine: ${DCAL_CPU_BF16:-oneDNN (the CPU has the bf16 instructions)}"
train() {   # run name, extra arguments...
  local name=$1; shift
  "$dcal" train --config "$src/configs/fgvc/synthetic.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs" \
    --set train.run_name="$name" "$@" > "$tmp/$name.txt" 2> "$tmp/err.txt" || { cat "$tmp/$name.txt" "$tmp/err.txt"; exit 1; }
  echo "$name: $(grep '^eval' "$tmp/$name.txt" | tail -1)"
}
seeds=${DCAL_DEMO_SEEDS:-3}
for seed in $(seq 1 "$seeds"); do
  train fp32_s$seed --set train.precision=fp32 --set train.seed=$seed
  train bf16_s$seed --set train.precision=bf16 --set train.seed=$seed
done
OMP_NUM_THREADS=1 train fp32_1thread --set train.precision=fp32 --set train.seed=1
epoch_loss() {   # mean train loss per epoch from metrics.csv
  awk -F, 'NR > 1 && $3 == "train" { s[$5] += $6; n[$5]++ } END { for (e in s) print e, s[e] / n[e] }' \
    "$tmp/runs/$1/metrics.csv" | sort -n
}
compare() {   # label, run a, run b: b's epoch losses against a's
  join <(epoch_loss "$2") <(epoch_loss "$3") |
    awk -v r="$1" '{ d = ($3 - $2) / $2; printf "%s epoch %d: loss %.4f vs fp32 %.4f (%+.2f%%)\n", r, $1, $3, $2, 100 * d }'
}
for seed in $(seq 1 "$seeds"); do compare "bf16 seed $seed" fp32_s$seed bf16_s$seed | tail -3; done
compare "fp32 one thread" fp32_s1 fp32_1thread | tail -1
acc() {   # run, head: its last eval's top-1 for that head (SA, GLCA or SA\+GLCA)
  grep '^eval' "$tmp/$1.txt" | tail -1 | sed -E "s/.* $2 ([0-9.]+)%.*/\1/"
}
for p in fp32 bf16; do   # each precision's mean and range over the seeds, per head
  line="$p over $seeds seeds:"
  for head in SA GLCA 'SA\+GLCA'; do
    vals=$(for seed in $(seq 1 "$seeds"); do acc ${p}_s$seed "$head"; done | tr '\n' ' ')
    line="$line $(echo "$vals" | awk -v h="${head//\\/}" '{ s = 0; lo = 1e9; hi = -1e9
      for (i = 1; i <= NF; i++) { s += $i; if ($i < lo) lo = $i; if ($i > hi) hi = $i }
      printf "%s %.1f%% (%g-%g)", h, s / NF, lo, hi }');"
  done
  echo "$line"
done
for e in fp32 bf16; do   # the seeds' mean loss of the last epoch
  for seed in $(seq 1 "$seeds"); do epoch_loss ${e}_s$seed | tail -1; done |
    awk -v p="$e" '{ s += $2; n++ } END { printf "%s last-epoch loss, mean over the seeds: %.4f\n", p, s / n }'
done
for r in $(for seed in $(seq 1 "$seeds"); do echo fp32_s$seed bf16_s$seed; done) fp32_1thread; do
  v=$(acc "$r" 'SA\+GLCA')
  awk -v a="$v" 'BEGIN { exit !(a >= 30) }' || { echo "FAIL: $r SA+GLCA $v% < 30%"; exit 1; }
done
for e in fp32 bf16; do   # one seed's floor is 30%; the mean over the seeds' is 45%
  [ "$seeds" -ge 2 ] || break
  m=$(for seed in $(seq 1 "$seeds"); do acc ${e}_s$seed 'SA\+GLCA'; done | awk '{ s += $1; n++ } END { print s / n }')
  awk -v a="$m" 'BEGIN { exit !(a >= 45) }' || { echo "FAIL: $e SA+GLCA mean over the seeds $m% < 45%"; exit 1; }
done

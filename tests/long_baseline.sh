#!/usr/bin/env bash
# long_baseline.sh (label long: outside CI, ~2 min on 2 cores): the README demo's SA-only
# baseline — the synthetic config without GLCA and PWCA, on the same data and budget as
# the demo — reported beside DCAL's SA+GLCA top-1; each must learn (>= 45%, chance 10%),
# neither is asserted over the other (README: at this tiny budget both move by 10 points
# with the last bits of the arithmetic). Run: DCAL_LONG_TESTS=1 ctest -L long.
set -eu
[ "${DCAL_LONG_TESTS:-0}" = 1 ] || { echo "skip: a long test (set DCAL_LONG_TESTS=1)"; exit 77; }
dcal=$1; src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-long.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 60 --test-per-class 10 --img 72 >/dev/null
train() {   # run name, extra arguments...
  local name=$1; shift
  "$dcal" train --config "$src/configs/fgvc/synthetic.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs" \
    --set train.run_name="$name" "$@" > "$tmp/$name.txt" 2> "$tmp/err.txt" || { cat "$tmp/$name.txt" "$tmp/err.txt"; exit 1; }
  grep '^eval' "$tmp/$name.txt" | tail -1
}
dcal_last=$(train dcal)
sa_last=$(train sa_only --set model.glca_blocks=0 --set model.pwca_blocks=0 --allow-deviation glca_blocks)
both=$(sed -E 's/.*SA\+GLCA ([0-9.]+)%.*/\1/' <<<"$dcal_last")
sa=$(sed -E 's/.*top-1 SA ([0-9.]+)%.*/\1/' <<<"$sa_last")
echo "SA-only baseline: top-1 $sa% | DCAL: SA+GLCA $both%"
for v in "$sa" "$both"; do awk -v a="$v" 'BEGIN { exit !(a >= 45) }' || { echo "FAIL: top-1 $v% < 45%"; exit 1; }; done

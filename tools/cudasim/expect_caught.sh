#!/usr/bin/env bash
# expect_caught.sh SUITE PLANT: SUITE is the op-case suite built against a backend
# carrying the bug in PLANT (tools/cudasim/planted/). Passes only if the suite
# exits 1 (a clean test failure, not a crash), every result line matching the
# plant's 'rows:' pattern (the planted kernel's rows in its column) is a FAIL,
# and no other line is: the bug is caught by the numbers, and nothing else broke.
set -uo pipefail
suite=$1 plant=$2
rows=$(sed -n 's/^rows: //p' "$plant")
# 'env: NAME=VALUE' lines select the planted kernel (e.g. DCAL_CUDA_ATTN=fa2).
while read -r kv; do [ -n "$kv" ] && export "$kv"; done < <(sed -n 's/^env: //p' "$plant")
[ -n "$rows" ] || { echo "expect_caught: $plant: no 'rows:' line"; exit 2; }
out=$("$suite" 2>&1); rc=$?
results=$(grep -E '^  (cpu|cuda|ref-f64)' <<<"$out")
planted=$(grep -E "$rows" <<<"$results")
n_planted=$(grep -c . <<<"$planted")
n_caught=$(grep -c 'FAIL' <<<"$planted")
n_other=$(grep -vE "$rows" <<<"$results" | grep -c 'FAIL')
echo "expect_caught: $(basename "$plant"): suite exit $rc; $n_caught of $n_planted planted-kernel rows FAIL; $n_other other FAIL lines"
grep 'FAIL' <<<"$planted" | head -3
if [ "$rc" -ne 1 ] || [ "$n_planted" -lt 1 ] || [ "$n_caught" -ne "$n_planted" ] || [ "$n_other" -ne 0 ]; then
  echo "expect_caught: the planted bug was NOT caught as expected; the suite's last lines:"
  tail -40 <<<"$out"
  exit 1
fi

#!/usr/bin/env bash
# expect_failed.sh TEST PLANT: TEST is a graph test (sim_graphs, sim_selftest_graph) built
# against a backend carrying the bug in PLANT (a plant with a 'suite:' line). Passes only if
# TEST fails (non-zero exit) and its output matches the plant's 'expect:' pattern: the bug is
# caught for the reason the plant names, not by some unrelated breakage.
set -uo pipefail
test=$1 plant=$2
want=$(sed -n 's/^expect: //p' "$plant")
[ -n "$want" ] || { echo "expect_failed: $plant: no 'expect:' line"; exit 2; }
while read -r kv; do [ -n "$kv" ] && export "$kv"; done < <(sed -n 's/^env: //p' "$plant")
out=$("$test" 2>&1); rc=$?
echo "expect_failed: $(basename "$plant"): exit $rc"
grep -E "$want" <<<"$out" | head -3
if [ "$rc" -eq 0 ] || ! grep -qE "$want" <<<"$out"; then
  echo "expect_failed: the planted bug was NOT caught as expected ('$want'); the test's last lines:"
  tail -30 <<<"$out"
  exit 1
fi

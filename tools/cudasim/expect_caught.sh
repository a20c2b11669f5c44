#!/usr/bin/env bash
# expect_caught.sh SUITE PLANT: SUITE is the op-case suite built against a backend
# carrying the bug in PLANT (tools/cudasim/planted/). Passes only if the suite
# exits 1 (a clean test failure, not a crash) with at least one FAIL line, and
# every FAIL line matches the plant's 'expect:' pattern (the rows of the planted
# kernel's column), so the bug is caught by the numbers and nothing else broke.
set -uo pipefail
suite=$1 plant=$2
expect=$(sed -n 's/^expect: //p' "$plant")
[ -n "$expect" ] || { echo "expect_caught: $plant: no 'expect:' line"; exit 2; }
out=$("$suite" 2>&1); rc=$?
fails=$(grep -E 'FAIL' <<<"$out" | grep -E '^  (cpu|cuda|ref)' || true)
caught=$(grep -cE "$expect" <<<"$fails" || true)
other=$(grep -vE "$expect" <<<"$fails" | grep -c . || true)
echo "expect_caught: $(basename "$plant"): suite exit $rc, $caught FAIL lines of the planted kernel, $other other"
grep -E "$expect" <<<"$fails" | head -3
if [ "$rc" -ne 1 ] || [ "$caught" -lt 1 ] || [ "$other" -ne 0 ]; then
  echo "expect_caught: the planted bug was NOT caught as expected; suite output follows"
  echo "$out" | tail -40
  exit 1
fi

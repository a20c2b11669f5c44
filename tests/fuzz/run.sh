#!/usr/bin/env bash
# tests/fuzz/run.sh BUILD_DIR SECONDS [HARNESS...]: run each libFuzzer harness
# (default: all) for SECONDS on its seed corpus, two at a time. New inputs go to
# BUILD_DIR/fuzz-corpus/NAME (the seeds in the repository stay as they are);
# a crash, leak, timeout or sanitizer report is saved in BUILD_DIR/fuzz-findings/
# and fails the run (exit 1) after printing the harness's report.
set -euo pipefail
build=${1:?usage: run.sh BUILD_DIR SECONDS [HARNESS...]}
secs=${2:?usage: run.sh BUILD_DIR SECONDS [HARNESS...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(config safetensors cub cars aircraft image)
mkdir -p "$build/fuzz-findings"
one() {   # one harness; its log in BUILD_DIR/fuzz-NAME.log
  local n=$1 max_len=16384
  [ "$n" = image ] && max_len=8192
  mkdir -p "$build/fuzz-corpus/$n"
  # -close_fd_mask=2: dcal's own error lines for rejected inputs are silenced (sanitizer
  # reports still print); -timeout: one input taking 10 s is a finding.
  "$build/fuzz_$n" -max_total_time="$secs" -max_len=$max_len -timeout=10 -rss_limit_mb=2048 \
    -close_fd_mask=2 -print_final_stats=1 -artifact_prefix="$build/fuzz-findings/$n-" \
    "$build/fuzz-corpus/$n" "$here/corpus/$n" >"$build/fuzz-$n.log" 2>&1
}
export -f one
export build secs here
fail=0
printf '%s\n' "${names[@]}" | xargs -P 2 -I{} bash -c 'one {} || { echo "fuzz: {} FAILED"; exit 1; }' || fail=1
for n in "${names[@]}"; do
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$build/fuzz-$n.log" | grep -o '[0-9]*$' || echo "?")
  if grep -qE '^==[0-9]+==ERROR|^SUMMARY: |runtime error:|deadly signal|fuzz target exited' "$build/fuzz-$n.log"; then
    echo "fuzz: $n: FINDING (log: $build/fuzz-$n.log; input under $build/fuzz-findings/)"
    tail -n 60 "$build/fuzz-$n.log"
    fail=1
  else
    echo "fuzz: $n: $runs executions in ${secs}s, no finding"
  fi
done
exit $fail

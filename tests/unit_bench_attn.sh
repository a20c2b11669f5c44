#!/usr/bin/env bash
# unit_bench_attn.sh: build/bench_attn (issue 15's attention benchmark) runs on the CPU
# backend at tiny shapes: the describe() line first, one machine line per case and pass
# (sa, glca, pwca: fwd and fwdbwd; rollout: fwd)
# with positive times, the stated FLOP count (forward 4·B·H·Nq·Nk·hd, forward+backward
# 3.5×) for each case's Nq/Nk, tflops = gflop / ms, GLCA's share of --step-ms; bad
# arguments are refused with one line and exit 2.
set -u
dcal=$1
b=$(dirname "$dcal")/bench_attn
[ -x "$b" ] || { echo "FAIL: $b not built (cmake --build <build> --target bench_attn)"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-battn.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; cat "$tmp/out" 2>/dev/null; exit 1; }

"$b" --backend cpu --B 2 --N 17 --H 2 --hd 8 --reps 3 --warmup 1 --step-ms 50 > "$tmp/out" 2> "$tmp/err" ||
  { cat "$tmp/err"; fail "bench_attn exited $?"; }
head -1 "$tmp/out" | grep -q "^cpu: " || fail "the first line is not the CPU backend's describe() line"
[ "$(grep -c '^attn: ' "$tmp/out")" = 7 ] || fail "expected 7 machine lines (3 cases x 2 passes + rollout fwd)"
# K = floor(0.1·16) = 1: GLCA has 2 queries; PWCA 34 keys.
awk '/^attn: /{for (i = 2; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}
     nq = v["case"] == "glca" ? 2 : 17; nk = v["case"] == "pwca" ? 34 : 17
     want = 4 * 2 * 2 * nq * nk * 8 * (v["pass"] == "fwdbwd" ? 3.5 : 1) / 1e9
     if (v["case"] == "rollout") want = 2 * 2 * 2 * 17 * 17 * (8 + 1) / 1e9
     if (v["Nq"] != nq || v["Nk"] != nk) {print "bad Nq/Nk: " $0; bad = 1}
     if (v["gflop"] / want - 1 > 1e-4 || want / v["gflop"] - 1 > 1e-4) {print "bad gflop (want " want "): " $0; bad = 1}
     if (!(v["ms"] > 0) || !(v["min_ms"] > 0) || v["min_ms"] > v["ms"]) {print "bad times: " $0; bad = 1}
     r = v["tflops"] / (v["gflop"] / v["ms"]); if (r > 1.001 || r < 0.999) {print "tflops != gflop/ms: " $0; bad = 1}
     if (v["case"] == "glca" && v["pass"] == "fwdbwd") {p = v["step_pct"] / (100 * v["ms"] / 50)
       if (!(p > 0.999 && p < 1.001)) {print "bad step_pct: " $0; bad = 1}}
     if (v["prec"] != "fp32" || v["backend"] != "cpu") {print "bad prec/backend: " $0; bad = 1}
     seen[v["case"] "/" v["pass"]] = 1}
     END {if (length(seen) != 7 || !("rollout/fwd" in seen)) {print "a case/pass is missing"; bad = 1}; exit bad}' "$tmp/out" ||
  fail "machine lines"

# One case, one pass.
"$b" --backend cpu --B 1 --N 9 --H 1 --hd 4 --reps 1 --warmup 0 --cases pwca --passes fwd > "$tmp/out" 2>&1 ||
  fail "pwca fwd alone"
[ "$(grep -c '^attn: case=pwca pass=fwd ' "$tmp/out")" = 1 ] && [ "$(grep -c '^attn: ' "$tmp/out")" = 1 ] ||
  fail "--cases pwca --passes fwd ran something else"

expect_usage() {   # message args...
  local msg=$1; shift
  "$b" --backend cpu "$@" > "$tmp/out" 2>&1; local rc=$?
  [ $rc = 2 ] || fail "bench_attn $*: exit $rc, expected 2"
  grep -qF "$msg" "$tmp/out" || fail "bench_attn $*: no '$msg'"
}
expect_usage "bench_attn: --K: 17 selected tokens but only 16 patch tokens (K must be < N)" --N 17 --K 17
expect_usage "bench_attn: --cases: 'sb' is not one of sa glca pwca rollout (comma-separated)" --cases sa,sb
expect_usage "bench_attn: --B: '0' is not an integer in 1..4096" --B 0
expect_usage "bench_attn: --reps: missing value" --reps
expect_usage "bench_attn: --step-ms: '-1' is not a positive number of milliseconds" --step-ms -1
echo "ok: bench_attn's machine lines, FLOP counts and argument checks"

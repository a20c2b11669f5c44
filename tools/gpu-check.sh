#!/usr/bin/env bash
# gpu-check.sh: everything a lent GPU machine should do in one call (ARCHITECTURE.md §8):
# build with CUDA, run the gpu-labelled ctest suites, then the benchmarks, and
# leave every log and result under $OUT (the folder the device run returns).
#
#   bash tools/gpu-check.sh            # OUT defaults to ./gpu-check-out
#   BUILD=build-gpu JOBS=16 bash tools/gpu-check.sh
#
# Exit status: 0 when the build and the gpu tests pass (benchmarks are
# informational), 1 otherwise. A machine without a GPU builds, and its gpu
# tests report "skipped" — that is not a pass of anything, so it exits 1.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/gpu-check-out}
BUILD=${BUILD:-$ROOT/build-gpu}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$OUT"
cd "$ROOT"

step() { echo "== $*" | tee -a "$OUT/summary.txt"; }
: > "$OUT/summary.txt"

step "machine"
{ date -u; uname -a; nvidia-smi 2>&1 || echo "nvidia-smi unavailable"; nvcc --version 2>&1 | tail -2;
  git rev-parse --short=12 HEAD 2>/dev/null; git status --short 2>/dev/null | head -50; } > "$OUT/machine.txt" 2>&1
grep -m1 -E "NVIDIA|unavailable" "$OUT/machine.txt" | tee -a "$OUT/summary.txt"

step "configure + build ($BUILD, -j$JOBS)"
if ! cmake -S "$ROOT" -B "$BUILD" -DDCAL_CUDA=ON -DDCAL_CUDASIM=OFF -DCMAKE_BUILD_TYPE=Release > "$OUT/cmake.log" 2>&1; then
    tail -30 "$OUT/cmake.log"; step "FAIL: configure"; exit 1
fi
build_rc=0
if ! cmake --build "$BUILD" -j"$JOBS" > "$OUT/build.log" 2>&1; then
    build_rc=1
    grep -E "error|Error" "$OUT/build.log" | head -20 | tee -a "$OUT/summary.txt"
    # Device time is scarce: a broken unrelated target should not cost the GPU
    # results, so build the gpu suites alone and go on (the run still fails).
    step "FAIL: full build; building the gpu suites alone"
    for t in "$ROOT"/tests/gpu_*.c "$ROOT"/tests/gradcheck_backend_ops.c; do
        [ -f "$t" ] || continue
        n=$(basename "$t" .c)
        cmake --build "$BUILD" -j"$JOBS" --target "$n" >> "$OUT/build.log" 2>&1 || step "FAIL: cannot build $n"
    done
fi
nw=$(grep -ci "warning" "$OUT/build.log")
step "build done ($nw warning lines)"

# The gpu suites and the op-case table (every op on every backend present, one
# column per CUDA precision; its CUDA columns only run here).
step "ctest -L gpu -R 'gradcheck_backend_ops|unit_adamw_multi|unit_droppath|unit_residual_layernorm|unit_attention_pack'"
(cd "$BUILD" && ctest -L gpu --output-on-failure &&
   ctest -R 'gradcheck_backend_ops|unit_adamw_multi|unit_droppath|unit_residual_layernorm|unit_attention_pack' --output-on-failure -V) \
    > "$OUT/ctest-gpu.log" 2>&1
test_rc=$?
cp "$BUILD/Testing/Temporary/LastTest.log" "$OUT/ctest-gpu-full.log" 2>/dev/null
tail -15 "$OUT/ctest-gpu.log" | tee -a "$OUT/summary.txt"
# Per-op parity numbers (the full output of passing suites lives only in LastTest.log).
grep -h -E "^parity|skipping|^ *[0-9]*: *cuda|not available" "$OUT/ctest-gpu.log" "$OUT/ctest-gpu-full.log" \
    > "$OUT/parity.txt" 2>/dev/null
if grep -q "Skipped\|skipping\|not available here" "$OUT/ctest-gpu.log"; then
    test_rc=1; step "gpu tests were skipped: no usable GPU"
fi

step "benchmarks"
bench_rc=0
if [ -f "$ROOT/bench/run.sh" ]; then
    BUILD="$BUILD" OUT="$OUT" bash "$ROOT/bench/run.sh" "$BUILD" "$OUT" > "$OUT/bench.log" 2>&1 || bench_rc=$?
    tail -20 "$OUT/bench.log" | tee -a "$OUT/summary.txt"
else
    found=0
    for exe in "$BUILD"/bench_*; do
        [ -x "$exe" ] || continue
        found=1
        name=$(basename "$exe")
        step "  $name"
        "$exe" > "$OUT/$name.txt" 2>&1 || bench_rc=$?
        tail -10 "$OUT/$name.txt" | tee -a "$OUT/summary.txt"
    done
    [ $found = 1 ] || step "  no benchmark programs (bench/run.sh or build/bench_*)"
fi
[ $bench_rc = 0 ] || step "a benchmark exited $bench_rc"

if [ $test_rc = 0 ] && [ $build_rc = 0 ]; then step "PASS"; exit 0; fi
[ $build_rc = 0 ] || step "FAIL: full build (see $OUT/build.log)"
step "FAIL: gpu tests (see $OUT/ctest-gpu.log)"
exit 1

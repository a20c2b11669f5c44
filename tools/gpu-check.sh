#!/usr/bin/env bash
# gpu-check.sh: everything a lent GPU machine should do in one call (ARCHITECTURE.md §8),
# in this order, each part bounded in time and writing its results as it goes, so a
# cut-off run still returns the first parts:
#   1. build with CUDA (only the targets below; for the GPU present: DCAL_CUDA_ARCHS)
#   2. parity: the gpu-labelled ctest suites and PARITY_TESTS (the op-case table's CUDA columns),
#      then the demo at bf16 against fp32 and bf16 twice (tests/gpu_demo.sh)
#   3. benchmarks: bench/run.sh (dcal's step against the PyTorch peer, alternately; attention
#      alone against PyTorch's SDPA backends) → OUT/ratio.md
#   4. Nsight Compute on one bench_step iteration (detail metrics per launch configuration,
#      then every kernel's time) → OUT/ncu.csv, OUT/ncu-time.csv, OUT/ncu-top.md
#
#   bash tools/gpu-check.sh                     # OUT defaults to ./gpu-check-out
#   BUDGET=570 JOBS=16 bash tools/gpu-check.sh  # on the device: OUT is set there
#
# OUT holds at most 7 files, as a device call returns at most 8: summary.txt (the log of
# this script), parity.txt, ratio.md, ncu.csv, ncu-time.csv, ncu-top.md and logs.tgz (every
# log: cmake, build, ctest, each benchmark, ncu), refreshed after each part.
#
# Environment: BUDGET seconds for the whole script (570: a device call runs at most 600)
#   BUILD (build-gpu) JOBS (nproc) DCAL_CUDA_ARCHS (default: the entries of CMakeLists.txt's
#   list for the compute capability nvidia-smi reports, e.g. "90" on an H100/H200; the whole
#   fat-binary list when none matches) FULL_BUILD=1 (every target) PARITY_TESTS (ctest -R regex)
#   RUN_PARITY / RUN_BENCH / RUN_NCU (1; 0 skips a part) BENCH_RESERVE (240 s kept for 3-4
#   from the parity part) NCU_RESERVE (120 s kept for 4 from the benchmarks) and bench/run.sh's.
#
# Exit status: 0 when the build and the gpu tests pass (benchmarks and ncu are
# informational), 1 otherwise. A machine without a GPU builds, and its gpu
# tests report "skipped" — that is not a pass of anything, so it exits 1.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/gpu-check-out}
BUILD=${BUILD:-$ROOT/build-gpu}
JOBS=${JOBS:-$(nproc)}
BUDGET=${BUDGET:-570}
PARITY_TESTS=${PARITY_TESTS:-gradcheck_backend_ops|unit_adamw_multi|unit_droppath|unit_residual_layernorm|unit_upload|unit_attention_pack}
BENCH_RESERVE=${BENCH_RESERVE:-240}; NCU_RESERVE=${NCU_RESERVE:-120}
T0=$(date +%s); END=$(( T0 + BUDGET ))
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
mkdir -p "$OUT"
cd "$ROOT" || exit 1

left() { echo $(( END - $(date +%s) )); }
step() { echo "== [$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/summary.txt"; }
pack() { tar czf "$OUT/logs.tgz.part" -C "$LOGDIR" . 2>/dev/null && mv -f "$OUT/logs.tgz.part" "$OUT/logs.tgz"; }
# limit WANT RESERVE: WANT seconds, or fewer so that RESERVE seconds stay before the end (at least 1).
limit() { local l=$(( $(left) - $2 )); [ "$l" -lt "$1" ] || l=$1; [ "$l" -ge 1 ] || l=1; echo "$l"; }
: > "$OUT/summary.txt"

step "machine (budget ${BUDGET}s)"
{ date -u; uname -a; nvidia-smi 2>&1 || echo "nvidia-smi unavailable"; nvcc --version 2>&1 | tail -2;
  git rev-parse --short=12 HEAD 2>/dev/null; git status --short 2>/dev/null | head -50; } > "$LOGDIR/machine.txt" 2>&1
grep -m1 -E "NVIDIA H|NVIDIA [A-Z]|unavailable" "$LOGDIR/machine.txt" | tee -a "$OUT/summary.txt"
git rev-parse --short=12 HEAD 2>/dev/null | sed 's/^/commit /' | tee -a "$OUT/summary.txt"

# ---- 1. build
# The GPU's entries of the fat-binary list (CMakeLists.txt's DCAL_CUDA_ARCHS default): one
# architecture instead of four cuts nvcc's time by about as much.
cuda_archs() {
    local cc all
    cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
    all=$(sed -n 's/^ *set(DCAL_CUDA_ARCHS_DEFAULT "\([0-9][^"]*\)".*/\1/p' "$ROOT/CMakeLists.txt")
    [ -n "$cc" ] && tr ';' '\n' <<<"$all" | grep -E "^${cc}([a-z]|-|$)" | paste -sd';'
}
ARCHS=${DCAL_CUDA_ARCHS:-$(cuda_archs)}
# What parts 2-4 run: dcal, the benchmarks, the gpu suites and the parity tests.
targets() {
    local t n
    echo dcal bench_step bench_attn
    for t in "$ROOT"/tests/gpu_*.c; do [ -f "$t" ] && basename "$t" .c; done
    for n in $(tr '|' ' ' <<<"$PARITY_TESTS"); do [ -f "$ROOT/tests/$n.c" ] && echo "$n"; done
}
TARGETS=$(targets | sort -u | tr '\n' ' ')
[ "${FULL_BUILD:-0}" = 1 ] && TARGETS=all
step "configure + build ($BUILD, -j$JOBS, CUDA archs ${ARCHS:-CMakeLists.txt default}; targets: $TARGETS)"
if ! timeout "$(limit 120 60)" cmake -S "$ROOT" -B "$BUILD" -DDCAL_CUDA=ON -DDCAL_CUDASIM=OFF -DCMAKE_BUILD_TYPE=Release \
        ${ARCHS:+-DDCAL_CUDA_ARCHS=$ARCHS} > "$LOGDIR/cmake.log" 2>&1; then
    tail -30 "$LOGDIR/cmake.log" | tee -a "$OUT/summary.txt"; step "FAIL: configure"; pack; exit 1
fi
build_rc=0
# shellcheck disable=SC2086  # TARGETS is a word list
if ! timeout "$(limit 420 60)" cmake --build "$BUILD" -j"$JOBS" --target $TARGETS > "$LOGDIR/build.log" 2>&1; then
    build_rc=1
    grep -E "error|Error" "$LOGDIR/build.log" | head -20 | tee -a "$OUT/summary.txt"
    # Device time is scarce: one broken target should not cost the others' results.
    step "FAIL: build; building each target alone"
    for t in $TARGETS; do
        timeout "$(limit 300 60)" cmake --build "$BUILD" -j"$JOBS" --target "$t" >> "$LOGDIR/build.log" 2>&1 ||
            step "FAIL: cannot build $t"
    done
fi
nw=$(grep -ci "warning" "$LOGDIR/build.log")
step "build done ($nw warning lines)"
pack

# ---- 2. parity: the gpu suites and the op-case table (every op on every backend present,
# one column per CUDA precision; its CUDA columns only run here).
test_rc=0
if [ "${RUN_PARITY:-1}" = 1 ]; then
    step "ctest -L gpu; ctest -R '$PARITY_TESTS'"
    lim=$(limit 240 "$BENCH_RESERVE")
    (cd "$BUILD" && timeout "$lim" ctest -L gpu -E gpu_demo --timeout "$lim" --output-on-failure; r1=$?
     timeout "$(limit "$lim" "$BENCH_RESERVE")" ctest -R "$PARITY_TESTS" --timeout "$lim" --output-on-failure -V; r2=$?
     [ $r1 = 0 ] && [ $r2 = 0 ]) > "$LOGDIR/ctest-gpu.log" 2>&1
    test_rc=$?
    cp "$BUILD/Testing/Temporary/LastTest.log" "$LOGDIR/ctest-gpu-full.log" 2>/dev/null
    tail -15 "$LOGDIR/ctest-gpu.log" | tee -a "$OUT/summary.txt"
    # Per-op parity numbers (the full output of passing suites lives only in LastTest.log).
    grep -h -E "^parity|skipping|^ *[0-9]*: *cuda|not available" "$LOGDIR/ctest-gpu.log" "$LOGDIR/ctest-gpu-full.log" \
        > "$OUT/parity.txt" 2>/dev/null
    if grep -q "Skipped\|skipping\|not available here" "$LOGDIR/ctest-gpu.log"; then
        test_rc=1; step "gpu tests were skipped: no usable GPU"
    fi
    # The demo at bf16 against fp32, and bf16 twice (tests/gpu_demo.sh): three short trainings,
    # after the op table so that a slow demo cannot cost the per-op numbers.
    step "demo: bf16 against fp32 and bf16 twice (ctest -R gpu_demo)"
    (cd "$BUILD" && timeout "$(limit 180 "$BENCH_RESERVE")" ctest -R gpu_demo --output-on-failure -V) \
        > "$LOGDIR/demo.log" 2>&1 || test_rc=1
    grep -E "^[0-9]+: (bf16|fp32|top-1|loss curve|two bf16|FAIL|ok|skip)" "$LOGDIR/demo.log" | cut -d' ' -f2- |
        tee -a "$OUT/summary.txt" >> "$OUT/parity.txt"
    # The FA2 attention kernels (attention_fa2.cu, attention_fa2_bwd.cu; not the default yet): the op table
    # again with DCAL_CUDA_ATTN=fa2, its first real run. Reported, not part of the exit status
    # until it has passed on a device once (then the default may change).
    if [ -x "$BUILD/gradcheck_backend_ops" ]; then
        (cd "$BUILD" && DCAL_CUDA_ATTN=fa2 CK_DEFAULT_TIMEOUT=600 timeout "$(limit 120 "$BENCH_RESERVE")" \
            ./gradcheck_backend_ops) > "$LOGDIR/ops-fa2.log" 2>&1 &&
            step "op table with DCAL_CUDA_ATTN=fa2 (informational): PASS" ||
            step "op table with DCAL_CUDA_ATTN=fa2 (informational): FAIL (logs.tgz: ops-fa2.log)"
        { echo "# DCAL_CUDA_ATTN=fa2"; grep -E "^  \(cuda|^  cuda-bf16 +(SA|GLCA|PWCA)" "$LOGDIR/ops-fa2.log"; } \
            >> "$OUT/parity.txt"
    fi
    pack
else
    test_rc=2; step "parity skipped (RUN_PARITY=0)"
fi

# ---- 3. benchmarks (bench/run.sh keeps to DEADLINE, packing after each measurement)
if [ "${RUN_BENCH:-1}" = 1 ]; then
    step "benchmarks (bench/run.sh; $(( $(left) - NCU_RESERVE ))s)"
    DEADLINE=$(( END - NCU_RESERVE )) \
        PACK="tar czf '$OUT/logs.tgz.part' -C '$LOGDIR' . 2>/dev/null && mv -f '$OUT/logs.tgz.part' '$OUT/logs.tgz'" \
        bash "$ROOT/bench/run.sh" "$BUILD" "$OUT" "$LOGDIR/bench" > "$LOGDIR/bench.log" 2>&1
    step "benchmarks exited $?"
    grep "^run.sh:" "$LOGDIR/bench.log" | cut -c1-200 | tee -a "$OUT/summary.txt"
    pack
fi

# ---- 4. Nsight Compute on one training step
ncu_check() {   # CSV LOG: status 1, after one line saying why, when ncu profiled no kernel into CSV
    local rows; rows=$(grep -c '^"[0-9]' "$1" 2>/dev/null)
    if grep -q "ERR_NVGPUCTRPERM" "$@" 2>/dev/null; then
        step "ncu: no permission to read the GPU's performance counters (ERR_NVGPUCTRPERM: needs root or the driver's NVreg_RestrictProfilingToAdminUsers=0); skipped"
    elif grep -q "LibraryNotLoaded" "$@" 2>/dev/null; then
        step "ncu: the profiler could not initialise (LibraryNotLoaded; seen on gVisor machines); skipped"
    elif grep -q "==ERROR==" "$@" 2>/dev/null; then
        step "ncu: $(grep -h -m1 "==ERROR==" "$@" | cut -c1-200)"   # may concern one kernel only
    fi
    [ "${rows:-0}" -gt 0 ] && return 0
    step "ncu: no kernel profiled into $(basename "$1") (see $(basename "$2") in logs.tgz)"
    return 1
}
ncu_run() {   # SECONDS CSV ARGS...: ncu on one bench_step iteration, its report to CSV
    local s=$1 csv=$2; shift 2
    # SIGINT first: ncu then ends the application and still writes what it profiled.
    timeout -s INT -k 20 "$s" "$NCU" "${NCU_OPTS[@]}" "$@" --log-file "$csv" \
        "$BUILD/bench_step" 448 16 0 cuda 1 0 --warmup 0 > "$LOGDIR/$(basename "$csv" .csv)-app.log" 2>&1
    local rc=$? n
    n=$(grep -c '^"[0-9]' "$csv" 2>/dev/null)
    step "ncu $(basename "$csv"): exit $rc in at most ${s}s, ${n:-0} kernel rows"
}
ncu_metrics() {   # the detail metrics this ncu knows on this GPU (base names from --query-metrics)
    local want=(gpu__time_duration.sum dram__bytes.sum dram__bytes_read.sum dram__bytes_write.sum
        sm__throughput.avg.pct_of_peak_sustained_elapsed sm__warps_active.avg.pct_of_peak_sustained_active
        sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active
        sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active
        sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active
        sm__ops_path_tensor_src_bf16_dst_fp32.sum sm__ops_path_tensor_src_bf16_dst_fp32_sparsity_off.sum
        sm__ops_path_tensor_src_tf32_dst_fp32.sum sm__ops_path_tensor_src_tf32_dst_fp32_sparsity_off.sum)
    # (No SASS instruction counts: they need instrumented replays, many times slower.)
    timeout 60 "$NCU" --query-metrics > "$LOGDIR/ncu-query.txt" 2>&1
    local m have=(gpu__time_duration.sum)   # valid: the timing pass used it
    for m in "${want[@]:1}"; do
        grep -Eq "^[[:space:]]*${m%%.*}([[:space:]]|$)" "$LOGDIR/ncu-query.txt" && have+=("$m")
    done
    # An unknown name fails the whole pass: without the query, the four most common only.
    [ ${#have[@]} -gt 2 ] || have=(gpu__time_duration.sum dram__bytes.sum
        sm__throughput.avg.pct_of_peak_sustained_elapsed sm__warps_active.avg.pct_of_peak_sustained_active)
    (IFS=,; echo "${have[*]}")
}
if [ "${RUN_NCU:-1}" = 1 ]; then
    NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -1)
    if [ -z "$NCU" ]; then
        step "ncu: not found (PATH, /usr/local/cuda/bin, /opt/nvidia/nsight-compute); skipped"
    elif [ "$(left)" -lt 40 ]; then
        step "ncu: skipped: $(left)s left"
    else
        step "ncu ($NCU, $(left)s left)"
        help=$("$NCU" --help 2>&1)
        NCU_OPTS=(--csv --page raw)
        for o in "--print-units base" "--print-kernel-base function" "--clock-control none"; do
            grep -q -- "${o%% *}" <<<"$help" && NCU_OPTS+=("${o%% *}" "${o#* }")
        done
        # (a) one launch of each launch configuration with the detail metrics: a bounded
        # number of kernels, so it goes first and its table comes back even if (b) is cut.
        per=(); grep -q -- "--filter-mode" <<<"$help" && per=(--filter-mode per-launch-config)
        ncu_run "$(limit 150 $(( $(left) / 2 )))" "$OUT/ncu.csv" --metrics "$(ncu_metrics)" --cache-control all \
            "${per[@]}" --launch-count "$([ ${#per[@]} -gt 0 ] && echo 1 || echo 300)"
        if ncu_check "$OUT/ncu.csv" "$LOGDIR/ncu-app.log"; then
            # (b) every kernel of the step, one cheap pass each: launches and time per configuration
            ncu_run "$(limit 200 10)" "$OUT/ncu-time.csv" --metrics gpu__time_duration.sum --cache-control none \
                --launch-count 5000
            ncu_check "$OUT/ncu-time.csv" "$LOGDIR/ncu-time-app.log"
            python3 "$ROOT/bench/ncu_top.py" "$OUT/ncu-time.csv" "$OUT/ncu.csv" --out "$OUT/ncu-top.md" \
                >> "$OUT/summary.txt" 2>&1 && sed -n '3,16p' "$OUT/ncu-top.md" | cut -c1-200 | tee -a "$OUT/summary.txt"
        fi
    fi
    pack
fi

step "$(left)s of the ${BUDGET}s budget left"
if [ $test_rc = 0 ] && [ $build_rc = 0 ]; then step "PASS"; exit 0; fi
[ $build_rc = 0 ] || step "FAIL: build (see build.log in logs.tgz)"
[ $test_rc = 2 ] && step "no PASS: the gpu tests did not run (RUN_PARITY=0)"
[ $test_rc = 1 ] && step "FAIL: gpu tests (see ctest-gpu.log in logs.tgz)"
exit 1

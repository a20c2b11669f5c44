#!/usr/bin/env bash
# unit_gpu_check.sh: tools/gpu-check.sh's flow without a GPU, with stand-ins for cmake,
# ctest, nvidia-smi, ncu, bench_step, bench_attn and the peer's python: it configures for
# the GPU's architecture alone (compute capability 9.0 → DCAL_CUDA_ARCHS=90), builds only the
# targets its parts run, runs parity, the benchmarks and two ncu passes (timing over every
# kernel; detail per launch configuration with the metrics ncu's --query-metrics lists),
# leaves at most 7 files in OUT (a device call returns at most 8) with the ratio and the
# top-kernel tables; and when ncu may not read the counters it says so in one line and
# still passes (ncu is informational). Skipped (77) without python3.
set -u
src=$2
command -v python3 > /dev/null || { echo "skip: no python3"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-gpucheck.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; cat "$tmp/out/summary.txt" 2>/dev/null; exit 1; }
has() { grep -qF -- "$2" "$1" || { echo "--- $1:"; cat "$1"; fail "$1 lacks: $2"; }; }
bin=$tmp/bin; mkdir -p "$bin"
export STUB_LOG=$tmp/calls.log STUB_DIR=$tmp/progs
mkdir -p "$STUB_DIR"
cat > "$STUB_DIR/bench_step" <<'X'
#!/bin/bash
[ "$3" = 1 ] && echo "dcal: step_ms=50.0 img_s=320 gflops=345800 peak_mib=3000" || echo "dcal: step_ms=40.0 img_s=400 gflops=432250 peak_mib=8000"
X
cat > "$STUB_DIR/bench_attn" <<'X'
#!/bin/bash
echo "attn: case=sa pass=fwdbwd ms=2.0 tflops=53.0 prec=bf16 backend=cuda"
X
cat > "$bin/cmake" <<'X'
#!/bin/bash
echo "cmake $*" >> "$STUB_LOG"
if [ "$1" = --build ]; then
  mkdir -p "$2/Testing/Temporary"; cp "$STUB_DIR/bench_step" "$STUB_DIR/bench_attn" "$2/"
  echo "parity attention cuda bf16: rel err 2e-3 (limit 1e-2)" > "$2/Testing/Temporary/LastTest.log"
fi
X
cat > "$bin/ctest" <<'X'
#!/bin/bash
echo "ctest $*" >> "$STUB_LOG"; echo "100% tests passed, 0 tests failed out of 1"
X
cat > "$bin/nvidia-smi" <<'X'
#!/bin/bash
case "$*" in *compute_cap*) echo "9.0" ;; *) echo "NVIDIA H200, 143771 MiB" ;; esac
X
cat > "$bin/ncu" <<'X'
#!/bin/bash
echo "ncu $*" >> "$STUB_LOG"
case " $* " in
  *" --help "*) echo "--print-units --print-kernel-base --clock-control --filter-mode"; exit 0 ;;
  *" --query-metrics "*) printf 'Metric Name   Metric Description\ndram__bytes   bytes\nsm__throughput   x\n  sm__warps_active   x\n'; exit 0 ;;
esac
all=" $* "; log=
while [ $# -gt 0 ]; do [ "$1" = --log-file ] && log=$2; shift; done
if [ "${STUB_NCU:-}" = perm ]; then echo "==ERROR== ERR_NVGPUCTRPERM - The user does not have permission" > "$log"; exit 1; fi
H='"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC"'
if [[ $all == *" --filter-mode "* ]]; then
  { echo "$H,\"dram__bytes.sum\",\"gpu__time_duration.sum\""; echo '"","","","","","","","","","","","byte","nsecond"'
    echo '"0","1","b","h","gemm","1","7","(256, 1, 1)","(10, 10, 1)","0","9.0","43000000","600000"'; } > "$log"
else
  { echo "==PROF== Connected"; echo "$H,\"gpu__time_duration.sum\""; echo '"","","","","","","","","","","","nsecond"'
    echo '"0","1","b","h","gemm","1","7","(256, 1, 1)","(10, 10, 1)","0","9.0","600000"'
    echo '"1","1","b","h","ln","1","7","(256, 1, 1)","(100, 1, 1)","0","9.0","100000"'; } > "$log"
fi
X
cat > "$tmp/py" <<'X'
#!/bin/bash
case "$1" in
  *attn_peer.py) echo "attn: impl=cudnn case=sa pass=fwdbwd ms=0.5 tflops=212" ;;
  *peer.py) echo "peer: device=cuda step_ms=68.9 img_s=232 peak_mib=10650" ;;
  *) exec python3 "$@" ;;
esac
X
chmod +x "$bin"/* "$STUB_DIR"/* "$tmp/py"

# Without DCAL_CUDA_ARCHS in the environment (CI sets it): the architecture must come from the GPU.
run() { env -u DCAL_CUDA_ARCHS PATH=$bin:$PATH PYTHON=$tmp/py ROUNDS=1 OUT=$tmp/out BUILD=$tmp/build BUDGET=400 NCU_RESERVE=40 \
        BENCH_RESERVE=60 bash "$src/tools/gpu-check.sh" > "$tmp/gc.txt" 2>&1; }
run || { cat "$tmp/gc.txt"; fail "gpu-check.sh exited $?"; }
has "$STUB_LOG" "-DDCAL_CUDA_ARCHS=90"
grep "^cmake --build" "$STUB_LOG" | head -1 > "$tmp/build.txt"
for t in dcal bench_step bench_attn gpu_model gradcheck_backend_ops unit_adamw_multi; do has "$tmp/build.txt" " $t"; done
grep -q " unit_config" "$tmp/build.txt" && fail "built a target no part runs"
files=$(cd "$tmp/out" && ls | sort | paste -sd' ')
[ "$files" = "logs.tgz ncu-time.csv ncu-top.md ncu.csv parity.txt ratio.md summary.txt" ] || fail "OUT holds: $files"
has "$tmp/out/parity.txt" "parity attention cuda bf16"
has "$tmp/out/ratio.md" "| PyTorch + torch.compile | 68.9 | 232.0 | 10650 |"
has "$tmp/out/ratio.md" "| cudnn | 212.0 TFLOP/s (0.5 ms) |"
grep "^ncu .*--filter-mode" "$STUB_LOG" > "$tmp/detail.txt" || fail "no ncu detail pass"
has "$tmp/detail.txt" "--filter-mode per-launch-config --launch-count 1"
has "$tmp/detail.txt" "--metrics gpu__time_duration.sum,dram__bytes.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active "
has "$tmp/detail.txt" "--clock-control none"
# The detail pass (bounded: one launch per configuration) first, then the timing pass.
grep "^ncu .*--log-file" "$STUB_LOG" | head -1 | grep -q -- "--filter-mode" || fail "the timing pass ran first"
has "$tmp/out/ncu-top.md" '| 1 | `gemm` | (10, 10, 1) × (256, 1, 1) | 1 | 0.600 | 85.7 | 600.0 | 72 |'
tar tzf "$tmp/out/logs.tgz" > "$tmp/tar.txt" || fail "logs.tgz is not a tar.gz"
for f in build.log ctest-gpu.log bench/step-peer-compile-r1.log bench/attn-dcal-bf16.log ncu-query.txt; do has "$tmp/tar.txt" "./$f"; done
has "$tmp/out/summary.txt" "PASS"

rm -rf "$tmp/out"; : > "$STUB_LOG"
STUB_NCU=perm run || { cat "$tmp/gc.txt"; fail "gpu-check.sh failed when ncu had no permission"; }
has "$tmp/out/summary.txt" "ncu: no permission to read the GPU's performance counters (ERR_NVGPUCTRPERM"
[ "$(grep -c '^ncu .*--log-file' "$STUB_LOG")" = 1 ] || fail "ncu's timing pass ran after ERR_NVGPUCTRPERM"
echo "ok: gpu-check.sh builds for the GPU present, runs every part and returns at most 7 files"

#!/usr/bin/env bash
# unit_bench_tools.sh: the GPU evidence tooling, without a GPU (issues 14 and 15):
#  - bench/run.sh, tools/gpu-check.sh, bench/cpu.sh parse (bash -n); the bench/*.py compile;
#  - bench/ratio.py's tables from canned machine lines: best round per row, the ratios
#    against the right dcal row, MFU, a row without result naming its log's last line,
#    the attention table and issue 15's target ratios;
#  - bench/ncu_top.py's top-kernel table from canned ncu CSVs (aggregation per launch
#    configuration, GB/s, TFLOP/s, floor, units row scaling);
#  - bench/run.sh end to end with stand-in programs: the alternation and log names that
#    ratio.py reads, ratio.md written, and parts skipped with a line when the deadline is near.
# Skipped (77) without python3.
set -u
src=$2
command -v python3 > /dev/null || { echo "skip: no python3"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-btools.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
has() { grep -qF -- "$2" "$1" || { cat "$1"; fail "$1 lacks: $2"; }; }

for s in bench/run.sh tools/gpu-check.sh bench/cpu.sh; do bash -n "$src/$s" || fail "$s does not parse"; done
for p in "$src"/bench/*.py; do
  python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' "$p" || fail "$p does not parse"
done

# ---- ratio.py
L=$tmp/logs; mkdir -p "$L"
echo "dcal: step_ms=40.0 fwd_ms=10 img_s=400.0 gflops=432250.0 peak_mib=8000.0 plan_mib=7900" > "$L/step-dcal-ckpt0-r1.log"
echo "dcal: step_ms=44.0 img_s=363.6 gflops=392954.5 peak_mib=8100.0" > "$L/step-dcal-ckpt0-r2.log"
echo "dcal: step_ms=50.0 img_s=320.0 gflops=345800.0 peak_mib=3000.0" > "$L/step-dcal-ckpt1-r1.log"
echo "peer: device=cuda step_ms=100.0 median_ms=101 img_s=160.0 peak_mib=11674 adamw=fused" > "$L/step-peer-eager-r1.log"
echo "peer: device=cuda step_ms=68.9 img_s=232.2 peak_mib=10650 compile=1" > "$L/step-peer-compile-r1.log"
printf 'Traceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory\n' > "$L/step-peer-ckpt-r1.log"
cat > "$L/attn-dcal-bf16.log" <<'X'
cuda: NVIDIA H200
attn: case=sa pass=fwdbwd ms=2.0 tflops=53.0 prec=bf16 backend=cuda
attn: case=pwca pass=fwdbwd ms=3.0 tflops=70.7 prec=bf16 backend=cuda
attn: case=glca pass=fwdbwd ms=0.5 tflops=21.3 prec=bf16 backend=cuda
attn: case=rollout pass=fwd ms=0.3 tflops=40.0 prec=bf16 backend=cuda
X
cat > "$L/attn-peer.log" <<'X'
attn: impl=cudnn case=sa pass=fwdbwd ms=0.5 tflops=212
attn: impl=cudnn case=sa pass=fwdbwd ms=0.6 tflops=180
attn: impl=cudnn case=sa pass=fwdbwd ms=0.4 tflops=265 layout=kernel
attn_peer: impl=cudnn case=glca pass=fwd: unavailable (No available kernel)
X
python3 "$src/bench/ratio.py" "$L" --peak-tflops 1000 > "$tmp/r.md" || fail "ratio.py exited $?"
# dcal: the faster of two rounds; MFU = 432250 GFLOP/s·40 ms = 17.29 TFLOP per step over 40 ms / 1000 TFLOP/s.
has "$tmp/r.md" "| dcal | 40.0 | 400.0 | 8000 | 43.2 | 2 |"
# eager: 100/40 = 2.50 faster, memory 8000/11674 = 0.69; compile: 68.9/40 = 1.72, 8000/10650 = 0.75.
has "$tmp/r.md" "| 100.0 | 160.0 | 11674 | 17.3 | 1 | dcal-ckpt0 | 2.50 | 0.69 |"
has "$tmp/r.md" "| 68.9 | 232.2 | 10650 | 25.1 | 1 | dcal-ckpt0 | 1.72 | 0.75 |"
has "$tmp/r.md" "| PyTorch + per-block checkpointing | no result: torch.OutOfMemoryError: CUDA out of memory |"
has "$tmp/r.md" "dcal checkpointing costs 1.25× the step"
# Columns: only the case/pass pairs measured.
has "$tmp/r.md" "| impl | sa fwd+bwd | glca fwd+bwd | pwca fwd+bwd | rollout fwd |"
has "$tmp/r.md" "| dcal cuda bf16 | 53.0 TFLOP/s (2 ms) | 21.3 TFLOP/s (0.5 ms) | 70.7 TFLOP/s (3 ms) | 40.0 TFLOP/s (0.3 ms) |"
has "$tmp/r.md" "| cudnn | 212.0 TFLOP/s (0.5 ms) | — | — | — |"
has "$tmp/r.md" "SA forward+backward: dcal cuda bf16 / PyTorch cudnn = 0.25×"
has "$tmp/r.md" "SA forward+backward: dcal cuda bf16 / PyTorch cudnn (kernel only) = 0.20×"
has "$tmp/r.md" "| cudnn (kernel only) | 265.0 TFLOP/s (0.4 ms) | — |"
has "$tmp/r.md" "PWCA / SA TFLOP/s (forward+backward, dcal cuda bf16) = 1.33"
has "$tmp/r.md" "GLCA forward+backward = 0.5 ms = 1.25% of dcal's 40.0 ms step"
has "$tmp/r.md" "- attn_peer: impl=cudnn case=glca pass=fwd: unavailable (No available kernel)"
has "$tmp/r.md" "step-peer-compile-r1.log: peer: device=cuda step_ms=68.9"
python3 "$src/bench/ratio.py" "$tmp/none" > "$tmp/o" 2>&1 && fail "ratio.py accepted a missing folder"
has "$tmp/o" "ratio.py: $tmp/none: not a folder of benchmark logs"

# ---- ncu_top.py: ncu's ==PROF== lines, a units row, thousands separators, one scaled column.
H='"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC"'
{ echo "==PROF== Connected to process 1"; echo "$H,\"gpu__time_duration.sum\""; echo '"","","","","","","","","","","","usecond"'
  echo '"0","1","b","h","attn_fwd","1","7","(128, 1, 1)","(25, 12, 16)","0","9.0","1,000"'
  echo '"1","1","b","h","gemm","1","7","(256, 1, 1)","(10, 10, 1)","0","9.0","500"'
  echo '"2","1","b","h","gemm","1","7","(256, 1, 1)","(10, 10, 1)","0","9.0","700"'
  echo '"3","1","b","h","gemm","1","7","(256, 1, 1)","(20, 10, 1)","0","9.0","50"'; } > "$tmp/t.csv"
{ echo "$H,\"dram__bytes.sum\",\"gpu__time_duration.sum\",\"sm__ops_path_tensor_src_bf16_dst_fp32.sum\",\"sm__warps_active.avg.pct_of_peak_sustained_active\""
  echo '"","","","","","","","","","","","byte","nsecond","","%"'
  echo '"0","1","b","h","attn_fwd","1","7","(128, 1, 1)","(25, 12, 16)","0","9.0","4300000000","1000000","79000000000","50"'
  echo '"1","1","b","h","gemm","1","7","(256, 1, 1)","(10, 10, 1)","0","9.0","43000000","600000","","25.5"'; } > "$tmp/d.csv"
python3 "$src/bench/ncu_top.py" "$tmp/t.csv" "$tmp/d.csv" --top 2 > "$tmp/n.md" || fail "ncu_top.py exited $?"
has "$tmp/n.md" "Profiled kernels: 4 launches, 2.25 ms of kernel time"
# gemm (10,10,1): 2 launches, 1.2 ms = 53.3 %, mean 600 µs; 43 MB in 600 µs = 72 GB/s; floor 10 µs.
has "$tmp/n.md" '| 1 | `gemm` | (10, 10, 1) × (256, 1, 1) | 2 | 1.200 | 53.3 | 600.0 | 72 | — | — | 26 | — | 10.0 | 60.0 |'
# attn_fwd: 4.3 GB in 1 ms = 4300 GB/s, 79 TFLOP/s; floor max(1000 µs, 100 µs) = 1000 µs.
has "$tmp/n.md" '| 2 | `attn_fwd` | (25, 12, 16) × (128, 1, 1) | 1 | 1.000 | 44.4 | 1000.0 | 4300 | 79.0 | — | 50 | — | 1000.0 | 1.0 |'
grep -q '(20, 10, 1)' "$tmp/n.md" && fail "--top 2 listed a third kernel"
echo "==ERROR== ERR_NVGPUCTRPERM" > "$tmp/bad.csv"
python3 "$src/bench/ncu_top.py" "$tmp/bad.csv" > "$tmp/o" 2>&1 && fail "ncu_top.py accepted a CSV without rows"
has "$tmp/o" "no ncu CSV rows"

# ---- run.sh with stand-ins for bench_step, bench_attn and python (peer.py, attn_peer.py).
B=$tmp/build; mkdir -p "$B"
cat > "$B/bench_step" <<'X'
#!/bin/bash
echo "cuda: stand-in"; [ "$3" = 1 ] && echo "dcal: step_ms=50.0 img_s=320 gflops=345800 peak_mib=3000" ||
  echo "dcal: step_ms=40.0 img_s=400 gflops=432250 peak_mib=8000"
X
cat > "$B/bench_attn" <<'X'
#!/bin/bash
echo "attn: case=glca pass=fwdbwd ms=0.5 tflops=21.3 prec=bf16 backend=cuda args=$*"
X
cat > "$tmp/py" <<'X'
#!/bin/bash
case "$1" in
  *attn_peer.py) echo "attn: impl=cudnn case=sa pass=fwdbwd ms=0.5 tflops=212" ;;
  *peer.py) ms=100.0; [[ " $* " == *" --compile "* ]] && ms=68.9; [[ " $* " == *" --checkpoint-blocks "* ]] && ms=170.0
            echo "peer: device=cuda step_ms=$ms img_s=1 peak_mib=9000" ;;
  *) exec python3 "$@" ;;
esac
X
chmod +x "$B/bench_step" "$B/bench_attn" "$tmp/py"
PYTHON=$tmp/py ROUNDS=2 BUDGET=300 PEAK_TFLOPS=1000 PACK="touch $tmp/packed" bash "$src/bench/run.sh" "$B" "$tmp/out" "$tmp/rl" > "$tmp/run.txt" 2>&1 ||
  { cat "$tmp/run.txt"; fail "run.sh exited $?"; }
# Alternation: dcal, eager, dcal ckpt, peer ckpt, compile (round 1 only), then round 2.
order=$(grep -o 'run.sh: [a-z0-9-]*:' "$tmp/run.txt" | sed -n '2,$p' | tr -d ':' | cut -d' ' -f2 | paste -sd' ')
want="step-dcal-ckpt0-r1 step-peer-eager-r1 step-dcal-ckpt1-r1 step-peer-ckpt-r1 step-peer-compile-r1 step-dcal-fa2-ckpt0-r1 step-dcal-graphs-ckpt0-r1 step-dcal-ckpt0-r2 step-peer-eager-r2 step-dcal-ckpt1-r2 step-peer-ckpt-r2 attn-dcal-bf16 attn-peer attn-dcal-fp32 attn-dcal-cudnn"
[ "$order" = "$want" ] || fail "run.sh order: $order"
[ -f "$tmp/packed" ] || fail "run.sh never ran PACK"
has "$tmp/out/ratio.md" "| 68.9 | 1.0 | 9000 | 25.1 | 1 | dcal-ckpt0 | 1.72 | 0.89 |"
has "$tmp/out/ratio.md" "| 170.0 | 1.0 | 9000 | 10.2 | 2 | dcal-ckpt1 | 3.40 | 0.33 |"
has "$tmp/rl/attn-dcal-bf16.log" "args=--backend cuda --precision bf16 --step-ms 40.0"
has "$tmp/out/ratio.md" "| cudnn | 212.0 TFLOP/s (0.5 ms) | — |"
# Near the deadline: the step parts are skipped (each says so), attention keeps its reserve.
PYTHON=$tmp/py ROUNDS=1 BUDGET=70 ATTN_RESERVE=60 bash "$src/bench/run.sh" "$B" "$tmp/out2" "$tmp/rl2" > "$tmp/run2.txt" 2>&1
has "$tmp/run2.txt" "step-dcal-ckpt0-r1: skipped:"
has "$tmp/run2.txt" "step-peer-compile-r1: skipped:"
has "$tmp/run2.txt" "attn-dcal-bf16: exit 0"
[ -e "$tmp/rl2/step-dcal-ckpt0-r1.log" ] && fail "a skipped part left a log"
echo "ok: ratio.py, ncu_top.py and run.sh compute and name what the device run will report"

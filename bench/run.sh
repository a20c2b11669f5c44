#!/usr/bin/env bash
# run.sh BUILD OUT [LOGDIR]: the GPU benchmarks tools/gpu-check.sh runs (ARCHITECTURE.md §8;
# issues 14 and 15; bench/README.md), in one call, each part bounded by `timeout`:
#  1. the full DCAL ViT-B/16 448 training step at micro-batch 16 (forward, backward, AdamW),
#     dcal (bench_step, per-block checkpointing off and on) and the PyTorch peer (bf16
#     autocast, SDPA, fused AdamW: eager, per-block checkpointing, torch.compile),
#     ALTERNATELY, ROUNDS rounds (torch.compile in the first COMPILE_ROUNDS only: it
#     compiles for minutes each process);
#  2. attention alone: bench_attn (dcal's kernels, bf16 then fp32) and attn_peer.py
#     (PyTorch's flash, cuDNN, efficient and math SDPA) on SA, GLCA and PWCA.
# After every measurement OUT/ratio.md is rebuilt from the logs (bench/ratio.py) and PACK,
# when set, is run (gpu-check.sh refreshes its logs.tgz), so a cut-off run still returns
# what it measured. Logs: LOGDIR/step-<side>-<variant>-r<round>.log, LOGDIR/attn-*.log.
#
# Time (estimates for an H200 from issue 14's figures, not measurements): a bench_step
# process is ~10 s (set-up + 1 warm-up + STEPS steps of 0.1-0.7 s), a peer process ~15 s
# (torch import, model, 2 warm-up steps), torch.compile ~60-150 s once (started only with
# 100 s + ATTN_RESERVE left, cut at 240 s); a round without
# compile ~60 s; attention ~45 s. ROUNDS=2: ~4-5 min. DEADLINE (epoch seconds; default
# now + BUDGET=420 s) stops starting parts that would not fit: each part is skipped, with a
# line saying so, when less than its expected time plus ATTN_RESERVE is left (the attention
# part keeps its reserve), and its timeout never runs past the deadline.
#
# Environment: ROUNDS (2) COMPILE_ROUNDS (1) STEPS (5) PEAK_TFLOPS (989) PYTHON (python3)
#   DEADLINE / BUDGET  ATTN_RESERVE (60)  PACK (a command)  RUN_STEP (1) RUN_ATTN (1)
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}; OUT=${2:-.}; LOGDIR=${3:-$OUT}
mkdir -p "$OUT" "$LOGDIR"
ROUNDS=${ROUNDS:-2}; COMPILE_ROUNDS=${COMPILE_ROUNDS:-1}; STEPS=${STEPS:-5}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}; PYTHON=${PYTHON:-python3}
DEADLINE=${DEADLINE:-$(( $(date +%s) + ${BUDGET:-420} ))}
ATTN_RESERVE=${ATTN_RESERVE:-60}
export PYTHONUNBUFFERED=1 PEAK_TFLOPS

note() { echo "run.sh: $*" | tee -a "$LOGDIR/run.log"; }
left() { echo $(( DEADLINE - $(date +%s) )); }
refresh() {
    "$PYTHON" "$ROOT/bench/ratio.py" "$LOGDIR" --out "$OUT/ratio.md" --title "dcal vs PyTorch ($(date -u +%FT%TZ))" \
        >> "$LOGDIR/run.log" 2>&1 || note "ratio.py failed (see run.log)"
    [ -z "${PACK:-}" ] || eval "$PACK"
}
# go NAME EXPECTED LIMIT RESERVE CMD...: runs CMD into LOGDIR/NAME.log under a timeout of
# LIMIT seconds, cut to what is left before the deadline less RESERVE; skips it when less
# than EXPECTED + RESERVE is left.
go() {
    local name=$1 expect=$2 limit=$3 reserve=$4; shift 4
    local l; l=$(( $(left) - reserve ))
    if [ "$l" -lt "$expect" ]; then note "$name: skipped: ${l}s left before the deadline, it needs ~${expect}s"; return; fi
    [ "$limit" -le "$l" ] || limit=$l
    local t0; t0=$(date +%s)
    timeout -k 10 "$limit" "$@" > "$LOGDIR/$name.log" 2>&1
    local rc=$?
    [ $rc = 124 ] || [ $rc = 137 ] && echo "run.sh: killed after ${limit}s (timeout)" >> "$LOGDIR/$name.log"
    note "$name: exit $rc in $(( $(date +%s) - t0 ))s: $(grep -E '^(dcal|peer|attn): \S+=' "$LOGDIR/$name.log" | tail -1 | cut -c1-150)"
    refresh
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader \
    > "$LOGDIR/bench-device.txt" 2>&1
note "device: $(head -1 "$LOGDIR/bench-device.txt"); $(left)s before the deadline"

peer=("$PYTHON" "$ROOT/bench/peer.py" --device cuda --precision bf16 --attn sdpa --img 448 --batch 16 --steps "$STEPS")
dcal=("$BUILD/bench_step" 448 16)
if [ "${RUN_STEP:-1}" = 1 ]; then
    for r in $(seq 1 "$ROUNDS"); do
        go "step-dcal-ckpt0-r$r" 15 120 "$ATTN_RESERVE" "${dcal[@]}" 0 cuda "$STEPS" "$PEAK_TFLOPS" --warmup 1
        go "step-peer-eager-r$r" 20 150 "$ATTN_RESERVE" "${peer[@]}" --warmup 2
        go "step-dcal-ckpt1-r$r" 20 150 "$ATTN_RESERVE" "${dcal[@]}" 1 cuda "$STEPS" "$PEAK_TFLOPS" --warmup 1
        go "step-peer-ckpt-r$r" 25 180 "$ATTN_RESERVE" "${peer[@]}" --warmup 2 --checkpoint-blocks
        [ "$r" -le "$COMPILE_ROUNDS" ] && go "step-peer-compile-r$r" 100 240 "$ATTN_RESERVE" "${peer[@]}" --warmup 3 --compile
        # The FA2 attention forward and backward (attention_fa2*.cu; the describe line says which ran).
        [ "$r" = 1 ] && go "step-dcal-fa2-ckpt0-r$r" 15 120 "$ATTN_RESERVE" env DCAL_CUDA_ATTN=fa2 "${dcal[@]}" 0 cuda \
            "$STEPS" "$PEAK_TFLOPS" --warmup 1
        # The recorded step (kernels/graph.cu, DCAL_CUDA_GRAPHS=1): forward + backward as one graph
        # launch, the trainer's path; two warm-ups (the first runs op by op, the second records).
        [ "$r" = 1 ] && go "step-dcal-graphs-ckpt0-r$r" 15 120 "$ATTN_RESERVE" env DCAL_CUDA_GRAPHS=1 "${dcal[@]}" 0 cuda \
            "$STEPS" "$PEAK_TFLOPS" --warmup 2 --graphs
    done
fi

if [ "${RUN_ATTN:-1}" = 1 ]; then
    # GLCA's share of the step: against dcal's fastest no-checkpointing step measured above.
    step_ms=$(grep -h '^dcal: step_ms=' "$LOGDIR"/step-dcal-ckpt0-r*.log 2>/dev/null | sed 's/^dcal: step_ms=\([0-9.]*\).*/\1/' |
              sort -g | head -1)
    go attn-dcal-bf16 10 90 0 "$BUILD/bench_attn" --backend cuda --precision bf16 ${step_ms:+--step-ms "$step_ms"}
    go attn-peer 25 150 0 "$PYTHON" "$ROOT/bench/attn_peer.py" --device cuda
    go attn-dcal-fp32 10 60 0 "$BUILD/bench_attn" --backend cuda --precision fp32 --reps 5 --passes fwdbwd
    # dcal's cuDNN path (train.attention=cudnn): cuDNN's fused SDPA through dcal's packs and graphs.
    go attn-dcal-cudnn 10 60 0 "$BUILD/bench_attn" --backend cuda --precision bf16 --attention cudnn --reps 5
fi
note "done; $(left)s before the deadline"

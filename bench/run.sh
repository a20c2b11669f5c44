#!/usr/bin/env bash
# run.sh BUILD OUT: the GPU benchmarks tools/gpu-check.sh runs (ARCHITECTURE.md §8):
# a full DCAL ViT-B/16 448 training step (forward, backward, AdamW; bench/README.md)
# at micro-batch 16 with and without per-block checkpointing, after one warm-up
# step. MFU against the dense bf16 peak of an H100/H200 SXM (989 TFLOP/s).
# Each run ends with one machine line "dcal: step_ms=… img_s=… peak_mib=… plan_mib=…".
set -u
BUILD=${1:-build}; OUT=${2:-.}
peak=${PEAK_TFLOPS:-989}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/bench_device.txt"
for ckpt in 0 1; do
  "$BUILD/bench_step" 448 16 $ckpt cuda 5 "$peak" 2>&1 | tee -a "$OUT/bench_step.txt"
done
# The same step with the FA2 attention forward (kernels/attention_fa2.cu; the describe line says which ran).
DCAL_CUDA_ATTN=fa2 "$BUILD/bench_step" 448 16 0 cuda 5 "$peak" 2>&1 | tee -a "$OUT/bench_step.txt"

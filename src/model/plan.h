// plan.h: memory planning on top of model_plan (ARCHITECTURE.md §4).
#pragma once
#include <stdio.h>
#include "model/model.h"

// Total bytes for training at micro-batch B (weights, grads, AdamW, activations, workspace).
size_t plan_train_bytes(const ModelConfig *cfg, int B, bool ckpt);
// Print the table for one config (with and without checkpointing).
void plan_print(FILE *f, const ModelConfig *cfg, int B);
// The CUDA backend's largest scratch request in a training step at micro-batch B, beyond the
// table (backend/cuda_scratch_rule.h): the bf16 operand copies of the largest linear layer at
// precision bf16 (cfg->act_bytes 2), 0 at fp32.
size_t plan_cuda_scratch(const ModelConfig *cfg, int B);
// What the CUDA backend allocates beyond the table: its scratch (at least its 1 MiB minimum)
// and cuBLASLt's workspace.
size_t plan_cuda_extra(const ModelConfig *cfg, int B);
// What the CPU backend allocates beyond the table (backend/cpu_scratch_rule.h): at precision
// bf16 its GEMMs' operand copies and the weights' bf16 copies (plan_cpu_copies, 0 at fp32: what Backend.scratch_peak
// measures), and at any precision the larger of attention's per-thread scratch for
// cfg->cpu_threads threads and the rollout's (plan_cpu_op_scratch; only one runs at a time).
size_t plan_cpu_copies(const ModelConfig *cfg, int B);
size_t plan_cpu_op_scratch(const ModelConfig *cfg);
size_t plan_cpu_extra(const ModelConfig *cfg, int B);
// Bytes of the largest parameter tensor (qkv [3D, D], fc1/fc2 D·F, the patch embedding, a head,
// pos_embed): what saving or loading a checkpoint holds at a time (train/checkpoint.c streams).
size_t plan_largest_tensor(const ModelConfig *cfg);
// "8G", "512M", "1.5GiB", "1000000" → bytes (binary units); 0 when malformed.
size_t plan_parse_size(const char *s);

// backend_cpu.c: the CPU backend table (mirrors kernels/backend_cuda.cu). Memory is plain host memory.
#include <string.h>
#include "core/common.h"
#include "backend/cpu/cpu.h"

static void *cpu_alloc(size_t bytes) { return xcalloc(1, bytes); }
static void cpu_free(void *p) { free(p); }
static void cpu_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_copy(void *dst, const void *src, size_t bytes) { memmove(dst, src, bytes); }
static void cpu_sync(void) {}

const Backend backend_cpu = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .copy = cpu_copy,
    .sync = cpu_sync,
    .im2col_forward = cpu_im2col_forward,
    .tokens_forward = cpu_tokens_forward,
    .tokens_backward = cpu_tokens_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .residual_forward = cpu_residual_forward,
    .residual_backward = cpu_residual_backward,
    .gather_rows_forward = cpu_gather_rows_forward,
    .gather_rows_backward = cpu_gather_rows_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .attention_probs_mean = cpu_attention_probs_mean,
    .rollout_step = cpu_rollout_step,
    .topk_select = cpu_topk_select,
    .crossentropy_forward = cpu_crossentropy_forward,
    .crossentropy_backward = cpu_crossentropy_backward,
    .adamw_update = cpu_adamw_update,
    .sumsq = cpu_sumsq,
};

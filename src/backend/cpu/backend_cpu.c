// backend_cpu.c: the CPU backend table (mirrors kernels/backend_cuda.cu). Memory is plain host memory.
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include "core/common.h"
#include "backend/cpu/cpu.h"

char *openblas_get_config(void);   // OpenBLAS; declared here to avoid depending on its header's location

// ---- machine: always available, unlimited memory, fp32 only ----

static int cpu_available(char *why, size_t n) {
    if (n) why[0] = 0;
    return 1;
}

// Host memory is not planned against automatically (ARCHITECTURE.md §4): --max-memory does that.
static size_t cpu_free_memory(void) { return 0; }

// The "model name" line of /proc/cpuinfo, or "unknown CPU".
static void cpu_model(char *out, size_t cap) {
    snprintf(out, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *v = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !v) continue;
        v += 1 + strspn(v + 1, " \t");
        v[strcspn(v, "\n")] = 0;
        snprintf(out, cap, "%s", v);
        break;
    }
    fclose(f);
}

static void cpu_describe(char *buf, size_t n) {
    char model[256];
    cpu_model(model, sizeof model);
    snprintf(buf, n, "cpu: %s, %d OpenMP threads; %s; %s; precision fp32: GEMM fp32 (OpenBLAS sgemm), "
             "attention fp32 (fused, exact softmax)", model, omp_get_max_threads(), openblas_get_config(),
             cpu_vecmath_name());
}

static int cpu_set_precision(const char *p) { return !strcmp(p, "fp32"); }

// ---- memory: plain host memory ----

static void *cpu_alloc(size_t bytes) { return xcalloc(1, bytes); }
static void cpu_free(void *p) { free(p); }
static void cpu_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_copy(void *dst, const void *src, size_t bytes) { memmove(dst, src, bytes); }
static void cpu_sync(void) {}
// Uploads are plain copies here, finished on return: nothing to wait for.
static void cpu_upload(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void cpu_no_wait(const void *p) { (void)p; }
// No recordings on the CPU: a step's ops cost far more than calling them.
static int cpu_graph_run(int key, void (*body)(void *ctx), void *ctx) {
    (void)key;
    body(ctx);
    return 0;
}
static void cpu_graph_reset(void) {}
static size_t cpu_scratch_peak(void) { return 0; }

// ---- Act storage: fp32 (the CPU's one precision), so conversions are copies ----

static size_t cpu_act_bytes(void) { return sizeof(float); }
static void cpu_act_from_f32(Act *dst, const float *src, size_t n) { memmove(dst, src, n * sizeof(float)); }
static void cpu_act_to_f32(float *dst, const Act *src, size_t n) { memmove(dst, src, n * sizeof(float)); }
// The ops with Act inputs or outputs (backend.h): the fp32 functions as they are.
static void cpu_linear_forward_act(Act *out, const Act *inp, const float *w, const float *b, int rows, int IC,
                                   int OC) {
    cpu_linear_forward((float *)out, (const float *)inp, w, b, rows, IC, OC);
}
static void cpu_linear_forward_a(float *out, const Act *inp, const float *w, const float *b, int rows, int IC,
                                 int OC) {
    cpu_linear_forward(out, (const float *)inp, w, b, rows, IC, OC);
}
static void cpu_linear_backward_a(float *dinp, float *dw, float *db, const float *dout, const Act *inp,
                                  const float *w, int rows, int IC, int OC) {
    cpu_linear_backward(dinp, dw, db, dout, (const float *)inp, w, rows, IC, OC);
}
static void cpu_im2col_forward_a(Act *cols, const float *img, int B, int C, int S, int p) {
    cpu_im2col_forward((float *)cols, img, B, C, S, p);
}
static void cpu_layernorm_forward_a(Act *out, float *mean, float *rstd, const float *inp, const float *w,
                                    const float *b, int rows, int D, float eps) {
    cpu_layernorm_forward((float *)out, mean, rstd, inp, w, b, rows, D, eps);
}
static void cpu_gelu_forward_a(Act *out, const Act *inp, size_t n) { cpu_gelu_forward((float *)out, inp, n); }
static void cpu_residual_layernorm_forward_a(float *h, Act *out, float *mean, float *rstd, const float *x,
                                             const float *f, const float *scale, const float *w, const float *b,
                                             int B, int rows_per_b, int D, float eps) {
    cpu_residual_layernorm_forward(h, (float *)out, mean, rstd, x, f, scale, w, b, B, rows_per_b, D, eps);
}
static void cpu_attention_forward_a(const AttnArgs *a, Act *out, float *lse) {
    cpu_attention_forward(a, (float *)out, lse);
}
static void cpu_attention_backward_a(const AttnArgs *a, const AttnGrads *g, const Act *out, const float *lse,
                                     const float *dout) {
    cpu_attention_backward(a, g, (const float *)out, lse, dout);
}

const Backend backend_cpu = {
    .name = "cpu",
    .available = cpu_available,
    .free_memory = cpu_free_memory,
    .scratch_peak = cpu_scratch_peak,
    .describe = cpu_describe,
    .precisions = "fp32",
    .set_precision = cpu_set_precision,
    .set_attention = NULL,   // dcal's attention only
    .act_bytes = cpu_act_bytes,
    .act_from_f32 = cpu_act_from_f32,
    .act_to_f32 = cpu_act_to_f32,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .copy = cpu_copy,
    .sync = cpu_sync,
    .host_alloc = cpu_alloc,
    .host_free = cpu_free,
    .upload = cpu_upload,
    .consumed = cpu_no_wait,
    .host_ready = cpu_no_wait,
    .graph_run = cpu_graph_run,
    .graph_reset = cpu_graph_reset,
    .im2col_forward = cpu_im2col_forward_a,
    .tokens_forward = cpu_tokens_forward,
    .tokens_backward = cpu_tokens_backward,
    .layernorm_forward = cpu_layernorm_forward_a,
    .layernorm_backward = cpu_layernorm_backward,
    .linear_forward = cpu_linear_forward_a,
    .linear_backward = cpu_linear_backward_a,
    .linear_forward_act = cpu_linear_forward_act,
    .gelu_forward = cpu_gelu_forward_a,
    .gelu_backward = cpu_gelu_backward,
    .residual_forward = cpu_residual_forward,
    .residual_backward = cpu_residual_backward,
    .residual_layernorm_forward = cpu_residual_layernorm_forward_a,
    .residual_layernorm_backward = cpu_residual_layernorm_backward,
    .droppath_masks = cpu_droppath_masks,
    .gather_rows_forward = cpu_gather_rows_forward,
    .gather_rows_backward = cpu_gather_rows_backward,
    .attention_forward = cpu_attention_forward_a,
    .attention_backward = cpu_attention_backward_a,
    .rollout_step_attn = cpu_rollout_step_attn,
    .topk_select = cpu_topk_select,
    .crossentropy_forward = cpu_crossentropy_forward,
    .crossentropy_backward = cpu_crossentropy_backward,
    .loss_forward = cpu_loss_forward,
    .loss_backward = cpu_loss_backward,
    .adamw_update = cpu_adamw_update,
    .adamw_multi = cpu_adamw_multi,
    .sumsq = cpu_sumsq,
    .sumsq_into = cpu_sumsq_into,
};

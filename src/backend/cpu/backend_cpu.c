// backend_cpu.c: the CPU backend table (mirrors kernels/backend_cuda.cu). Memory is plain host memory.
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include "core/common.h"
#include "backend/cpu/cpu.h"

char *openblas_get_config(void);   // OpenBLAS; declared here to avoid depending on its header's location

// ---- machine: always available, unlimited memory; fp32, and bf16 where the CPU offers it ----

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
    char model[256], numerics[512];
    cpu_model(model, sizeof model);
    if (cpu_bf16)
        snprintf(numerics, sizeof numerics, "precision bf16: GEMM bf16 operands, fp32 accumulation (%s), %s",
                 cpu_bf16_engine(),
                 cpu_att_bf16() == CPU_ATT_AMX
                     ? "attention on AMX bf16 tiles (fused, exact fp32 softmax; P, dS, dO rounded to bf16)"
                 : cpu_att_bf16() == CPU_ATT_DP
                     ? "attention on AVX512_BF16 dot products (vdpbf16ps; fused, exact fp32 softmax; P, dS, dO "
                       "rounded to bf16)"
                     : "attention fp32 on bf16 q/k/v (fused, exact softmax)");
    else
        snprintf(numerics, sizeof numerics, "precision fp32: GEMM fp32 (%s), attention fp32 (fused, exact softmax)",
                 cpu_sgemm_engine());
    snprintf(buf, n, "cpu: %s, %d OpenMP threads; %s; %s; %s", model, omp_get_max_threads(), openblas_get_config(),
             cpu_vecmath_name(), numerics);
}

// "fp32", and " bf16" after it where this CPU offers bf16 (bf16.c; fp32 stays first, so
// train.precision=auto is fp32 here); filled before main. why: the reason when it is not.
static char cpu_precisions[16] = "fp32", cpu_bf16_why[512];
__attribute__((constructor)) static void cpu_precisions_init(void) {
    if (cpu_bf16_offered(cpu_bf16_why, sizeof cpu_bf16_why)) strcat(cpu_precisions, " bf16");
}
static const char *cpu_precision_note(void) { return cpu_bf16_why[0] ? cpu_bf16_why : NULL; }

static int cpu_set_precision(const char *p) {
    if (!strcmp(p, "fp32") || (!strcmp(p, "bf16") && strstr(cpu_precisions, "bf16"))) {
        cpu_bf16 = !strcmp(p, "bf16");
        cpu_weights_bf16_clear();   // a copy made before may be stale: weights written at fp32 are not tracked
        return 1;
    }
    return 0;
}

// ---- memory: plain host memory ----

// Every write into backend memory below tells weight_bf16.c, whose bf16 copies of the linear
// weights go stale when their weight is written (cpu_weights_written: a scan of ~55 ranges).
static void *cpu_alloc(size_t bytes) {
    void *p = xcalloc(1, bytes);
    cpu_weights_dropped(p, bytes);
    return p;
}
static void cpu_free(void *p) {
    cpu_weights_freed(p);
    free(p);
}
// Large buffers are cleared by every thread, a 256 KiB run each: backward clears its gradient
// scratch before each block (~0.8 GB a ViT-B step at 224 px, micro-batch 4), and one thread's
// memset left the others asleep.
enum { ZERO_RUN = 1 << 18 };
static void cpu_zero(void *p, size_t bytes) {
    cpu_weights_written(p, bytes);
    if (bytes <= ZERO_RUN) { memset(p, 0, bytes); return; }
    size_t runs = (bytes + ZERO_RUN - 1) / ZERO_RUN;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < runs; i++) {
        size_t off = i * ZERO_RUN;
        memset((char *)p + off, 0, bytes - off < ZERO_RUN ? bytes - off : ZERO_RUN);
    }
}
static void cpu_copy(void *dst, const void *src, size_t bytes) {
    cpu_weights_written(dst, bytes);
    memmove(dst, src, bytes);
}
static void cpu_sync(void) {}
// Uploads are plain copies here, finished on return: nothing to wait for.
static void cpu_upload(void *dst, const void *src, size_t bytes) {
    cpu_weights_written(dst, bytes);
    memcpy(dst, src, bytes);
}
static void cpu_no_wait(const void *p) { (void)p; }
// No recordings on the CPU: a step's ops cost far more than calling them.
static int cpu_graph_run(int key, void (*body)(void *ctx), void *ctx) {
    (void)key;
    body(ctx);
    return 0;
}
static void cpu_graph_reset(void) {}
static size_t cpu_scratch_peak(void) { return cpu_scratch_peak_bytes() + cpu_weights_bf16_bytes(); }

// ---- Act storage: fp32, or bf16 after set_precision("bf16") (bf16.c) ----

static size_t cpu_act_bytes(void) { return cpu_bf16 ? 2 : sizeof(float); }
static void cpu_act_from_f32(Act *dst, const float *src, size_t n) {
    if (cpu_bf16) cpu_bf16_pack((uint16_t *)dst, src, n);
    else memmove(dst, src, n * sizeof(float));
}
static void cpu_act_to_f32(float *dst, const Act *src, size_t n) {
    if (cpu_bf16) cpu_bf16_unpack(dst, (const uint16_t *)src, n);
    else memmove(dst, src, n * sizeof(float));
}
// The GEMMs with an Act input: the fp32 functions as they are, or their bf16 twins.
static void cpu_linear_forward_act(Act *out, const Act *inp, const float *w, const float *b, int rows, int IC,
                                   int OC) {
    if (cpu_bf16) cpu_linear_forward_act_bf16(out, inp, w, b, rows, IC, OC);
    else cpu_linear_forward((float *)out, act_f32(inp), w, b, rows, IC, OC);
}
static void cpu_linear_forward_a(float *out, const Act *inp, const float *w, const float *b, int rows, int IC,
                                 int OC) {
    if (cpu_bf16) cpu_linear_forward_bf16(out, inp, w, b, rows, IC, OC);
    else cpu_linear_forward(out, act_f32(inp), w, b, rows, IC, OC);
}
static void cpu_linear_backward_a(float *dinp, float *dw, float *db, const float *dout, const Act *inp,
                                  const float *w, int rows, int IC, int OC) {
    if (cpu_bf16) cpu_linear_backward_bf16(dinp, dw, db, dout, inp, w, rows, IC, OC, false);
    else cpu_linear_backward(dinp, dw, db, dout, act_f32(inp), w, rows, IC, OC, false);
}
static void cpu_linear_backward_set_a(float *dinp, float *dw, float *db, const float *dout, const Act *inp,
                                      const float *w, int rows, int IC, int OC) {
    if (cpu_bf16) cpu_linear_backward_bf16(dinp, dw, db, dout, inp, w, rows, IC, OC, true);
    else cpu_linear_backward(dinp, dw, db, dout, act_f32(inp), w, rows, IC, OC, true);
}

const Backend backend_cpu = {
    .name = "cpu",
    .available = cpu_available,
    .free_memory = cpu_free_memory,
    .scratch_peak = cpu_scratch_peak,
    .describe = cpu_describe,
    .precisions = cpu_precisions,
    .precision_note = cpu_precision_note,
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
    .im2col_forward = cpu_im2col_forward,
    .tokens_forward = cpu_tokens_forward,
    .tokens_backward = cpu_tokens_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .linear_forward = cpu_linear_forward_a,
    .linear_backward = cpu_linear_backward_a,
    .linear_backward_set = cpu_linear_backward_set_a,
    .linear_forward_act = cpu_linear_forward_act,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .gelu_backward_set = cpu_gelu_backward_set,
    .residual_forward = cpu_residual_forward,
    .residual_backward = cpu_residual_backward,
    .residual_layernorm_forward = cpu_residual_layernorm_forward,
    .residual_layernorm_backward = cpu_residual_layernorm_backward,
    .droppath_masks = cpu_droppath_masks,
    .gather_rows_forward = cpu_gather_rows_forward,
    .gather_rows_backward = cpu_gather_rows_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
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

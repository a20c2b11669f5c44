// plan.c: memory planning (ARCHITECTURE.md §4). model_plan sizes every buffer with the
// same code that allocates it, so these numbers are what training will use.
#include <ctype.h>
#include <stdlib.h>
#include "model/plan.h"

size_t plan_train_bytes(const ModelConfig *cfg, int B, bool ckpt) {
    MemPlan p;
    model_plan(cfg, B, ckpt, true, &p);
    return p.total;
}

void plan_print(FILE *f, const ModelConfig *cfg, int B) {
    MemPlan p[2];
    model_plan(cfg, B, false, true, &p[0]);
    model_plan(cfg, B, true, true, &p[1]);
    const char *rows[] = {"weights", "grads", "optimizer (AdamW m+v)", "activations", "workspace", "total"};
    if (cfg->act_bytes == 2)
        fprintf(f, "memory plan, micro-batch %d (training; the Act tensors — qkv, GLCA's q and k|v, fc1's output, "
                   "%sGEMM inputs — in bf16, every other buffer fp32%s)\n", B, cfg->fp32_stream ? "" : "block inputs, ",
                cfg->fp32_stream ? ", the block inputs too: train.bf16_stream false" : "");
    else
        fprintf(f, "memory plan, micro-batch %d (training; every buffer fp32)\n", B);
    fprintf(f, "%-22s %14s %16s   %14s %16s\n", "", "no ckpt MiB", "bytes", "per-block MiB", "bytes");
    for (int r = 0; r < 6; r++) {
        size_t v[2];
        for (int k = 0; k < 2; k++) {
            const MemPlan *q = &p[k];
            size_t x[6] = {q->weights, q->grads, q->optimizer, q->activations, q->workspace, q->total};
            v[k] = x[r];
        }
        fprintf(f, "%-22s %14.1f %16zu   %14.1f %16zu\n", rows[r], v[0] / 1048576.0, v[0], v[1] / 1048576.0, v[1]);
    }
    int k = model_ckpt_layers(cfg, true);
    if (k < cfg->depth)
        fprintf(f, "per-block: the lowest %d of the %d layers recomputed in backward (train.checkpoint_layers), the "
                   "others keep their activations\n", k, cfg->depth);
    // Every point between the two columns, for a budget in between (train.checkpoint_layers).
    if (cfg->depth > 1) {
        fprintf(f, "total MiB with train.checkpoint_layers N (the lowest N of %d layers recomputed):", cfg->depth);
        ModelConfig c = *cfg;
        for (int n = 1; n < cfg->depth; n++) {
            MemPlan q;
            c.ckpt_layers = n;
            model_plan(&c, B, true, true, &q);
            fprintf(f, " %d: %.1f%s", n, q.total / 1048576.0, n + 1 < cfg->depth ? "," : "\n");
        }
    }
    if (cfg->grads_per_block) {
        ModelConfig whole = *cfg;
        whole.grads_per_block = false;
        MemPlan w;
        model_plan(&whole, B, false, true, &w);
        fprintf(f, "grads: one block's at a time (train.update_in_backward: AdamW updates each block as soon as "
                   "backward has its gradient; same bits), %.1f MiB less than the whole gradient\n",
                (w.grads - p[0].grads) / 1048576.0);
    }
}

// Every linear layer of the model as [rows, IC] → [rows, OC] (MODEL.md §1-3): the patch
// embedding, a block's four (SA and PWCA rows; GLCA's q and k|v, its projection and MLP on
// 1+K rows) and the heads.
typedef struct { size_t rows; int ic, oc; } LinearShape;
enum { N_LINEAR = 11 };
static void linear_shapes(const ModelConfig *cfg, int B, LinearShape l[N_LINEAR]) {
    int N = config_tokens(cfg), Q = 1 + config_topk(cfg), D = cfg->dim, F = cfg->mlp_dim, p = cfg->patch;
    size_t rows = (size_t)B * N, lr = (size_t)B * Q, P = (size_t)B * (N - 1);
    const LinearShape s[N_LINEAR] = {
        {P, 3 * p * p, D}, {rows, D, 3 * D}, {rows, D, D}, {rows, D, F}, {rows, F, D},
        {lr, D, D},        {rows, D, 2 * D}, {lr, D, D},   {lr, D, F},   {lr, F, D}, {(size_t)B, D, cfg->num_classes}};
    memcpy(l, s, sizeof s);
}

size_t plan_cuda_scratch(const ModelConfig *cfg, int B) {
    LinearShape l[N_LINEAR];
    linear_shapes(cfg, B, l);
    size_t most = 0;
    for (int i = 0; i < N_LINEAR; i++) {
        size_t s = gemm_linear_scratch(l[i].rows, l[i].ic, l[i].oc, cfg->act_bytes == 2);
        if (s > most) most = s;
    }
    return most;
}

size_t plan_cuda_extra(const ModelConfig *cfg, int B) {
    size_t s = plan_cuda_scratch(cfg, B);
    return (s > CUDA_SCRATCH_MIN_BYTES ? s : CUDA_SCRATCH_MIN_BYTES) + CUDA_LT_WORKSPACE_BYTES;
}

// Each of the three grow-only slots keeps its largest request over the layers, and every weight
// has its bf16 copy (cpu_scratch_rule.h).
size_t plan_cpu_copies(const ModelConfig *cfg, int B) {
    if (cfg->act_bytes != 2) return 0;
    LinearShape l[N_LINEAR];
    linear_shapes(cfg, B, l);
    size_t most[3] = {0}, slot[3];
    for (int i = 0; i < N_LINEAR; i++) {
        cpu_linear_scratch(l[i].rows, l[i].ic, l[i].oc, slot);
        for (int k = 0; k < 3; k++) most[k] = slot[k] > most[k] ? slot[k] : most[k];
    }
    return most[0] + most[1] + most[2] +
           cpu_weight_copies(cfg->patch, cfg->dim, cfg->mlp_dim, cfg->depth, cfg->glca_blocks, cfg->num_classes);
}

// Attention's largest call is PWCA's (training): N queries, 2N keys; else SA's.
size_t plan_cpu_op_scratch(const ModelConfig *cfg) {
    int N = config_tokens(cfg), hd = cfg->dim / cfg->heads, T = cfg->cpu_threads > 0 ? cfg->cpu_threads : 1;
    size_t att = (size_t)T * cpu_attention_scratch(N, N, cfg->pwca_blocks > 0 ? N : 0, hd, cfg->act_bytes == 2);
    size_t roll = cpu_rollout_scratch(cfg->heads, N, hd, cfg->act_bytes == 2, T);
    return att > roll ? att : roll;
}

size_t plan_cpu_extra(const ModelConfig *cfg, int B) { return plan_cpu_copies(cfg, B) + plan_cpu_op_scratch(cfg); }

size_t plan_largest_tensor(const ModelConfig *cfg) {
    size_t D = (size_t)cfg->dim, F = (size_t)cfg->mlp_dim, p = (size_t)cfg->patch;
    size_t sizes[] = {3 * D * D, D * F, D * 3 * p * p, (size_t)cfg->num_classes * D, (size_t)config_tokens(cfg) * D};
    size_t most = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) most = sizes[i] > most ? sizes[i] : most;
    return most * sizeof(float);
}

// "8G", "512M", "1.5GiB", "1000000" → bytes (binary units); 0 when malformed.
size_t plan_parse_size(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0)) return 0;
    double mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': mul = 1024.0; end++; break;
    case 'M': mul = 1048576.0; end++; break;
    case 'G': mul = 1073741824.0; end++; break;
    case 'T': mul = 1099511627776.0; end++; break;
    }
    if (mul > 1 && *end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end || v * mul >= 1.8e19) return 0;
    return (size_t)(v * mul);
}

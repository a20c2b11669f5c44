// model.c: the parameter table (MODEL.md §6 names), initialisation, and the
// activation layout. One layout function both sizes (model_plan) and places
// (model_alloc_activations) every buffer, so the plan is exact by construction.
#include <math.h>
#include <string.h>
#include "model/model_int.h"
#include "core/rng.h"

static const char *block_names[BLOCK_TENSORS] = {
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
    "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"};

static void add(Model *m, int cap, const char *name, bool decay, int ndim, int d0, int d1, int d2, int d3) {
    if (m->n_tensors >= cap) dcal_die("internal: tensor table overflow");
    ParamTensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    int d[4] = {d0, d1, d2, d3};
    t->numel = 1;
    for (int i = 0; i < 4; i++) {
        t->shape[i] = i < ndim ? d[i] : 0;
        if (i < ndim) t->numel *= (size_t)d[i];
    }
    t->offset = m->n_params;
    t->decay = decay;
    m->n_params += t->numel;
}

static void add_block(Model *m, int cap, const char *prefix) {
    const ModelConfig *c = &m->cfg;
    int D = c->dim, F = c->mlp_dim;
    int shapes[BLOCK_TENSORS][2] = {{D, 0}, {D, 0}, {3 * D, D}, {3 * D, 0}, {D, D}, {D, 0},
                                    {D, 0}, {D, 0}, {F, D},     {F, 0},     {D, F}, {D, 0}};
    for (int i = 0; i < BLOCK_TENSORS; i++) {
        char name[96];
        snprintf(name, sizeof name, "%s.%s", prefix, block_names[i]);
        int nd = shapes[i][1] ? 2 : 1;
        add(m, cap, name, nd == 2, nd, shapes[i][0], shapes[i][1], 0, 0);   // MODEL.md §4: only matrices decay
    }
}

int model_sa_tensor(int l) { return 4 + l * BLOCK_TENSORS; }
int model_glca_tensor(const Model *m, int j) { return 4 + m->cfg.depth * BLOCK_TENSORS + 4 + j * BLOCK_TENSORS; }

TensorIds model_ids(const Model *m) {
    int L = m->cfg.depth, M = m->cfg.glca_blocks;
    int after_sa = 4 + L * BLOCK_TENSORS, after_gl = after_sa + 4 + M * BLOCK_TENSORS;
    return (TensorIds){.cls = 0, .pos = 1, .pe_w = 2, .pe_b = 3, .norm_w = after_sa, .norm_b = after_sa + 1,
                       .head_w = after_sa + 2, .head_b = after_sa + 3, .gnorm_w = after_gl, .gnorm_b = after_gl + 1,
                       .ghead_w = after_gl + 2, .ghead_b = after_gl + 3, .loss_w = after_gl + 4};
}

BlockW model_block_w(const Model *m, float *base, int first) {
    float *p[BLOCK_TENSORS];
    for (int i = 0; i < BLOCK_TENSORS; i++) p[i] = base + m->tensors[first + i].offset;
    return (BlockW){p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11]};
}

BlockW model_block_gw(const Model *m, int first) {
    float *p[BLOCK_TENSORS];
    for (int i = 0; i < BLOCK_TENSORS; i++) p[i] = m->grads + m->tensors[first + i].goffset;
    return (BlockW){p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11]};
}

int model_sa_group(int l) { return 1 + l; }
int model_glca_group(const Model *m, int j) { return 2 + m->cfg.depth + j; }

static void add_group(Model *m, int first, int count, bool block) {
    const ParamTensor *t = &m->tensors[first], *e = &m->tensors[first + count - 1];
    m->groups[m->n_groups++] = (ParamGroup){.first = first, .count = count, .offset = t->offset,
                                            .numel = e->offset + e->numel - t->offset, .block = block};
}

// The groups (model.h ParamGroup) and where each tensor's gradient lives. Without
// grads_per_block a gradient sits where its parameter does. With it, the non-block
// groups are packed in table order and every block shares the one slot after them:
// backward finishes one block before it starts the next (model_graph.c), and the
// trainer's update takes the slot's gradient before the next block writes it.
static void place_grads(Model *m) {
    int L = m->cfg.depth, M = m->cfg.glca_blocks;
    m->groups = xcalloc((size_t)(L + M + 3), sizeof(ParamGroup));
    add_group(m, 0, 4, false);
    for (int l = 0; l < L; l++) add_group(m, model_sa_tensor(l), BLOCK_TENSORS, true);
    add_group(m, 4 + L * BLOCK_TENSORS, 4, false);
    for (int j = 0; j < M; j++) add_group(m, model_glca_tensor(m, j), BLOCK_TENSORS, true);
    int tail = model_glca_tensor(m, M);
    add_group(m, tail, m->n_tensors - tail, false);
    size_t packed = 0, slot = 0;
    for (int g = 0; g < m->n_groups; g++) {
        ParamGroup *p = &m->groups[g];
        if (!m->cfg.grads_per_block) p->goffset = p->offset;
        else if (!p->block) p->goffset = packed, packed += p->numel;
        else if (p->numel > slot) slot = p->numel;
    }
    for (int g = 0; g < m->n_groups; g++) {
        ParamGroup *p = &m->groups[g];
        if (m->cfg.grads_per_block && p->block) p->goffset = packed;
        for (int i = p->first; i < p->first + p->count; i++)
            m->tensors[i].goffset = p->goffset + (m->tensors[i].offset - p->offset);
    }
    m->n_grads = m->cfg.grads_per_block ? packed + slot : m->n_params;
}

// The tensor table alone (no memory): used by model_build and model_plan.
static int build_table(Model *m, const ModelConfig *cfg) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    if (cfg->glca_shares_sa_weights || !cfg->pwca_shares_sa_weights) {
        dcal_err("model: only the paper's weight sharing is implemented (PWCA shares SA's weights, GLCA has its own); "
                 "got glca_shares_sa_weights=%d pwca_shares_sa_weights=%d",
                 cfg->glca_shares_sa_weights, cfg->pwca_shares_sa_weights);
        return 0;
    }
    m->N = config_tokens(cfg);
    m->K = config_topk(cfg);
    int D = cfg->dim, L = cfg->depth, M = cfg->glca_blocks, p = cfg->patch, C = cfg->num_classes;
    int cap = 4 + (L + M) * BLOCK_TENSORS + 9;
    m->tensors = xcalloc((size_t)cap, sizeof(ParamTensor));
    add(m, cap, "cls_token", false, 3, 1, 1, D, 0);
    add(m, cap, "pos_embed", false, 3, 1, m->N, D, 0);
    add(m, cap, "patch_embed.proj.weight", true, 4, D, 3, p, p);
    add(m, cap, "patch_embed.proj.bias", false, 1, D, 0, 0, 0);
    for (int l = 0; l < L; l++) {
        char pre[32];
        snprintf(pre, sizeof pre, "blocks.%d", l);
        add_block(m, cap, pre);
    }
    add(m, cap, "norm.weight", false, 1, D, 0, 0, 0);
    add(m, cap, "norm.bias", false, 1, D, 0, 0, 0);
    add(m, cap, "head.weight", true, 2, C, D, 0, 0);
    add(m, cap, "head.bias", false, 1, C, 0, 0, 0);
    for (int j = 0; j < M; j++) {
        char pre[32];
        snprintf(pre, sizeof pre, "glca.%d", j);
        add_block(m, cap, pre);
    }
    add(m, cap, "glca_norm.weight", false, 1, D, 0, 0, 0);
    add(m, cap, "glca_norm.bias", false, 1, D, 0, 0, 0);
    add(m, cap, "glca_head.weight", true, 2, C, D, 0, 0);
    add(m, cap, "glca_head.bias", false, 1, C, 0, 0, 0);
    add(m, cap, "loss_w", false, 1, 3, 0, 0, 0);
    place_grads(m);
    return 1;
}

int model_build(Model *m, const ModelConfig *cfg, const Backend *be) {
    if (!build_table(m, cfg)) return 0;
    m->be = be;
    m->uncertainty_weighting = true;
    m->params = be->alloc(m->n_params * sizeof(float));
    m->grads = be->alloc(m->n_grads * sizeof(float));
    return 1;
}

const ParamTensor *model_find(const Model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

size_t model_largest_tensor(const Model *m) {
    size_t most = 1;
    for (int i = 0; i < m->n_tensors; i++) most = m->tensors[i].numel > most ? m->tensors[i].numel : most;
    return most;
}

static float trunc_normal(Rng *r, float std) {
    for (;;) {   // resample outside ±2σ
        float x = rng_normal(r);
        if (fabsf(x) <= 2.0f) return x * std;
    }
}

void model_init_weights(Model *m, uint64_t seed) {
    float *h = xcalloc(m->n_params, sizeof(float));
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        float *p = h + t->offset;
        const char *n = t->name;
        size_t len = strlen(n);
        Rng r;
        rng_init(&r, seed, 0, (uint64_t)i, RNG_INIT);
        int is_norm = strstr(n, "norm") && !strstr(n, "patch");
        if (is_norm && len > 7 && !strcmp(n + len - 7, ".weight")) {
            for (size_t k = 0; k < t->numel; k++) p[k] = 1.0f;
        } else if (!strcmp(n, "cls_token") || !strcmp(n, "pos_embed") || t->ndim >= 2) {
            for (size_t k = 0; k < t->numel; k++) p[k] = trunc_normal(&r, 0.02f);
        }   // biases and loss_w stay 0
    }
    m->be->to_device(m->params, h, m->n_params * sizeof(float));
    free(h);
    model_copy_sa_to_glca(m);
}

void model_copy_sa_to_glca(Model *m) {
    int L = m->cfg.depth, M = m->cfg.glca_blocks;
    for (int j = 0; j < M; j++) {
        const ParamTensor *src = &m->tensors[model_sa_tensor(L - M + j)];
        const ParamTensor *dst = &m->tensors[model_glca_tensor(m, j)];
        size_t n = 0;
        for (int i = 0; i < BLOCK_TENSORS; i++) n += src[i].numel;   // a block's tensors are contiguous
        m->be->copy(m->params + dst->offset, m->params + src->offset, n * sizeof(float));
    }
}

// ---- activation layout -----------------------------------------------------

typedef struct {
    char *base;        // NULL: count only
    size_t act, ws;    // bytes so far
    size_t act_elem;   // bytes of one Act element (backend.h): 4, or 2 at bf16
    size_t stream_elem;   // bytes of one stream element: act_elem, or 4 with fp32_stream
    // An overlay: buffers whose lifetime falls where another region's does not are
    // placed inside that region, [ov, ov_end), while they fit; the rest gets new bytes.
    size_t ov, ov_end;
} Arena;

static void *take_bytes(Arena *a, size_t bytes, bool workspace) {
    bytes = (bytes + 255) & ~(size_t)255;   // 256-byte alignment: vector loads on any backend
    if (workspace && a->ov + bytes <= a->ov_end) {
        size_t off = a->ov;
        a->ov += bytes;
        return a->base ? a->base + off : NULL;
    }
    size_t off = a->act + a->ws;
    if (workspace) a->ws += bytes; else a->act += bytes;
    return a->base ? a->base + off : NULL;
}
static size_t arena_end(const Arena *a) { return a->act + a->ws; }
// The streams between blocks are bf16 (model_graph.c stream_in): their fp32 views need buffers.
static bool bf16_stream(const Arena *a) { return a->stream_elem != sizeof(float); }
static void overlay_begin(Arena *a, size_t from, size_t to) { a->ov = from; a->ov_end = to; }
static void overlay_end(Arena *a) { a->ov = a->ov_end = 0; }
static float *take(Arena *a, size_t n, bool workspace) { return take_bytes(a, n * sizeof(float), workspace); }
// An Act tensor of n elements, in the activation type of the precision in force.
static Act *take_act(Arena *a, size_t n, bool workspace) { return take_bytes(a, n * a->act_elem, workspace); }

// own_qkv false: the block reads another's qkv (PWCA block 0 reads SA block 0's, model_graph.c
// pwca_shares_qkv), so it keeps neither qkv nor LN1's statistics.
static void block_acts(Arena *a, BlockActs *b, size_t rows, int B, const ModelConfig *c, int N, bool ws,
                       bool own_qkv) {
    size_t D = (size_t)c->dim, F = (size_t)c->mlp_dim;
    b->ln1_mean = own_qkv ? take(a, rows, ws) : NULL;
    b->ln1_rstd = own_qkv ? take(a, rows, ws) : NULL;
    b->qkv = own_qkv ? take_act(a, rows * 3 * D, ws) : NULL;
    b->att = ws || !c->recompute_att ? take_act(a, rows * D, ws) : NULL;   // attbuf, as h
    b->lse = take(a, (size_t)B * c->heads * N, ws);
    b->h = ws || !c->recompute_h ? take(a, rows * D, ws) : NULL;   // a shared (recompute) buffer keeps it
    b->ln2_mean = take(a, rows, ws);
    b->ln2_rstd = take(a, rows, ws);
    b->fc1 = take_act(a, rows * F, ws);
}

// The CLS tail's (model_block.c): the last SA or PWCA block keeps qkv and LN1's statistics
// for every row, the rest for its B CLS rows only, att and h included (small, never recomputed).
static void tail_acts(Arena *a, BlockActs *b, size_t rows, int B, const ModelConfig *c, bool ws) {
    size_t D = (size_t)c->dim, F = (size_t)c->mlp_dim;
    b->ln1_mean = take(a, rows, ws);
    b->ln1_rstd = take(a, rows, ws);
    b->qkv = take_act(a, rows * 3 * D, ws);
    b->att = take_act(a, (size_t)B * D, ws);
    b->lse = take(a, (size_t)B * c->heads, ws);
    b->h = take(a, (size_t)B * D, ws);
    b->ln2_mean = take(a, (size_t)B, ws);
    b->ln2_rstd = take(a, (size_t)B, ws);
    b->fc1 = take_act(a, (size_t)B * F, ws);
}

// dgelu is the forward scratch ftmp (rows·max(F, D+2) floats): a block's
// backward never runs a forward op, and a recomputing forward finishes first.
static void block_grads(Arena *a, BlockGrads *g, size_t rows, const ModelConfig *c, float *ftmp) {
    size_t D = (size_t)c->dim, F = (size_t)c->mlp_dim;
    g->df = take(a, rows * D, true);
    // dln2, datt and dln1 live one after another in a block's backward (mlp_proj_backward reads
    // dln2 before it writes datt, attention's backward reads datt before dln1 is written): one buffer.
    g->dln1 = g->datt = g->dln2 = take(a, rows * D, true);
    g->dqkv = take(a, rows * 3 * D, true);
    g->dfc1 = take(a, rows * F, true);
    g->dgelu = ftmp;   // also takes a recomputed LN output
    g->dqkv_in_dfc1 = false;
}

// GLCA block j's activations: Q = 1+K local rows, N global rows.
// keep_yin false: the local input is gathered again in backward (glca_backward), so
// backward_scratch places it among the forward-only buffers.
static void glca_acts(Arena *a, GlcaActs *g, int B, const ModelConfig *c, int N, int Q, bool ws, bool keep_yin) {
    size_t D = (size_t)c->dim, F = (size_t)c->mlp_dim, rows = (size_t)B * N, lr = (size_t)B * Q;
    g->yin_kept = keep_yin;
    g->yin = keep_yin ? take(a, lr * D, ws) : NULL;
    g->lnl = take_act(a, lr * D, ws);
    g->lnl_mean = take(a, lr, ws);
    g->lnl_rstd = take(a, lr, ws);
    g->q = take_act(a, lr * D, ws);
    g->lng_mean = take(a, rows, ws);
    g->lng_rstd = take(a, rows, ws);
    g->kv = take_act(a, rows * 2 * D, ws);
    g->att = take_act(a, lr * D, ws);
    g->lse = take(a, (size_t)B * c->heads * Q, ws);
    g->h = take(a, lr * D, ws);
    g->ln2_mean = take(a, lr, ws);
    g->ln2_rstd = take(a, lr, ws);
    g->fc1 = take_act(a, lr * F, ws);
    g->yout = take(a, lr * D, ws);
}

static void head_acts(Arena *a, HeadActs *hd, int B, int D, int C, bool ws) {
    hd->cls = take(a, (size_t)B * D, ws);
    hd->ln = take_act(a, (size_t)B * D, ws);
    hd->mean = take(a, (size_t)B, ws);
    hd->rstd = take(a, (size_t)B, ws);
    hd->logits = take(a, (size_t)B * C, ws);
    hd->probs = take(a, (size_t)B * C, ws);
    hd->losses = take(a, (size_t)B, ws);
}

// Backward-only scratch: stream gradients, per-block gradient scratch, GLCA and heads.
static void backward_scratch(const ModelConfig *c, int B, int N, int Q, int T, Arena *a, Acts *x) {
    int M = c->glca_blocks, C = c->num_classes, D = c->dim;
    size_t rows = (size_t)B * N;
    for (int i = 0; i < 2; i++) {
        x->dx[i] = take(a, rows * D, true);
        x->dz[i] = T ? take(a, rows * D, true) : NULL;
    }
    size_t gsa_from = arena_end(a);
    block_grads(a, &x->gsa, rows, c, x->ftmp);
    size_t gsa_to = arena_end(a);
    // The forward's fp32 stream views and GLCA block 0's gathered local rows are dead by
    // the time the backward writes a gradient; a recompute's output is dead before its
    // block's backward zeroes df.
    overlay_begin(a, gsa_from, gsa_to);
    if (bf16_stream(a)) {
        x->sf[0] = take(a, rows * D, true);
        x->sf[1] = take(a, rows * D, true);
        x->sout = x->gsa.df;
    }
    if (M > 0) x->gl[0].yin = take(a, (size_t)B * Q * D, true);
    overlay_end(a);
    // PWCA block l's backward runs to its end before SA block l's starts; only dqkv,
    // where PWCA leaves SA's dk2/dv2, is live across both, so the rest is shared.
    // PWCA's own dq|dk1|dv1 is written after its MLP half is done with dfc1: it lives
    // there when it fits (F ≥ 3D, as in every ViT), zeroed by block_backward itself.
    if (T) {
        x->gpw = x->gsa;
        x->gpw.dqkv_in_dfc1 = c->mlp_dim >= 3 * D;
        x->gpw.dqkv = x->gpw.dqkv_in_dfc1 ? x->gsa.dfc1 : take(a, rows * 3 * D, true);
    }
    x->dglx = take(a, (size_t)M * rows * D, true);
    x->dcls = take(a, (size_t)B * D, true);
    x->dln = take(a, (size_t)B * D, true);
    x->dlogits = take(a, (size_t)B * C, true);
    // GLCA's backward (glca_backward_all) runs between the heads' and SA block L-1's, when
    // SA's block gradients hold nothing: its scratch lives inside them, as far as it fits.
    overlay_begin(a, gsa_from, gsa_to);
    block_grads(a, &x->ggl, (size_t)B * Q, c, x->ftmp);
    x->dgl_in = take(a, (size_t)B * Q * D, true);
    x->dgl_out = take(a, (size_t)B * Q * D, true);
    x->dglkv = take(a, rows * 2 * D, true);
    x->dglq = take(a, (size_t)B * Q * D, true);
    x->dlng = take(a, rows * D, true);
    x->dlnl = take(a, (size_t)B * Q * D, true);
    overlay_end(a);
    // The patch embedding's output is spent once the tokens are assembled (embed_forward),
    // the backward's fp32 view of a bf16 stream entry once SA block 0's backward is done, and
    // the embedding's gradient is written only after that: one buffer (layout sizes it).
    x->dpatch = x->pe;
    if (bf16_stream(a)) x->sb = x->pe;
}

// The SA and PWCA blocks' activations. Layers [0, kc) are recomputed in backward into one
// shared BlockActs, sa[0] (inference never needs more than one block's activations); layers
// [kc, L) keep their own, after it, the last (the CLS tail) its smaller set.
static void layer_acts(const ModelConfig *c, int B, int kc, int tc, int T, Arena *a, Acts *x) {
    int N = config_tokens(c), L = c->depth;
    size_t rows = (size_t)B * N, D = (size_t)c->dim;
    if (kc > 0) block_acts(a, &x->sa[0], rows, B, c, N, true, true);
    for (int l = kc; l < L; l++) {
        BlockActs *b = &x->sa[(kc > 0) + l - kc];
        if (l == L - 1) tail_acts(a, b, rows, B, c, false);
        else block_acts(a, b, rows, B, c, N, false, true);
    }
    if (tc > 0) {
        // A checkpointed layer's backward recomputes SA's LN1 and qkv (PWCA's k2/v2), then
        // the whole PWCA block, runs PWCA's backward, and only then SA's attention and MLP
        // (model_graph.c layer_backward): PWCA's own activations share SA's, but for the
        // qkv and LN1 statistics that are live across both.
        x->pw[0] = x->sa[0];
        x->pw[0].ln1_mean = take(a, rows, true);
        x->pw[0].ln1_rstd = take(a, rows, true);
        x->pw[0].qkv = take_act(a, rows * 3 * D, true);
    }
    for (int t = tc; t < T; t++) {
        BlockActs *b = &x->pw[(tc > 0) + t - tc];
        if (t == T - 1) tail_acts(a, b, rows, B, c, false);
        else block_acts(a, b, rows, B, c, N, false, t > 0);   // block 0 reads SA block 0's qkv
    }
}

// Place (or count) every activation and workspace buffer for micro-batch B.
// The order of take() calls fixes every buffer's offset: keep it stable.
static void layout(const ModelConfig *c, int B, bool ckpt, bool training, Arena *a, Acts *x) {
    int N = config_tokens(c), K = config_topk(c), Q = 1 + K, L = c->depth, M = c->glca_blocks,
        T = training ? c->pwca_blocks : 0, D = c->dim, p = c->patch;
    size_t rows = (size_t)B * N, P = (size_t)(N - 1);
    // Block inputs are the checkpoints: always kept when training. x^L and z^T are not entries:
    // the last blocks (the CLS tail) write their CLS rows only, to ysa and ypw.
    x->x = take_bytes(a, (size_t)L * rows * D * a->stream_elem, !training);
    x->z = T > 1 ? take_bytes(a, (size_t)(T - 1) * rows * D * a->stream_elem, false) : NULL;   // z¹…z^(T-1): z⁰ is x⁰ (model_graph.c zs)
    x->ysa = take(a, (size_t)B * D, true);
    x->ypw = T ? take(a, (size_t)B * D, true) : NULL;
    x->sf[0] = x->sf[1] = x->sb = x->sout = NULL;
    if (!training && bf16_stream(a)) {   // training: backward_scratch places them
        x->sf[0] = take(a, rows * D, true);
        x->sf[1] = take(a, rows * D, true);
    }
    x->img = take(a, (size_t)B * 3 * c->img_size * c->img_size, true);
    x->cols = take_act(a, (size_t)B * P * 3 * p * p, !training);
    x->pe = take(a, (training && bf16_stream(a) ? rows : (size_t)B * P) * D, true);   // x->sb too
    int kc = training ? model_ckpt_layers(c, ckpt) : L, tc = kc < T ? kc : T;
    layer_acts(c, B, kc, tc, T, a, x);
    // rec serves the forward's rollout and PWCA recomputes, which start after the SA
    // forward is done with sa[0], and backward recomputes into sa[0]: one buffer serves both.
    if (kc > 0 && training) x->rec = x->sa[0];
    // GLCA keeps its M blocks even when checkpointing: they are small.
    // GLCA block 0's local rows are a gather from the stream: training gathers them again in backward.
    for (int j = 0; j < M; j++) glca_acts(a, &x->gl[j], B, c, N, Q, !training, !training || j > 0);
    for (int h = 0; h < (training ? 3 : 2); h++) head_acts(a, &x->head[h], B, D, c->num_classes, !training);
    x->sel = (int *)take(a, (size_t)B * Q, false);
    x->zeros = (int *)take(a, (size_t)B, true);
    x->pair = (int *)take(a, (size_t)B, false);
    x->labels = (int *)take(a, (size_t)B, false);
    x->drop = training ? take(a, (size_t)(2 * (L + T + M)) * B, false) : NULL;
    x->r = take(a, (size_t)B * N, true);
    x->rtmp = take(a, (size_t)B * N, true);
    x->e0 = take(a, (size_t)B * N, true);
    x->lossv = take(a, 4, true);
    x->coef = take(a, 3, true);
    x->ftmp = take(a, rows * (size_t)(c->mlp_dim > D + 2 ? c->mlp_dim : D + 2), true);
    // A block keeping its activations, the CLS tail aside (it keeps its small h and att).
    bool some_kept = training && (kc < L - 1 || tc < T - 1);
    x->hbuf = some_kept && c->recompute_h ? take(a, rows * D, true) : NULL;
    x->attbuf = some_kept && c->recompute_att ? take_act(a, rows * D, true) : NULL;
    x->lsebuf = some_kept && c->recompute_att ? take(a, (size_t)B * c->heads * N, true) : NULL;
    if (training) backward_scratch(c, B, N, Q, T, a, x);
}

void model_plan(const ModelConfig *cfg, int B, bool ckpt, bool training, MemPlan *out) {
    Model tmp;
    size_t n = 0, ng = 0;
    if (build_table(&tmp, cfg)) n = tmp.n_params, ng = tmp.n_grads;
    free(tmp.tensors);
    free(tmp.groups);
    Acts x;
    memset(&x, 0, sizeof x);
    BlockActs sa[64], pw[64];
    GlcaActs gl[64];
    x.sa = sa; x.pw = pw; x.gl = gl;
    size_t eb = cfg->act_bytes ? (size_t)cfg->act_bytes : sizeof(float);
    Arena a = {.act_elem = eb, .stream_elem = cfg->fp32_stream ? sizeof(float) : eb};
    layout(cfg, B, ckpt, training, &a, &x);
    out->weights = n * sizeof(float);
    out->grads = training ? ng * sizeof(float) : 0;
    out->optimizer = training ? 2 * n * sizeof(float) : 0;
    out->activations = a.act;
    out->workspace = a.ws;
    out->total = out->weights + out->grads + out->optimizer + out->activations + out->workspace;
}

// Drop-path keep probability of every block (model_graph.c numbers them), once per model
// and kept in backend memory, so a step's masks need no host work: the drop rate grows
// linearly over the depth of the SA layer a block stands for (timm).
static float *droppath_keep(const Model *m) {
    const ModelConfig *c = &m->cfg;
    int L = c->depth, T = c->pwca_blocks, M = c->glca_blocks, nblk = L + T + M;
    float *h = xmalloc((size_t)nblk * sizeof(float));
    for (int k = 0; k < nblk; k++) {
        int depth = k < L ? k : k < L + T ? k - L : L - M + (k - L - T);
        double rate = L > 1 ? c->drop_path * depth / (L - 1) : c->drop_path;
        h[k] = (float)(1.0 - rate);
    }
    float *keep = m->be->alloc((size_t)nblk * sizeof(float));
    m->be->to_device(keep, h, (size_t)nblk * sizeof(float));
    free(h);
    return keep;
}

int model_alloc_activations(Model *m, int B, bool ckpt, bool training) {
    const ModelConfig *c = &m->cfg;
    if (c->depth > 64 || c->glca_blocks > 64) {
        dcal_err("model: depth %d / glca_blocks %d exceed 64", c->depth, c->glca_blocks);
        return 0;
    }
    // The Act tensors take the backend's type under the precision in force; a plan made
    // from the config (config_act_bytes) must have counted the same.
    size_t eb = m->be->act_bytes();
    if (c->act_bytes && (size_t)c->act_bytes != eb) {
        dcal_err("internal: the plan counted %d-byte activations, the %s backend stores %zu-byte ones", c->act_bytes,
                 m->be->name, eb);
        return 0;
    }
    m->cfg.act_bytes = (int)eb;
    Acts *x = xcalloc(1, sizeof(Acts));
    x->sa = xcalloc(64, sizeof(BlockActs));
    x->pw = xcalloc(64, sizeof(BlockActs));
    x->gl = xcalloc(64, sizeof(GlcaActs));
    Arena a = {.act_elem = eb, .stream_elem = c->fp32_stream ? sizeof(float) : eb};
    layout(c, B, ckpt, training, &a, x);
    m->be->graph_reset();   // a recorded step of an earlier allocation must not outlive it
    a.base = m->be->alloc(a.act + a.ws);
    a.act = a.ws = 0;
    layout(c, B, ckpt, training, &a, x);
    m->arena = a.base;
    int Q = 1 + m->K;
    x->h_logits = xcalloc((size_t)3 * B * c->num_classes, sizeof(float));
    float *e0 = xcalloc((size_t)B * m->N, sizeof(float));
    for (int b = 0; b < B; b++) e0[(size_t)b * m->N] = 1.0f;
    m->be->to_device(x->e0, e0, (size_t)B * m->N * sizeof(float));
    free(e0);
    x->h_sel = xcalloc((size_t)B * Q, sizeof(int));
    x->h_pair = xcalloc((size_t)B, sizeof(int));
    x->keep = training && c->drop_path > 0 ? droppath_keep(m) : NULL;
    m->acts = x;
    m->B = B;
    m->ckpt = ckpt;
    m->n_ckpt = training ? model_ckpt_layers(c, ckpt) : 0;
    m->training = training;
    return 1;
}

void model_zero_grads(Model *m) { m->be->zero(m->grads, m->n_grads * sizeof(float)); }

void model_free(Model *m) {
    if (m->be) m->be->graph_reset();   // recorded steps point into these buffers
    if (m->acts) {
        free(m->acts->sa);
        free(m->acts->pw);
        free(m->acts->gl);
        free(m->acts->h_logits);
        free(m->acts->h_sel);
        free(m->acts->h_pair);
        if (m->acts->keep) m->be->free(m->acts->keep);
        free(m->acts);
    }
    if (m->arena) m->be->free(m->arena);
    if (m->params) m->be->free(m->params);
    if (m->grads) m->be->free(m->grads);
    free(m->tensors);
    free(m->groups);
    memset(m, 0, sizeof *m);
}

// model_graph.c: the DCAL graph over blocks (MODEL.md §1-3): SA stream, rollout
// and selection (no gradient), GLCA, PWCA, the three heads and the
// uncertainty-weighted loss; backward in reverse, interleaving PWCA block t
// with SA block t because PWCA's keys/values are SA's (with gradient).
//
// The last SA and the last PWCA block run their CLS rows only past q, k, v (model_block.c:
// the CLS tail): x^L and z^T are ysa and ypw [B, D], read by the heads.
//
// Checkpointing: a checkpointed layer keeps only its block inputs (the streams x and z,
// always kept); its SA and PWCA blocks' internals are recomputed into one shared BlockActs
// just before their backward. train.checkpoint_layers = N checkpoints the lowest N layers
// only, the rest keep theirs: memory and recompute time in between the two extremes.
#include <math.h>
#include <string.h>
#include "model/model_block.h"

// Layer l keeps its activations (else backward recomputes them: layers [0, n_ckpt)).
static bool stored(const Model *m, int l) { return m->training && l >= m->n_ckpt; }
// Which heads take part: SA always, GLCA when M > 0 (M = 0 is an SA-only baseline), PWCA when paired.
static bool head_on(const Model *m, int h) {
    return h == 0 || (h == 1 && m->cfg.glca_blocks > 0) || (h == 2 && m->acts->have_pwca);
}
// The heads taking part as loss_forward's bit mask (bit h: head h).
static int heads_on(const Model *m) { return head_on(m, 0) | head_on(m, 1) << 1 | head_on(m, 2) << 2; }
// A layer's BlockActs: recomputed layers share entry 0, stored ones follow it (model.c layout).
static BlockActs *sa_acts(const Model *m, int l) {
    int k = m->n_ckpt;
    return &m->acts->sa[stored(m, l) ? (k > 0) + l - k : 0];
}
static BlockActs *pw_acts(const Model *m, int t) {
    int k = m->n_ckpt < m->cfg.pwca_blocks ? m->n_ckpt : m->cfg.pwca_blocks;
    return &m->acts->pw[stored(m, t) ? (k > 0) + t - k : 0];
}
static size_t stream_n(const Model *m, int B) { return (size_t)B * m->N * m->cfg.dim; }

// ---- the streams between blocks ----
// x[l] and z[t] are fp32, or Act tensors under train.bf16_stream (model_int.h). An fp32
// entry is its own fp32 view: blocks read and write it in place. A bf16 entry is read
// through an fp32 copy (stream_in), and a block writes its output to fp32 scratch, rounded
// once into the next entry (stream_put): every reader of an entry, the forward's next block,
// a checkpointed recompute, GLCA, a head, a backward, sees the same bf16-rounded values, so
// checkpointing changes no bit either way, and bf16 checkpoints cost 2 bytes a value.
static bool bf16_stream(const Model *m) { return m->cfg.act_bytes != (int)sizeof(float) && !m->cfg.fp32_stream; }
static Act *stream_at(const Model *m, Act *base, int l, int B) {
    return (Act *)act_at(base, (size_t)l * stream_n(m, B), bf16_stream(m) ? (size_t)m->cfg.act_bytes : sizeof(float));
}
static Act *xs(const Model *m, int l, int B) { return stream_at(m, m->acts->x, l, B); }
// z⁰ is x⁰ (the embedding of I1, MODEL.md §2): no copy, so z holds z¹…z^T.
static Act *zs(const Model *m, int t, int B) { return t ? stream_at(m, m->acts->z, t - 1, B) : xs(m, 0, B); }
// The fp32 values of an entry: the entry itself, or its copy in buf.
static float *stream_in(const Model *m, const Act *e, float *buf, int B) {
    if (!bf16_stream(m)) return (float *)e;
    m->be->act_to_f32(buf, e, stream_n(m, B));
    return buf;
}
// Where a block writes entry e: e itself, or buf (then stream_put).
static float *stream_out(const Model *m, Act *e, float *buf) { return bf16_stream(m) ? buf : (float *)e; }
static void stream_put(const Model *m, Act *e, const float *out, int B) {
    if (bf16_stream(m)) m->be->act_from_f32(e, out, stream_n(m, B));
}

// Drop-path masks: index 2·block + {0: attention, 1: MLP}; blocks numbered
// SA 0..L-1, PWCA L..L+T-1, GLCA L+T..L+T+M-1.
static const float *drop(const Model *m, int block, int which, int B) {
    return m->acts->have_drop ? m->acts->drop + (size_t)(2 * block + which) * B : NULL;
}

// Drawn by the backend from (seed, step) into the drop buffer: no host work per step.
static void draw_drop_masks(Model *m, const Batch *bt) {
    const ModelConfig *c = &m->cfg;
    m->acts->have_drop = c->drop_path > 0;
    if (!m->acts->have_drop) return;
    m->be->droppath_masks(m->acts->drop, m->acts->keep, c->depth + c->pwca_blocks + c->glca_blocks, bt->B, bt->seed,
                          bt->step);
}

// The images in: upload (it may overlap the previous micro-batch's backward) and im2col, the
// image's only reader. Kept out of embed_forward so that a recorded step (graph_run) holds no upload.
static void images_in(Model *m, const float *images, int B) {
    const Backend *be = m->be;
    Acts *x = m->acts;
    int p = m->cfg.patch, S = m->cfg.img_size;
    be->upload(x->img, images, (size_t)B * 3 * S * S * sizeof(float));
    be->im2col_forward(x->cols, x->img, B, 3, S, p);
    be->consumed(x->img);
}

static void embed_forward(Model *m, int B) {
    const Backend *be = m->be;
    Acts *x = m->acts;
    TensorIds id = model_ids(m);
    int p = m->cfg.patch, D = m->cfg.dim, P = m->N - 1;
    const float *W = m->params;
    be->linear_forward(x->pe, x->cols, W + m->tensors[id.pe_w].offset, W + m->tensors[id.pe_b].offset, B * P,
                       3 * p * p, D);
    float *x0 = stream_out(m, xs(m, 0, B), x->sf[1]);
    be->tokens_forward(x0, x->pe, W + m->tensors[id.cls].offset, W + m->tensors[id.pos].offset, B, m->N, D);
    stream_put(m, xs(m, 0, B), x0, B);
}

static void sa_forward(Model *m, int B) {
    Acts *x = m->acts;
    int L = m->cfg.depth;
    for (int l = 0; l < L - 1; l++) {
        BlockW w = model_block_w(m, m->params, model_sa_tensor(l));
        float *in = stream_in(m, xs(m, l, B), x->sf[0], B), *out = stream_out(m, xs(m, l + 1, B), x->sf[1]);
        block_forward(m, &w, sa_acts(m, l), in, out, B, NULL, NULL, drop(m, l, 0, B), drop(m, l, 1, B));
        stream_put(m, xs(m, l + 1, B), out, B);
    }
    // The last block, its CLS rows only (model_block.c: the CLS tail).
    BlockW w = model_block_w(m, m->params, model_sa_tensor(L - 1));
    BlockActs *a = sa_acts(m, L - 1);
    tail_forward(m, &w, a, stream_in(m, xs(m, L - 1, B), x->sf[0], B), x->ysa, B, NULL, NULL, drop(m, L - 1, 0, B),
                 drop(m, L - 1, 1, B));
}

// SA layer l's qkv (and lse when attention): stored, or recomputed into rec.
static BlockActs *sa_layer(Model *m, int l, int B, bool attention) {
    if (stored(m, l)) return sa_acts(m, l);
    BlockActs *a = m->training ? &m->acts->rec : &m->acts->sa[0];
    BlockW w = model_block_w(m, m->params, model_sa_tensor(l));
    block_attn_forward(m, &w, a, stream_in(m, xs(m, l, B), m->acts->sf[0], B), B, NULL, NULL, attention);
    return a;
}

// Rollout CLS row (MODEL.md §2): r ← e0; r ← r·S̄_l for l = L−M … 1 (newest first), then top-K.
static void rollout_select(Model *m, int B) {
    const Backend *be = m->be;
    Acts *x = m->acts;
    int N = m->N, L = m->cfg.depth, M = m->cfg.glca_blocks;
    be->copy(x->r, x->e0, (size_t)B * N * sizeof(float));   // e0, made once: no host copy in a step
    for (int l = L - M - 1; l >= 0; l--) {
        BlockActs *a = sa_layer(m, l, B, true);
        AttnArgs at = block_qkv_args(m, B, a->qkv, NULL, NULL);
        be->rollout_step_attn(&at, a->lse, x->r, x->rtmp);
    }
    be->topk_select(x->sel, x->r, B, N, m->K);
}

static void glca_forward_all(Model *m, int B) {
    const Backend *be = m->be;
    Acts *x = m->acts;
    int L = m->cfg.depth, M = m->cfg.glca_blocks, T = m->training ? m->cfg.pwca_blocks : 0, Q = 1 + m->K;
    for (int j = 0; j < M; j++) {
        GlcaActs *a = &x->gl[j];
        const float *global = stream_in(m, xs(m, L - M + j, B), x->sf[0], B);
        if (j == 0) be->gather_rows_forward(a->yin, global, x->sel, B, m->N, Q, m->cfg.dim);
        else be->copy(a->yin, x->gl[j - 1].yout, (size_t)B * Q * m->cfg.dim * sizeof(float));
        BlockW w = model_block_w(m, m->params, model_glca_tensor(m, j));
        int blk = L + T + j;
        glca_forward(m, &w, a, global, B, drop(m, blk, 0, B), drop(m, blk, 1, B));
    }
}

// PWCA block 0's input z⁰ is x⁰ and its weights are SA block 0's, so its LN1 and q, k1, v1 are
// SA block 0's, bit for bit: it reads them from SA's qkv instead of making them again, and its
// backward leaves dq|dk1|dv1 in SA's dqkv (block_backward_to_qkv), where one qkv GEMM and one
// LN1 backward carry both branches. One block's LN1 and qkv GEMM fewer in the forward, its
// two qkv GEMMs and LN1 backward fewer in the backward (~1% of a ViT-B step), and it keeps
// no qkv of its own (model.c layer_acts). The CLS tail (T = 1) keeps its own.
static bool pwca_shares_qkv(const Model *m, int t) { return t == 0 && m->cfg.pwca_blocks > 1; }
// PWCA block t's activations as its forward and backward read them: block 0's qkv is sa's.
static BlockActs pwca_block_acts(const Model *m, int t, const BlockActs *sa) {
    BlockActs a = *pw_acts(m, t);
    if (pwca_shares_qkv(m, t)) a.qkv = sa->qkv;
    return a;
}
// PWCA block t's forward (not the tail) into out; sa: SA layer t's qkv (k2/v2, and block 0's own).
static void pwca_block_forward(Model *m, int t, const BlockW *w, const BlockActs *sa, const float *in, float *out,
                               int B, const float *s1, const float *s2) {
    BlockActs a = pwca_block_acts(m, t, sa);
    if (pwca_shares_qkv(m, t)) block_forward_from_qkv(m, w, &a, in, out, B, sa->qkv, m->acts->pair, s1, s2);
    else block_forward(m, w, &a, in, out, B, sa->qkv, m->acts->pair, s1, s2);
}

static void pwca_forward(Model *m, int B) {
    Acts *x = m->acts;
    int T = m->cfg.pwca_blocks;
    for (int t = 0; t < T; t++) {
        BlockActs *sa = sa_layer(m, t, B, false);   // before stream_in: a recompute uses sf[0] too
        BlockW w = model_block_w(m, m->params, model_sa_tensor(t));   // PWCA shares SA's weights
        const float *s1 = drop(m, m->cfg.depth + t, 0, B), *s2 = drop(m, m->cfg.depth + t, 1, B);
        float *in = stream_in(m, zs(m, t, B), x->sf[0], B);
        if (t == T - 1) {   // the CLS tail: z^T's CLS rows only
            tail_forward(m, &w, pw_acts(m, t), in, x->ypw, B, sa->qkv, x->pair, s1, s2);
            break;
        }
        float *out = stream_out(m, zs(m, t + 1, B), x->sf[1]);
        pwca_block_forward(m, t, &w, sa, in, out, B, s1, s2);
        stream_put(m, zs(m, t + 1, B), out, B);
    }
}

// Head h: CLS row of src [B, Nin, D] → LN → linear → logits (and CE when labels).
static void head_forward(Model *m, int h, const float *src, int Nin, int B, int norm_w, int head_w, bool ce) {
    const Backend *be = m->be;
    HeadActs *a = &m->acts->head[h];
    int D = m->cfg.dim, C = m->cfg.num_classes;
    const float *W = m->params;
    be->gather_rows_forward(a->cls, src, m->acts->zeros, B, Nin, 1, D);
    be->layernorm_forward(a->ln, a->mean, a->rstd, a->cls, W + m->tensors[norm_w].offset,
                          W + m->tensors[norm_w + 1].offset, B, D, (float)m->cfg.ln_eps);
    be->linear_forward(a->logits, a->ln, W + m->tensors[head_w].offset, W + m->tensors[head_w + 1].offset, B, D, C);
    if (ce) be->crossentropy_forward(a->losses, a->probs, a->logits, m->acts->labels, B, C);
}

static void head_backward(Model *m, int h, float *dsrc, int Nin, int B, int norm_w, int head_w) {
    const Backend *be = m->be;
    Acts *x = m->acts;
    HeadActs *a = &x->head[h];
    int D = m->cfg.dim, C = m->cfg.num_classes;
    const float *W = m->params;
    float *G = m->grads;
    const ParamTensor *t = m->tensors;
    be->zero(x->dlogits, (size_t)B * C * sizeof(float));
    be->zero(x->dln, (size_t)B * D * sizeof(float));
    be->zero(x->dcls, (size_t)B * D * sizeof(float));
    // CE is a mean over the batch: coef[h] / B, the head's loss factor from loss_backward.
    be->crossentropy_backward(x->dlogits, a->probs, x->labels, x->coef + h, B, C);
    be->linear_backward(x->dln, G + t[head_w].goffset, G + t[head_w + 1].goffset, x->dlogits, a->ln,
                        W + t[head_w].offset, B, D, C);
    be->layernorm_backward(x->dcls, G + t[norm_w].goffset, G + t[norm_w + 1].goffset, x->dln, a->cls,
                           W + t[norm_w].offset, a->mean, a->rstd, B, D);
    be->gather_rows_backward(dsrc, x->dcls, x->zeros, B, Nin, 1, D);
}

void model_train_inputs(Model *m, const Batch *bt) {
    const Backend *be = m->be;
    Acts *x = m->acts;
    int B = bt->B;
    if (!m->training || B > m->B || B < 1) dcal_die("internal: forward_train with B=%d (allocated %d)", B, m->B);
    x->B = B;
    x->have_pwca = bt->pair != NULL && m->cfg.pwca_blocks > 0;
    // Labels and pairs go up like the images (backend.h: upload); the caller says when the
    // step's last reader is enqueued (model_inputs_consumed), or never, and every upload waits.
    be->upload(x->labels, bt->labels, (size_t)B * sizeof(int));
    if (x->have_pwca) {
        memcpy(x->h_pair, bt->pair, (size_t)B * sizeof(int));
        be->upload(x->pair, bt->pair, (size_t)B * sizeof(int));
    }
    draw_drop_masks(m, bt);
    images_in(m, bt->images, B);
}

void model_inputs_consumed(Model *m) {
    m->be->consumed(m->acts->labels);   // read last by the heads' backward
    if (m->acts->have_pwca) m->be->consumed(m->acts->pair);   // by PWCA block 0's backward
}

void model_forward_train(Model *m, const Batch *bt, StepOut *out) {
    model_train_inputs(m, bt);
    model_forward_body(m, out);
}

void model_forward_body(Model *m, StepOut *out) {
    const Backend *be = m->be;
    Acts *x = m->acts;
    int B = x->B, Q = 1 + m->K, M = m->cfg.glca_blocks;
    embed_forward(m, B);
    sa_forward(m, B);
    if (M > 0) {
        rollout_select(m, B);
        glca_forward_all(m, B);
    }
    if (x->have_pwca) pwca_forward(m, B);
    TensorIds id = model_ids(m);
    head_forward(m, 0, x->ysa, 1, B, id.norm_w, id.head_w, true);
    if (M > 0) head_forward(m, 1, x->gl[M - 1].yout, Q, B, id.gnorm_w, id.ghead_w, true);
    if (x->have_pwca) head_forward(m, 2, x->ypw, 1, B, id.norm_w, id.head_w, true);
    // The loss on the backend (MODEL.md §3): three means and the uncertainty weighting, read
    // by the host only when it asks (model_read_outputs), so the step's queue never drains here.
    const float *losses[3] = {NULL, NULL, NULL};
    for (int h = 0; h < 3; h++) losses[h] = head_on(m, h) ? x->head[h].losses : NULL;
    be->loss_forward(x->lossv, losses, m->params + m->tensors[id.loss_w].offset, B, heads_on(m),
                     m->uncertainty_weighting);
    memset(out, 0, sizeof *out);
    out->loss_dev = x->lossv;
}

void model_read_outputs(Model *m, StepOut *out) {
    const Backend *be = m->be;
    Acts *x = m->acts;
    int B = x->B, C = m->cfg.num_classes, Q = 1 + m->K;
    float v[4];
    be->to_host(v, x->lossv, sizeof v);
    out->loss = v[0];
    for (int h = 0; h < 3; h++) {
        out->ce[h] = v[1 + h];
        float *lg = x->h_logits + (size_t)h * B * C;
        if (head_on(m, h)) be->to_host(lg, x->head[h].logits, (size_t)B * C * sizeof(float));
        else memset(lg, 0, (size_t)B * C * sizeof(float));
        out->logits[h] = lg;
    }
    be->to_host(x->h_sel, x->sel, (size_t)B * Q * sizeof(int));
    out->sel = x->h_sel;
    out->loss_dev = x->lossv;
}

// Group g's gradient is final (model.h grad_ready). With grads_per_block a block's
// slot is zeroed once it has been used, for the next block's backward to sum into.
static void group_ready(Model *m, int g) {
    if (m->grad_ready) m->grad_ready(m->grad_ctx, g);
    const ParamGroup *p = &m->groups[g];
    if (m->cfg.grads_per_block && p->block) m->be->zero(m->grads + p->goffset, p->numel * sizeof(float));
}

// GLCA head and blocks, top block first; their gradients into x[L-M+j] wait in
// dglx until the SA loop reaches layer L-M+j.
static void glca_backward_all(Model *m, int B, int T) {
    const Backend *be = m->be;
    Acts *x = m->acts;
    int L = m->cfg.depth, M = m->cfg.glca_blocks, Q = 1 + m->K, D = m->cfg.dim, N = m->N;
    size_t sn = stream_n(m, B);
    TensorIds id = model_ids(m);
    be->zero(x->dglx, (size_t)M * sn * sizeof(float));
    be->zero(x->dgl_out, (size_t)B * Q * D * sizeof(float));
    if (M > 0) head_backward(m, 1, x->dgl_out, Q, B, id.gnorm_w, id.ghead_w);
    for (int j = M - 1; j >= 0; j--) {
        BlockW w = model_block_w(m, m->params, model_glca_tensor(m, j));
        BlockW gw = model_block_gw(m, model_glca_tensor(m, j));
        be->zero(x->dgl_in, (size_t)B * Q * D * sizeof(float));
        int blk = L + T + j;
        glca_backward(m, &w, &gw, &x->gl[j], stream_in(m, xs(m, L - M + j, B), x->sb, B), x->dgl_out, x->dgl_in,
                      x->dglx + (size_t)j * sn, B, drop(m, blk, 0, B), drop(m, blk, 1, B));
        if (j > 0) {
            float *t = x->dgl_out; x->dgl_out = x->dgl_in; x->dgl_in = t;
        } else {   // local rows came from z = x[L-M] by selection (no gradient into the selection itself)
            be->gather_rows_backward(x->dglx, x->dgl_in, x->sel, B, N, Q, D);
        }
        group_ready(m, model_glca_group(m, j));
    }
}

// The stream gradients walking down the layers: SA's (d) and PWCA's (z, NULL
// without PWCA), each a current/next pair swapped after every block.
typedef struct {
    float *dcur, *dnext, *zc, *zn;
} StreamGrads;

// PWCA block l, before SA block l: its dk2/dv2 land in SA's dqkv of this layer.
static void pwca_layer_backward(Model *m, int l, const BlockW *w, const BlockW *gw, const BlockActs *sa,
                                StreamGrads *s, int B) {
    const Backend *be = m->be;
    Acts *x = m->acts;
    int L = m->cfg.depth;
    size_t sn = stream_n(m, B);
    BlockActs pw = pwca_block_acts(m, l, sa);
    bool tail = l == m->cfg.pwca_blocks - 1;
    const float *s1 = drop(m, L + l, 0, B), *s2 = drop(m, L + l, 1, B);
    float *zin = stream_in(m, zs(m, l, B), x->sb, B);
    if (!stored(m, l) && tail)   // its output, z^T's CLS rows, equals ypw already: written again
        tail_forward(m, w, &pw, zin, x->ypw, B, sa->qkv, x->pair, s1, s2);
    else if (!stored(m, l))   // the output, equal to z[l+1], is not needed: at bf16 it goes to sout
        pwca_block_forward(m, l, w, sa, zin, stream_out(m, zs(m, l + 1, B), x->sout), B, s1, s2);
    be->zero(s->zn, sn * sizeof(float));
    if (!x->gpw.dqkv_in_dfc1) be->zero(x->gpw.dqkv, sn * 3 * sizeof(float));
    if (tail)   // s->zc holds z^T's CLS rows' gradient [B, D] (head_backward)
        tail_backward(m, w, gw, &pw, zin, s->zc, s->zn, x->dcls, &x->gpw, B, sa->qkv, x->pair, x->gsa.dqkv, s1, s2);
    else if (pwca_shares_qkv(m, l))   // LN1's share of zn comes with SA block 0's (z⁰ = x⁰)
        block_backward_to_qkv(m, w, gw, &pw, zin, s->zc, s->zn, &x->gpw, B, sa->qkv, x->pair, x->gsa.dqkv, s1, s2);
    else
        block_backward(m, w, gw, &pw, zin, s->zc, s->zn, &x->gpw, B, sa->qkv, x->pair, x->gsa.dqkv, s1, s2);
    float *t = s->zc; s->zc = s->zn; s->zn = t;
}

// A recomputed SA block's rest, from its qkv on: the output is not needed (at bf16 it goes
// to sout); the CLS tail's, ysa, gets its own bits again.
static void sa_rest_again(Model *m, int l, const BlockW *w, BlockActs *sa, const float *xin, int B,
                          const float *s1, const float *s2) {
    Acts *x = m->acts;
    if (l == m->cfg.depth - 1) tail_forward_from_qkv(m, w, sa, xin, x->ysa, B, NULL, NULL, s1, s2);
    else block_forward_from_qkv(m, w, sa, xin, stream_out(m, xs(m, l + 1, B), x->sout), B, NULL, NULL, s1, s2);
}

// SA layer l (with PWCA block l when l < T), recomputed first when checkpointing.
static void layer_backward(Model *m, int l, int T, StreamGrads *s, int B) {
    const Backend *be = m->be;
    Acts *x = m->acts;
    int L = m->cfg.depth, M = m->cfg.glca_blocks;
    size_t sn = stream_n(m, B);
    BlockW w = model_block_w(m, m->params, model_sa_tensor(l));
    BlockW gw = model_block_gw(m, model_sa_tensor(l));
    BlockActs *sa = sa_acts(m, l);
    bool tail = l == L - 1;   // the CLS tail: its output is ysa, its gradient [B, D] in s->dcur
    const float *s1 = drop(m, l, 0, B), *s2 = drop(m, l, 1, B);
    // x[l] as fp32 (x[l] itself at fp32, else its copy in sb), converted once per use of sb.
    const float *xin = NULL;
    // Recompute SA block l. With PWCA in this layer, first only its LN1 and qkv (PWCA's k2/v2):
    // the rest waits until PWCA's backward is done, as PWCA's activations share its memory.
    if (!stored(m, l)) {
        xin = stream_in(m, xs(m, l, B), x->sb, B);
        block_attn_forward(m, &w, sa, xin, B, NULL, NULL, false);
        if (l >= T) sa_rest_again(m, l, &w, sa, xin, B, s1, s2);
    }
    be->zero(x->gsa.dqkv, sn * 3 * sizeof(float));
    if (l < T) {
        pwca_layer_backward(m, l, &w, &gw, sa, s, B);
        xin = stream_in(m, xs(m, l, B), x->sb, B);   // again: PWCA's backward took sb for z[l]
        if (!stored(m, l)) sa_rest_again(m, l, &w, sa, xin, B, s1, s2);
    }
    be->zero(s->dnext, sn * sizeof(float));
    if (!xin) xin = stream_in(m, xs(m, l, B), x->sb, B);   // stored activations, no PWCA in this layer
    if (tail)
        tail_backward(m, &w, &gw, sa, xin, s->dcur, s->dnext, x->dcls, &x->gsa, B, NULL, NULL, NULL, s1, s2);
    else
        block_backward(m, &w, &gw, sa, xin, s->dcur, s->dnext, &x->gsa, B, NULL, NULL, NULL, s1, s2);
    if (l >= L - M) be->residual_backward(s->dnext, NULL, x->dglx + (size_t)(l - (L - M)) * sn, NULL, 1, sn);
    float *t = s->dcur; s->dcur = s->dnext; s->dnext = t;
    group_ready(m, model_sa_group(l));   // SA's and PWCA's shares of block l are both in
}

// Token assembly (CLS, positions, patches) then the patch linear; no gradient to the image.
static void embed_backward(Model *m, const float *dx0, int B) {
    const Backend *be = m->be;
    Acts *x = m->acts;
    int D = m->cfg.dim, N = m->N, P = N - 1, p = m->cfg.patch;
    TensorIds id = model_ids(m);
    float *G = m->grads;
    const ParamTensor *t = m->tensors;
    be->zero(x->dpatch, (size_t)B * P * D * sizeof(float));
    be->tokens_backward(x->dpatch, G + t[id.cls].goffset, G + t[id.pos].goffset, dx0, B, N, D);
    be->linear_backward(NULL, G + t[id.pe_w].goffset, G + t[id.pe_b].goffset, x->dpatch, x->cols,
                        m->params + m->tensors[id.pe_w].offset, B * P, 3 * p * p, D);
}

void model_backward(Model *m, float loss_scale) {
    const Backend *be = m->be;
    Acts *x = m->acts;
    int B = x->B, L = m->cfg.depth, T = x->have_pwca ? m->cfg.pwca_blocks : 0;
    size_t sn = stream_n(m, B);
    TensorIds id = model_ids(m);
    // Each head's CE factor into coef and the loss weights' gradient into theirs (MODEL.md §3).
    be->loss_backward(x->coef, m->grads + m->tensors[id.loss_w].goffset, m->params + m->tensors[id.loss_w].offset,
                      x->lossv, loss_scale, heads_on(m), m->uncertainty_weighting);
    StreamGrads s = {x->dx[0], x->dx[1], NULL, NULL};
    be->zero(s.dcur, sn * sizeof(float));
    head_backward(m, 0, s.dcur, 1, B, id.norm_w, id.head_w);   // [B, D]: the CLS tail's output
    if (T) {
        s.zc = x->dz[0];
        s.zn = x->dz[1];
        be->zero(s.zc, sn * sizeof(float));
        head_backward(m, 2, s.zc, 1, B, id.norm_w, id.head_w);
    }
    glca_backward_all(m, B, T);
    for (int l = L - 1; l >= 0; l--) layer_backward(m, l, T, &s, B);
    if (T) be->residual_backward(s.dcur, NULL, s.zc, NULL, 1, sn);   // z⁰ = x⁰
    embed_backward(m, s.dcur, B);
    for (int g = 0; g < m->n_groups; g++)   // the embedding, both heads and loss_w
        if (!m->groups[g].block) group_ready(m, g);
}

void model_forward_infer(Model *m, const float *images, int B, float *logits_sa, float *logits_glca, int *sel) {
    const Backend *be = m->be;
    Acts *x = m->acts;
    int C = m->cfg.num_classes, Q = 1 + m->K, M = m->cfg.glca_blocks;
    if (B > m->B || B < 1) dcal_die("internal: forward_infer with B=%d (allocated %d)", B, m->B);
    bool was = m->training;
    m->training = false;   // PWCA off, no drop-path (MODEL.md §3)
    x->have_drop = false;
    x->B = B;
    images_in(m, images, B);
    embed_forward(m, B);
    sa_forward(m, B);
    TensorIds id = model_ids(m);
    head_forward(m, 0, x->ysa, 1, B, id.norm_w, id.head_w, false);
    be->to_host(logits_sa, x->head[0].logits, (size_t)B * C * sizeof(float));
    if (M > 0) {
        rollout_select(m, B);
        glca_forward_all(m, B);
        head_forward(m, 1, x->gl[M - 1].yout, Q, B, id.gnorm_w, id.ghead_w, false);
        be->to_host(logits_glca, x->head[1].logits, (size_t)B * C * sizeof(float));
    } else {   // SA-only baseline: uniform GLCA logits leave the combined prediction = SA's
        memset(logits_glca, 0, (size_t)B * C * sizeof(float));
    }
    if (sel) be->to_host(sel, x->sel, (size_t)B * Q * sizeof(int));
    m->training = was;
}

int model_rollout_cls(const Model *m, int B, float *r) {
    if (m->cfg.glca_blocks < 1 || B > m->acts->B) return 0;
    m->be->to_host(r, m->acts->r, (size_t)B * m->N * sizeof(float));
    return 1;
}

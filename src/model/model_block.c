// model_block.c: one transformer block, forward and backward, for the three
// branches (MODEL.md §1-2). SA and PWCA share block_forward/backward (PWCA adds
// the distractor's keys/values from a second buffer); GLCA has its own pair
// because its queries (1+K local rows) and keys/values (N global rows) differ.
#include <math.h>
#include <string.h>
#include "model/model_block.h"

// q|k|v views into a [B, N, 3D] buffer (heads contiguous inside each).
AttnArgs block_qkv_args(const Model *m, int B, const Act *qkv, const Act *qkv2, const int *pair) {
    int D = m->cfg.dim, N = m->N;
    size_t eb = (size_t)m->cfg.act_bytes;
    AttnArgs a = {.B = B, .H = m->cfg.heads, .hd = D / m->cfg.heads, .Nq = N, .q_idx = NULL,
                  .q = qkv, .q_bstride = (long)N * 3 * D, .q_tstride = 3 * D,
                  .k1 = act_at(qkv, D, eb), .v1 = act_at(qkv, 2 * D, eb), .n1 = N, .kv1_bstride = (long)N * 3 * D,
                  .kv1_tstride = 3 * D};
    if (qkv2) {   // PWCA: the distractor's keys/values, one softmax over both (MODEL.md §2)
        a.k2 = act_at(qkv2, D, eb); a.v2 = act_at(qkv2, 2 * D, eb); a.n2 = N;
        a.kv2_bstride = (long)N * 3 * D; a.kv2_tstride = 3 * D; a.kv2_b = pair;
    }
    a.scale = 1.0f / sqrtf((float)a.hd);
    return a;
}

// Where a block's attention output and h go: its own buffers, or the shared attbuf and hbuf
// (cfg.recompute_att, cfg.recompute_h; and the CLS tail when inference runs on a training
// layout whose entry 0 keeps neither: rows·D floats are ample for its B rows).
static Act *att_out(const Model *m, const BlockActs *a) { return a->att ? a->att : m->acts->attbuf; }
static float *h_out(const Model *m, const BlockActs *a) { return a->h ? a->h : m->acts->hbuf; }

static void block_attention(const Model *m, BlockActs *a, int B, const Act *qkv2, const int *pair) {
    AttnArgs at = block_qkv_args(m, B, a->qkv, qkv2, pair);
    m->be->attention_forward(&at, att_out(m, a), a->lse);
}

void block_attn_forward(const Model *m, const BlockW *w, BlockActs *a, const float *xin, int B, const Act *qkv2,
                        const int *pair, bool attention) {
    const Backend *be = m->be;
    int D = m->cfg.dim, rows = B * m->N;
    Act *ln1 = (Act *)m->acts->ftmp;   // not kept: backward recomputes it (block_backward)
    be->layernorm_forward(ln1, a->ln1_mean, a->ln1_rstd, xin, w->ln1w, w->ln1b, rows, D, (float)m->cfg.ln_eps);
    be->linear_forward_act(a->qkv, ln1, w->qkvw, w->qkvb, rows, D, 3 * D);
    if (attention) block_attention(m, a, B, qkv2, pair);
}

void block_forward(const Model *m, const BlockW *w, BlockActs *a, const float *xin, float *xout, int B,
                   const Act *qkv2, const int *pair, const float *s1, const float *s2) {
    block_attn_forward(m, w, a, xin, B, qkv2, pair, false);
    block_forward_from_qkv(m, w, a, xin, xout, B, qkv2, pair, s1, s2);
}

void block_forward_from_qkv(const Model *m, const BlockW *w, BlockActs *a, const float *xin, float *xout, int B,
                            const Act *qkv2, const int *pair, const float *s1, const float *s2) {
    const Backend *be = m->be;
    int D = m->cfg.dim, F = m->cfg.mlp_dim, rows = B * m->N;
    size_t per_b = (size_t)m->N * D;
    block_attention(m, a, B, qkv2, pair);
    be->linear_forward(xout, att_out(m, a), w->projw, w->projb, rows, D, D);   // xout holds the branch until the end
    Act *t = (Act *)m->acts->ftmp;   // LN2's output, then the GELU's: not kept (mlp_proj_backward)
    float *h = h_out(m, a);   // hbuf: not kept, backward makes it again (h_again)
    be->residual_layernorm_forward(h, t, a->ln2_mean, a->ln2_rstd, xin, xout, s1, w->ln2w, w->ln2b, B, m->N, D,
                                   (float)m->cfg.ln_eps);
    be->linear_forward_act(a->fc1, t, w->fc1w, w->fc1b, rows, D, F);
    be->gelu_forward(t, a->fc1, (size_t)rows * F);
    be->linear_forward(xout, t, w->fc2w, w->fc2b, rows, F, D);
    be->residual_forward(xout, h, xout, s2, B, per_b);   // element-wise, so in place is safe
}

// LayerNorm's output recomputed, bit for bit, into scratch (the forward does
// not keep it): out in buf[0, rows·D), its statistics after it (thrown away).
static const Act *ln_again(const Model *m, float *buf, const float *inp, const float *lw, const float *lb,
                           int rows) {
    int D = m->cfg.dim;
    float *mean = buf + (size_t)rows * D;   // past the output at either Act size
    m->be->layernorm_forward((Act *)buf, mean, mean + rows, inp, lw, lb, rows, D, (float)m->cfg.ln_eps);
    return (const Act *)buf;
}

// h and LN2's output for a block that keeps no h (cfg.recompute_h), bit for bit as its
// forward made them: the same projection GEMM on the kept attention output, the same fused
// residual + LayerNorm on x. The projection's output goes to dln2's buffer (written only
// later), h to hbuf, LN2's output to dgelu (spent), its statistics after it (thrown away).
static const float *h_again(const Model *m, const BlockW *w, const Act *att, const float *xin, const float *s1,
                            BlockGrads *g, int B, int rows_per_b) {
    const Backend *be = m->be;
    int D = m->cfg.dim, rows = B * rows_per_b;
    float *mean = g->dgelu + (size_t)rows * D, *h = m->acts->hbuf;
    be->linear_forward(g->dln2, att, w->projw, w->projb, rows, D, D);
    be->residual_layernorm_forward(h, (Act *)g->dgelu, mean, mean + rows, xin, g->dln2, s1, w->ln2w, w->ln2b, B,
                                   rows_per_b, D, (float)m->cfg.ln_eps);
    return h;
}

// The MLP half and the projection, shared by all branches: from the gradient
// of the block output to datt (attention output) and dres (residual input).
// The forward keeps fc1 but neither LN2's output nor the GELU's (4·D + D floats
// a row, ARCHITECTURE.md §3): both are recomputed here into gradient scratch
// that is free at that moment, so the gradients are bitwise those of keeping them.
// h NULL: the block kept none (h_again, from xin).
static void mlp_proj_backward(const Model *m, const BlockW *w, const BlockW *gw, const float *h, const float *xin,
                              const float *ln2_mean, const float *ln2_rstd, const Act *fc1, const Act *att,
                              const float *dout, float *dres, BlockGrads *g, int B, int rows_per_b, const float *s1,
                              const float *s2) {
    const Backend *be = m->be;
    int D = m->cfg.dim, F = m->cfg.mlp_dim, rows = B * rows_per_b;
    size_t n = (size_t)rows * D, per_b = (size_t)rows_per_b * D, nf = (size_t)rows * F;
    // dgelu, dfc1, dln2 and datt are opened by their first writer (linear_backward_set,
    // gelu_backward_set): no zeroing pass.
    be->zero(g->df, n * sizeof(float));
    be->residual_backward(NULL, g->df, dout, s2, B, per_b);   // dout's skip path joins in the fused op below
    be->linear_backward_set(g->dgelu, NULL, gw->fc2b, g->df, NULL, w->fc2w, rows, F, D);
    be->gelu_forward((Act *)g->dfc1, fc1, nf);   // the GELU output, for dW of fc2
    be->linear_backward(NULL, gw->fc2w, NULL, g->df, (const Act *)g->dfc1, w->fc2w, rows, F, D);
    be->gelu_backward_set(g->dfc1, fc1, g->dgelu, nf);
    const Act *ln2 = (const Act *)g->dgelu;   // dgelu is spent: LN2's output goes there
    if (h) {
        ln_again(m, g->dgelu, h, w->ln2w, w->ln2b, rows);
    } else {
        h = h_again(m, w, att, xin, s1, g, B, rows_per_b);   // dln2 held the projection's output
    }
    be->linear_backward_set(g->dln2, gw->fc1w, gw->fc1b, g->dfc1, ln2, w->fc1w, rows, D, F);
    be->zero(g->df, n * sizeof(float));
    be->residual_layernorm_backward(dres, g->df, gw->ln2w, gw->ln2b, dout, g->dln2, h, w->ln2w, ln2_mean, ln2_rstd,
                                    s1, B, rows_per_b, D);
    // datt is dln2's buffer (model.c block_grads), spent above.
    be->linear_backward_set(g->datt, gw->projw, gw->projb, g->df, att, w->projw, rows, D, D);
}

// From the attention output's gradient (g->datt) down: attention, the qkv GEMM and LN1, every
// row (dxin += ∂/∂xin). PWCA's dk2/dv2 go to dqkv2, the SA layer's dqkv.
// Attention's backward from g->datt: dq|dk1|dv1 into g->dqkv, PWCA's dk2/dv2 into dqkv2.
static void attn_backward(const Model *m, const BlockActs *a, const AttnArgs *at, const Act *att, BlockGrads *g,
                          int B, float *dqkv2) {
    const Backend *be = m->be;
    int D = m->cfg.dim, rows = B * m->N;
    if (g->dqkv_in_dfc1) be->zero(g->dqkv, (size_t)rows * 3 * D * sizeof(float));   // dfc1 is spent
    // Otherwise g->dqkv was zeroed by the caller and may already hold PWCA's dk2/dv2 for this layer.
    // dq has q's strides (at->Nq rows a batch element); dk, dv every row.
    AttnGrads ag = {.dq = g->dqkv, .dk1 = g->dqkv + D, .dv1 = g->dqkv + 2 * D,
                    .dk2 = dqkv2 ? dqkv2 + D : NULL, .dv2 = dqkv2 ? dqkv2 + 2 * D : NULL};
    be->attention_backward(at, &ag, att, a->lse, g->datt);
}

static void attn_qkv_backward(const Model *m, const BlockW *w, const BlockW *gw, const BlockActs *a,
                              const AttnArgs *at, const Act *att, const float *xin, float *dxin, BlockGrads *g, int B,
                              float *dqkv2) {
    const Backend *be = m->be;
    int D = m->cfg.dim, rows = B * m->N;
    attn_backward(m, a, at, att, g, B, dqkv2);
    const Act *ln1 = ln_again(m, g->dgelu, xin, w->ln1w, w->ln1b, rows);
    be->linear_backward_set(g->dln1, gw->qkvw, gw->qkvb, g->dqkv, ln1, w->qkvw, rows, D, 3 * D);
    be->layernorm_backward(dxin, gw->ln1w, gw->ln1b, g->dln1, xin, w->ln1w, a->ln1_mean, a->ln1_rstd, rows, D);
}

// The block's attention output as its forward made it: kept, or (cfg.recompute_att) the same
// forward again on the kept q, k, v, which gives the same bits.
static const Act *att_again(const Model *m, const BlockActs *a, const AttnArgs *at) {
    if (a->att) return a->att;
    m->be->attention_forward(at, m->acts->attbuf, m->acts->lsebuf);
    return m->acts->attbuf;
}

// A full block's backward; to_qkv: down to attention's gradients only (block_backward_to_qkv).
static void backward(const Model *m, const BlockW *w, const BlockW *gw, const BlockActs *a, const float *xin,
                     const float *dout, float *dxin, BlockGrads *g, int B, const Act *qkv2, const int *pair,
                     float *dqkv2, const float *s1, const float *s2, bool to_qkv) {
    AttnArgs at = block_qkv_args(m, B, a->qkv, qkv2, pair);
    const Act *att = att_again(m, a, &at);
    mlp_proj_backward(m, w, gw, a->h, xin, a->ln2_mean, a->ln2_rstd, a->fc1, att, dout, dxin, g, B, m->N, s1, s2);
    if (!to_qkv) {
        attn_qkv_backward(m, w, gw, a, &at, att, xin, dxin, g, B, dqkv2);
        return;
    }
    attn_backward(m, a, &at, att, g, B, dqkv2);
    // Its own dq|dk1|dv1 join the distractors' dk2|dv2 in the SA layer's dqkv: one qkv GEMM
    // and one LN1 backward there carry both (dW, db, dγ, dβ and dx are linear in dqkv).
    m->be->residual_backward(dqkv2, NULL, g->dqkv, NULL, 1, (size_t)B * m->N * 3 * m->cfg.dim);
}

void block_backward(const Model *m, const BlockW *w, const BlockW *gw, const BlockActs *a, const float *xin,
                    const float *dout, float *dxin, BlockGrads *g, int B, const Act *qkv2, const int *pair,
                    float *dqkv2, const float *s1, const float *s2) {
    backward(m, w, gw, a, xin, dout, dxin, g, B, qkv2, pair, dqkv2, s1, s2, false);
}

void block_backward_to_qkv(const Model *m, const BlockW *w, const BlockW *gw, const BlockActs *a, const float *xin,
                           const float *dout, float *dxin, BlockGrads *g, int B, const Act *qkv2, const int *pair,
                           float *dqkv2, const float *s1, const float *s2) {
    backward(m, w, gw, a, xin, dout, dxin, g, B, qkv2, pair, dqkv2, s1, s2, true);
}

// ---- the CLS tail: the last SA and the last PWCA block -----------------------
// Their output rows reach the loss only through the CLS row (the heads read x^L's and z^T's
// CLS; GLCA, PWCA's k2/v2 and the rollout read earlier entries: MODEL.md §2), so past the
// keys and values, which every query needs, such a block runs its CLS rows only: attention
// for one query row a batch element, the projection, LayerNorm and the MLP on B rows. The
// loss and every gradient are those of the full block (the rows left out have no path to
// the loss); what is skipped is ~3/4 of the block's FLOPs and its B·N-row activations.

// The block's attention with the CLS row of each batch element as the only query.
static AttnArgs tail_args(const Model *m, int B, const Act *qkv, const Act *qkv2, const int *pair) {
    AttnArgs a = block_qkv_args(m, B, qkv, qkv2, pair);
    a.Nq = 1;   // identity q_idx: token 0 of each batch element, the CLS row
    return a;
}

void tail_forward_from_qkv(const Model *m, const BlockW *w, BlockActs *a, const float *xin, float *yout, int B,
                           const Act *qkv2, const int *pair, const float *s1, const float *s2) {
    const Backend *be = m->be;
    int D = m->cfg.dim, F = m->cfg.mlp_dim;
    AttnArgs at = tail_args(m, B, a->qkv, qkv2, pair);
    Act *att = att_out(m, a);
    float *h = h_out(m, a);
    be->attention_forward(&at, att, a->lse);
    be->gather_rows_forward(h, xin, m->acts->zeros, B, m->N, 1, D);   // the CLS rows: h's residual input
    be->linear_forward(yout, att, w->projw, w->projb, B, D, D);
    Act *t = (Act *)m->acts->ftmp;   // LN2's output, then the GELU's (mlp_proj_backward recomputes them)
    be->residual_layernorm_forward(h, t, a->ln2_mean, a->ln2_rstd, h, yout, s1, w->ln2w, w->ln2b, B, 1, D,
                                   (float)m->cfg.ln_eps);   // in place: h = x_cls + s1·proj, element by element
    be->linear_forward_act(a->fc1, t, w->fc1w, w->fc1b, B, D, F);
    be->gelu_forward(t, a->fc1, (size_t)B * F);
    be->linear_forward(yout, t, w->fc2w, w->fc2b, B, F, D);
    be->residual_forward(yout, h, yout, s2, B, (size_t)D);
}

void tail_forward(const Model *m, const BlockW *w, BlockActs *a, const float *xin, float *yout, int B,
                  const Act *qkv2, const int *pair, const float *s1, const float *s2) {
    block_attn_forward(m, w, a, xin, B, qkv2, pair, false);
    tail_forward_from_qkv(m, w, a, xin, yout, B, qkv2, pair, s1, s2);
}

void tail_backward(const Model *m, const BlockW *w, const BlockW *gw, const BlockActs *a, const float *xin,
                   const float *dout, float *dxin, float *dcls, BlockGrads *g, int B, const Act *qkv2,
                   const int *pair, float *dqkv2, const float *s1, const float *s2) {
    const Backend *be = m->be;
    int D = m->cfg.dim;
    const Act *att = att_out(m, a);
    be->zero(dcls, (size_t)B * D * sizeof(float));
    mlp_proj_backward(m, w, gw, h_out(m, a), NULL, a->ln2_mean, a->ln2_rstd, a->fc1, att, dout, dcls, g, B, 1, s1,
                      s2);
    AttnArgs at = tail_args(m, B, a->qkv, qkv2, pair);   // dq: the CLS rows of dqkv (the others' stay 0)
    attn_qkv_backward(m, w, gw, a, &at, att, xin, dxin, g, B, dqkv2);
    be->gather_rows_backward(dxin, dcls, m->acts->zeros, B, m->N, 1, D);   // the CLS rows' residual path
}

// ---- GLCA ------------------------------------------------------------------

static AttnArgs glca_args(const Model *m, int B, const GlcaActs *a) {
    int D = m->cfg.dim, N = m->N, Q = 1 + m->K;
    AttnArgs at = {.B = B, .H = m->cfg.heads, .hd = D / m->cfg.heads, .Nq = Q, .q_idx = NULL,
                   .q = a->q, .q_bstride = (long)Q * D, .q_tstride = D,
                   .k1 = a->kv, .v1 = act_at(a->kv, D, (size_t)m->cfg.act_bytes), .n1 = N,
                   .kv1_bstride = (long)N * 2 * D, .kv1_tstride = 2 * D};
    at.scale = 1.0f / sqrtf((float)at.hd);
    return at;
}

void glca_forward(const Model *m, const BlockW *w, GlcaActs *a, const float *global, int B, const float *s1,
                  const float *s2) {
    const Backend *be = m->be;
    int D = m->cfg.dim, F = m->cfg.mlp_dim, Q = 1 + m->K, lr = B * Q, rows = B * m->N;
    float eps = (float)m->cfg.ln_eps;
    // q = LN1(local)·Wq, k|v = LN1(global)·Wk|Wv: the first D rows of qkv.weight are Wq.
    be->layernorm_forward(a->lnl, a->lnl_mean, a->lnl_rstd, a->yin, w->ln1w, w->ln1b, lr, D, eps);
    be->linear_forward_act(a->q, a->lnl, w->qkvw, w->qkvb, lr, D, D);
    // LN1 of the N global rows is not kept (B·N·D floats): glca_backward recomputes it.
    Act *lng = (Act *)m->acts->ftmp;
    be->layernorm_forward(lng, a->lng_mean, a->lng_rstd, global, w->ln1w, w->ln1b, rows, D, eps);
    be->linear_forward_act(a->kv, lng, w->qkvw + (size_t)D * D, w->qkvb + D, rows, D, 2 * D);
    AttnArgs at = glca_args(m, B, a);
    be->attention_forward(&at, a->att, a->lse);
    size_t per_b = (size_t)Q * D;
    be->linear_forward(a->yout, a->att, w->projw, w->projb, lr, D, D);
    Act *t = (Act *)m->acts->ftmp;   // LN2's output, then the GELU's: not kept (mlp_proj_backward)
    be->residual_layernorm_forward(a->h, t, a->ln2_mean, a->ln2_rstd, a->yin, a->yout, s1, w->ln2w, w->ln2b, B, Q, D,
                                   eps);
    be->linear_forward_act(a->fc1, t, w->fc1w, w->fc1b, lr, D, F);
    be->gelu_forward(t, a->fc1, (size_t)lr * F);
    be->linear_forward(a->yout, t, w->fc2w, w->fc2b, lr, F, D);
    be->residual_forward(a->yout, a->h, a->yout, s2, B, per_b);
}

void glca_backward(const Model *m, const BlockW *w, const BlockW *gw, const GlcaActs *a, const float *global,
                   const float *dout, float *dyin, float *dglobal, int B, const float *s1, const float *s2) {
    const Backend *be = m->be;
    Acts *x = m->acts;
    int D = m->cfg.dim, Q = 1 + m->K, lr = B * Q, rows = B * m->N;
    BlockGrads *g = &x->ggl;
    mlp_proj_backward(m, w, gw, a->h, NULL, a->ln2_mean, a->ln2_rstd, a->fc1, a->att, dout, dyin, g, B, Q, s1, s2);
    be->zero(x->dglq, (size_t)lr * D * sizeof(float));
    be->zero(x->dglkv, (size_t)rows * 2 * D * sizeof(float));
    AttnArgs at = glca_args(m, B, a);
    AttnGrads ag = {.dq = x->dglq, .dk1 = x->dglkv, .dv1 = x->dglkv + D};
    be->attention_backward(&at, &ag, a->att, a->lse, g->datt);
    be->zero(x->dlnl, (size_t)lr * D * sizeof(float));
    be->zero(x->dlng, (size_t)rows * D * sizeof(float));
    be->linear_backward(x->dlnl, gw->qkvw, gw->qkvb, x->dglq, a->lnl, w->qkvw, lr, D, D);
    const Act *lng = ln_again(m, x->ftmp, global, w->ln1w, w->ln1b, rows);   // ftmp: mlp_proj_backward is done
    be->linear_backward(x->dlng, gw->qkvw + (size_t)D * D, gw->qkvb + D, x->dglkv, lng, w->qkvw + (size_t)D * D,
                        rows, D, 2 * D);
    const float *yin = a->yin;   // block 0's local rows, gathered from global again (bit for bit) into spent ftmp
    if (!a->yin_kept) {
        be->gather_rows_forward(x->ftmp, global, x->sel, B, m->N, Q, D);
        yin = x->ftmp;
    }
    be->layernorm_backward(dyin, gw->ln1w, gw->ln1b, x->dlnl, yin, w->ln1w, a->lnl_mean, a->lnl_rstd, lr, D);
    be->layernorm_backward(dglobal, gw->ln1w, gw->ln1b, x->dlng, global, w->ln1w, a->lng_mean, a->lng_rstd, rows, D);
}

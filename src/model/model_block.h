// model_block.h: block-level forward/backward used by model_graph.c.
// s1/s2: drop-path scales [B] of the attention and MLP residuals (NULL = none).
#pragma once
#include "model/model_int.h"

// Attention views into a [B, N, 3D] qkv buffer; PWCA adds the distractor's k/v (qkv2, pair).
AttnArgs block_qkv_args(const Model *m, int B, const Act *qkv, const Act *qkv2, const int *pair);
// LN1 + qkv (+ attention when asked): the part the rollout and PWCA reuse.
void block_attn_forward(const Model *m, const BlockW *w, BlockActs *a, const float *xin, int B, const Act *qkv2,
                        const int *pair, bool attention);
// SA block (qkv2 NULL) or PWCA block (qkv2 = the SA qkv of the same layer, pair = π).
void block_forward(const Model *m, const BlockW *w, BlockActs *a, const float *xin, float *xout, int B,
                   const Act *qkv2, const int *pair, const float *s1, const float *s2);
// The same, from the attention on: a->qkv (and ln1 statistics) already made by block_attn_forward.
void block_forward_from_qkv(const Model *m, const BlockW *w, BlockActs *a, const float *xin, float *xout, int B,
                            const Act *qkv2, const int *pair, const float *s1, const float *s2);
// dxin += ∂/∂xin; parameter grads into gw; for PWCA, dk2/dv2 into dqkv2 (the SA layer's dqkv).
void block_backward(const Model *m, const BlockW *w, const BlockW *gw, const BlockActs *a, const float *xin,
                    const float *dout, float *dxin, BlockGrads *g, int B, const Act *qkv2, const int *pair,
                    float *dqkv2, const float *s1, const float *s2);
// PWCA block 0, whose q, k1, v1 are SA block 0's (z⁰ = x⁰, the same LN1 and weights): the same
// down to attention's gradients, then its dq|dk1|dv1 are added to dqkv2 (the SA layer's dqkv)
// beside dk2/dv2; the qkv GEMM's and LN1's backward, and LN1's share of dxin, are SA's.
void block_backward_to_qkv(const Model *m, const BlockW *w, const BlockW *gw, const BlockActs *a, const float *xin,
                           const float *dout, float *dxin, BlockGrads *g, int B, const Act *qkv2, const int *pair,
                           float *dqkv2, const float *s1, const float *s2);
// The last SA or PWCA block, CLS rows only (model_block.c: the CLS tail), after
// block_attn_forward made a->qkv for every row: yout [B, D] is the CLS rows of x^L (z^T).
// a's att, h, fc1 and LN2 statistics have B rows, lse [B, H].
void tail_forward_from_qkv(const Model *m, const BlockW *w, BlockActs *a, const float *xin, float *yout, int B,
                           const Act *qkv2, const int *pair, const float *s1, const float *s2);
// LN1 + qkv for every row, then the above (as block_forward is block_attn_forward + from_qkv).
void tail_forward(const Model *m, const BlockW *w, BlockActs *a, const float *xin, float *yout, int B,
                  const Act *qkv2, const int *pair, const float *s1, const float *s2);
// dout [B, D]: the gradient of yout; dxin [B, N, D] += ∂/∂xin; dcls [B, D] scratch.
void tail_backward(const Model *m, const BlockW *w, const BlockW *gw, const BlockActs *a, const float *xin,
                   const float *dout, float *dxin, float *dcls, BlockGrads *g, int B, const Act *qkv2,
                   const int *pair, float *dqkv2, const float *s1, const float *s2);
// GLCA block: local rows a->yin [B,1+K,D] attend to global [B,N,D]; output a->yout.
void glca_forward(const Model *m, const BlockW *w, GlcaActs *a, const float *global, int B, const float *s1,
                  const float *s2);
void glca_backward(const Model *m, const BlockW *w, const BlockW *gw, const GlcaActs *a, const float *global,
                   const float *dout, float *dyin, float *dglobal, int B, const float *s1, const float *s2);

// model_int.h: what model*.c share: activation layout, block views.
#pragma once
#include "model/model.h"

// Pointers to one block's 12 tensors inside params or grads (MODEL.md §6 order).
typedef struct {
    float *ln1w, *ln1b, *qkvw, *qkvb, *projw, *projb, *ln2w, *ln2b, *fc1w, *fc1b, *fc2w, *fc2b;
} BlockW;
#define BLOCK_TENSORS 12

// What a SA or PWCA block's forward keeps for backward (rows = B·N). The
// LayerNorm outputs and the GELU output are recomputed in backward instead.
// qkv, fc1 and the attention output are Act storage (backend.h: bf16 at precision bf16).
// h (x + attention's projection, LN2's input) is NULL with cfg.recompute_h in a block that
// keeps its own activations: the forward writes it to hbuf, backward makes it again. So is
// att with cfg.recompute_att (attbuf; backward runs the block's attention forward again).
typedef struct {
    float *ln1_mean, *ln1_rstd, *lse, *h, *ln2_mean, *ln2_rstd;
    Act *qkv, *fc1, *att;
} BlockActs;

// Gradient scratch of one block, reused block after block. dgelu holds at
// least rows·(D+2) floats: once spent, it takes a recomputed LayerNorm output.
typedef struct {
    float *df, *dln1, *dqkv, *datt, *dln2, *dfc1, *dgelu;   // no dh: residual_layernorm_backward keeps it in registers
    bool dqkv_in_dfc1;   // dqkv is dfc1's memory: block_backward zeroes it once the MLP half is done
} BlockGrads;

// GLCA block j: Q = 1+K local rows attend to N global rows.
typedef struct {
    float *yin;                                   // [B,Q,D] local input (j=0: z[sel])
    bool yin_kept;                                // false: forward-only, glca_backward gathers it again
    Act *lnl;                                     // local LN1 (the q GEMM's input, kept for its dW)
    float *lnl_mean, *lnl_rstd;
    Act *q;                                       // queries [B,Q,D] (Act storage)
    float *lng_mean, *lng_rstd;                   // global LN1's statistics (its output is recomputed)
    Act *kv;                                      // keys|values [B,N,2D] (Act storage)
    float *lse, *h, *ln2_mean, *ln2_rstd, *yout;
    Act *fc1, *att;
} GlcaActs;

// One classification head's activations: CLS row → LN → linear → CE.
typedef struct {
    float *cls, *mean, *rstd, *logits, *probs, *losses;
    Act *ln;   // the head GEMM's input
} HeadActs;

struct Acts {
    // The streams between blocks, the block inputs (and the checkpoints): fp32, or with
    // train.bf16_stream at bf16 Act tensors, the residual stream then rounded to bf16 where one
    // block hands it to the next (model_graph.c stream_in), with or without checkpointing.
    Act *x;            // SA stream [L][B,N,D]: x[l] enters block l (0-based); x^L is ysa's CLS rows
    Act *z;            // PWCA stream [T-1][B,N,D]: z[t-1] holds z^t, t = 1…T-1 (z⁰ is x[0], not copied)
    float *ysa, *ypw;  // [B, D]: the CLS rows of x^L and z^T, the last blocks' outputs (the CLS tail)
    // fp32 views of stream entries when the streams are bf16 (NULL at fp32, where the
    // entries are the views): sf[0] a block's input, sf[1] its output, in the forward;
    // sb a block's input in the backward; sout a recomputing forward's (discarded) output.
    float *sf[2], *sb, *sout;
    BlockActs *sa;     // L entries, or 1 shared when checkpointing
    BlockActs *pw;     // T entries, or 1 shared when checkpointing
    BlockActs rec;     // checkpointing: SA block recomputed for PWCA/rollout (= sa[0], free by then)
    GlcaActs *gl;      // M entries
    HeadActs head[3];  // SA, GLCA, PWCA
    int *sel, *zeros, *pair, *labels;   // [B,1+K], [B] of 0 (CLS gather), [B], [B]
    float *drop;       // drop-path scales [n_masks, B]
    float *keep;       // drop-path keep probability per block [n_masks / 2]; NULL without drop-path
    float *r, *rtmp;           // rollout: [B,N], [B,N] (no N×N map: MODEL.md §2)
    float *e0;                 // [B,N]: the rollout's start, 1 at each CLS (set once at allocation)
    float *lossv, *coef;       // loss_forward's out [4] (loss, CE SA/GLCA/PWCA); loss_backward's coef [3]
    float *ftmp;       // [B·N, max(F, D+2)]: a block forward's LN/GELU outputs; backward's dgelu
    float *hbuf;       // [B·N, D] with cfg.recompute_h: h of a block that keeps none (forward and backward)
    Act *attbuf;       // [B·N, D] with cfg.recompute_att: the attention output of a block that keeps none
    float *lsebuf;     // [B, H, N]: the statistics its recompute writes (the kept ones have the same bits)
    // backward scratch
    float *dx[2], *dz[2], *dgl_in, *dgl_out;  // streams; GLCA local [B,Q,D] ×2
    BlockGrads gsa, gpw, ggl;
    float *dglkv, *dglq, *dlng, *dlnl;        // GLCA specific
    float *dglx;                              // [M][B,N,D]: GLCA's gradient into x[L-M+j]
    float *dcls, *dln, *dlogits;              // heads [B,D], [B,D], [B,C]
    float *dpatch;                            // [B,N-1,D]
    float *img, *pe;                          // input [B,3,S,S], patch embedding [B,N-1,D]
    Act *cols;                                // im2col [B·P, 3p²]: the patch GEMM's input
    // host mirrors for model_read_outputs
    float *h_logits;                          // [3][B·C]
    int *h_sel;
    int *h_pair;
    bool have_pwca, have_drop;
    int B;                                    // rows of the last forward
};

BlockW model_block_w(const Model *m, float *base, int first_tensor);
BlockW model_block_gw(const Model *m, int first_tensor);   // the block's gradients (ParamTensor.goffset)
int model_sa_tensor(int l);       // first tensor index of SA block l
int model_glca_tensor(const Model *m, int j);
int model_sa_group(int l);        // ParamGroup index of SA block l
int model_glca_group(const Model *m, int j);
// Offsets of named tensors into the flat buffers (ints: tensor index).
typedef struct {
    int cls, pos, pe_w, pe_b, norm_w, norm_b, head_w, head_b, gnorm_w, gnorm_b, ghead_w, ghead_b, loss_w;
} TensorIds;
extern TensorIds model_ids(const Model *m);

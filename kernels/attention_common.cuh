// attention_common.cuh: addressing shared by the fp32 (attention.cu) and the
// tensor-core (attention_mma.cu) attention kernels. See attention.cu's header
// for the combined key index and the determinism argument.
#pragma once
#include "kernels/cuda_common.h"

// Head-h slice of query row qi of batch b (q_idx maps query rows to tokens).
__device__ __forceinline__ long q_off(const AttnArgs &a, int b, int h, int qi) {
    int tok = a.q_idx ? a.q_idx[b * a.Nq + qi] : qi;
    return b * a.q_bstride + tok * a.q_tstride + (long)h * a.hd;
}
// Offset of key kk (combined index 0..n1+n2-1) in buffer 1 or 2; *second tells which.
__device__ __forceinline__ long kv_off(const AttnArgs &a, int b, int h, int kk, bool *second) {
    *second = kk >= a.n1;
    if (!*second) return b * a.kv1_bstride + kk * a.kv1_tstride + (long)h * a.hd;
    int b2 = a.kv2_b ? a.kv2_b[b] : b;
    return b2 * a.kv2_bstride + (kk - a.n1) * a.kv2_tstride + (long)h * a.hd;
}
// Threads t < tile publish the row pointers of keys/values k0 .. k0+tile-1 of
// (b, h) into shared arrays (NULL past the last key) for the tile loaders.
__device__ __forceinline__ void kv_tile_rows(const AttnArgs &a, int b, int h, int k0, int nk, int tile, int t,
                                             const float **krow, const float **vrow) {
    if (t >= tile) return;
    const float *kp = nullptr, *vp = nullptr;
    if (k0 + t < nk) {
        bool second;
        long off = kv_off(a, b, h, k0 + t, &second);
        kp = (second ? a.k2 : a.k1) + off;
        vp = (second ? a.v2 : a.v1) + off;
    }
    krow[t] = kp;
    vrow[t] = vp;
}
// Backward: threads t < tile publish query rows i0 .. i0+tile-1 of (b, h): q and dout
// row pointers (NULL past the last query), their lse and D = rowsum(dout·out).
__device__ __forceinline__ void q_tile_rows(const AttnArgs &a, int b, int h, int i0, int tile, int t,
                                            const float *dout, const float *lse, const float *Dv, const float **qrow,
                                            const float **dorow, float *lse_s, float *D_s) {
    if (t >= tile) return;
    int qi = i0 + t;
    bool v = qi < a.Nq;
    size_t li = ((size_t)b * a.H + h) * a.Nq + qi;
    qrow[t] = v ? a.q + q_off(a, b, h, qi) : nullptr;
    dorow[t] = v ? dout + ((size_t)b * a.Nq + qi) * (size_t)(a.H * a.hd) + (size_t)h * a.hd : nullptr;
    lse_s[t] = v ? lse[li] : 0.f;
    D_s[t] = v ? Dv[li] : 0.f;
}

// attention_mma.cu: bf16 tensor-core versions (any hd <= 128). Dv = rowsum(dout·out).
void attn_mma_forward(const AttnArgs *a, float *out, float *lse);
void attn_mma_backward(const AttnArgs *a, const AttnGrads *g, const float *lse, const float *Dv, const float *dout);
// attention_fa2.cu: the bf16 forward on mma.sync m16n8k16 / ldmatrix (sm_80+, any hd <= 128).
void attn_fa2_forward(const AttnArgs *a, float *out, float *lse);
// attention_fa2_bwd.cu: its backward (dq pass, dk/dv pass), same contract and rounding as attn_mma_backward.
void attn_fa2_backward(const AttnArgs *a, const AttnGrads *g, const float *lse, const float *Dv, const float *dout);

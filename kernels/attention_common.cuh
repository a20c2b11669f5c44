// attention_common.cuh: addressing shared by the fp32 (attention.cu) and the
// tensor-core (attention_mma.cu, attention_fa2*.cu) attention kernels, and the rollout
// (rollout.cu). See attention.cu's header for the combined key index and the
// determinism argument.
//
// q, k, v are Act views (backend.h): float at precision fp32, __nv_bfloat16 at bf16
// (cuda_act_bf16()), strides in elements. A kernel reads them as `const T *` with T its
// element type, so every row pointer and tile loader below is templated on T; offsets
// are element offsets for both types (and for the fp32 gradients dq/dk/dv, which share
// the views' strides).
#pragma once
#include "kernels/cuda_common.h"
#include <cuda_bf16.h>
#include <stdint.h>

// An Act view as its element type (the caller picked T by cuda_act_bf16()).
template <class T> __device__ __host__ __forceinline__ const T *act_ptr(const Act *p) { return (const T *)p; }

// One element as fp32 (exact for both types).
__device__ __forceinline__ float elem_f32(float x) { return x; }
__device__ __forceinline__ float elem_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

// ROWS rows (pointer per row, NULL = padding row) of hd elements → a bf16 [ROWS][ld] shared
// tile, columns hd..HD-1 and padding rows zero, by NT threads. A float source (dout) is
// rounded to nearest even; a bf16 source (q/k/v) is copied. So for q/k/v values x the tile
// holds bf16(x), the bits it held when q/k/v were fp32 and rounded here: the rounding moved into
// the qkv GEMM, which stores its result once rounded to nearest even (linear_forward_act).
// VEC: copy 8 elements (16 bytes) per access where the row is 16-byte aligned and the chunk lies
// inside hd (every qkv view of the model: hd and the strides are multiples of 8), element by
// element elsewhere; else one element per access. Chosen per kernel by what ptxas reports: the
// 16-byte path lowers the FA2 forward's registers at every HD, but raises the WMMA kernels' and
// the FA2 backward's (kernels/README.md), which keep the element copy and their old registers.
// dst rows must be 16-byte aligned (ld·2 a multiple of 16), as ldmatrix and wmma want anyway.
template <int ROWS, int HD, int NT, bool VEC = false>
__device__ __forceinline__ void tile_to_bf16(__nv_bfloat16 *dst, int ld, const float *const *rows, int hd) {
    for (int e = threadIdx.x; e < ROWS * HD; e += NT) {
        int r = e / HD, c = e % HD;
        const float *p = rows[r];
        dst[r * ld + c] = __float2bfloat16(p && c < hd ? p[c] : 0.f);
    }
}
template <int ROWS, int HD, int NT, bool VEC = false>
__device__ __forceinline__ void tile_to_bf16(__nv_bfloat16 *dst, int ld, const __nv_bfloat16 *const *rows, int hd) {
    if (!VEC) {
        for (int e = threadIdx.x; e < ROWS * HD; e += NT) {
            int r = e / HD, c = e % HD;
            const __nv_bfloat16 *p = rows[r];
            dst[r * ld + c] = p && c < hd ? p[c] : __float2bfloat16(0.f);
        }
        return;
    }
    static_assert(HD % 8 == 0, "tiles are whole 16-byte chunks");
    constexpr int CH = HD / 8;   // chunks per row
    for (int e = threadIdx.x; e < ROWS * CH; e += NT) {
        int r = e / CH, c0 = (e % CH) * 8;
        const __nv_bfloat16 *p = rows[r];
        __nv_bfloat16 *d = dst + r * ld + c0;
        if (p && c0 + 8 <= hd && ((uintptr_t)(p + c0) & 15) == 0) {
            *(uint4 *)d = *(const uint4 *)(p + c0);
            continue;
        }
        for (int i = 0; i < 8; i++) d[i] = p && c0 + i < hd ? p[c0 + i] : __float2bfloat16(0.f);
    }
}

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
template <class T>
__device__ __forceinline__ void kv_tile_rows(const AttnArgs &a, int b, int h, int k0, int nk, int tile, int t,
                                             const T **krow, const T **vrow) {
    if (t >= tile) return;
    const T *kp = nullptr, *vp = nullptr;
    if (k0 + t < nk) {
        bool second;
        long off = kv_off(a, b, h, k0 + t, &second);
        kp = act_ptr<T>(second ? a.k2 : a.k1) + off;
        vp = act_ptr<T>(second ? a.v2 : a.v1) + off;
    }
    krow[t] = kp;
    vrow[t] = vp;
}
// Backward: threads t < tile publish query rows i0 .. i0+tile-1 of (b, h): q and dout
// row pointers (NULL past the last query), their lse and D = rowsum(dout·out).
template <class T>
__device__ __forceinline__ void q_tile_rows(const AttnArgs &a, int b, int h, int i0, int tile, int t,
                                            const float *dout, const float *lse, const float *Dv, const T **qrow,
                                            const float **dorow, float *lse_s, float *D_s) {
    if (t >= tile) return;
    int qi = i0 + t;
    bool v = qi < a.Nq;
    size_t li = ((size_t)b * a.H + h) * a.Nq + qi;
    qrow[t] = v ? act_ptr<T>(a.q) + q_off(a, b, h, qi) : nullptr;
    dorow[t] = v ? dout + ((size_t)b * a.Nq + qi) * (size_t)(a.H * a.hd) + (size_t)h * a.hd : nullptr;
    lse_s[t] = v ? lse[li] : 0.f;
    D_s[t] = v ? Dv[li] : 0.f;
}

// attention_mma.cu: bf16 tensor-core versions (any hd <= 128). Dv = rowsum(dout·out). out is
// the Act output at bf16 (the precision these kernels serve).
void attn_mma_forward(const AttnArgs *a, __nv_bfloat16 *out, float *lse);
void attn_mma_backward(const AttnArgs *a, const AttnGrads *g, const float *lse, const float *Dv, const float *dout);
// attention_fa2.cu: the bf16 forward on mma.sync m16n8k16 / ldmatrix (sm_80+, any hd <= 128).
void attn_fa2_forward(const AttnArgs *a, __nv_bfloat16 *out, float *lse);
// attention_fa2_bwd.cu: its backward (dq pass, dk/dv pass), same contract and rounding as attn_mma_backward.
void attn_fa2_backward(const AttnArgs *a, const AttnGrads *g, const float *lse, const float *Dv, const float *dout);

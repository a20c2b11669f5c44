// attention_fa2.cu: the attention forward in the FlashAttention-2 manner, on
// sm_80+ tensor cores through mma.sync m16n8k16 and ldmatrix (mma_sm80.cuh).
// Same contract (backend.h AttnArgs: SA, GLCA's q_idx gather, PWCA's two key
// buffers under one softmax), same rounding as attention_mma.cu's WMMA forward
// (Q, K, V and P rounded to bf16, fp32 accumulation and softmax statistics,
// the row sum over the rounded P), so the same tolerances hold and the WMMA
// backward, which takes out and lse, pairs with it. Selected by
// DCAL_CUDA_ATTN=fa2 (device.cu); WMMA stays the default until a device run
// confirms this one.
//
// Block (64-query tile, h, b), 4 warps; warp w owns query rows 16w..16w+15 of
// the tile for the whole key loop. Per 64-key tile:
//   S = Q·Kᵀ   Q's A fragments are loaded once, straight from global memory into
//              registers (q is bf16 there: no tile, no conversion, see below);
//              K's B fragments come from ldmatrix x4 of the row-major K tile (a
//              row-major K is the "col" B operand Kᵀ). S stays in accumulators.
//   softmax    lane (g, t) holds rows g and g+8, columns 8j+2t, 8j+2t+1 of S:
//              scale, mask keys ≥ n1+n2 with −inf, row max and row sum over the
//              quad (two xor shuffles each), online rescale of O — all in registers.
//   O += P·V   the S accumulator layout of two adjacent 8-key blocks is exactly
//              an A fragment of 16 keys (FA2's C→A reuse): P is packed to bf16x2
//              in place; V's B fragments come from ldmatrix .trans of the
//              row-major V tile.
// Shared memory holds only the bf16 K and V tiles (rows padded by 16 bytes,
// so the 8 row addresses of an ldmatrix hit distinct banks); nothing of Q, S, P or
// O ever goes through it, unlike the WMMA kernel, whose opaque accumulator
// layout forces every softmax step through fp32 shared memory.
//
// q, k, v arrive as bf16 (Act tensors at precision bf16, the only one this kernel
// runs at). K and V are copied into their tiles as they are (16 bytes per access);
// Q, read once per block, goes from global memory into its A fragments directly —
// while q was fp32 it went through a bf16 Q tile to be rounded, a third of the
// shared memory. For q/k/v that are the nearest-even bf16 of fp32 values x, the
// outputs are bit for bit those of the kernel that took x and rounded it on load
// (every fragment holds the same bits): that rounding moved into the qkv GEMM
// (linear_forward_act, backend.h).
//
// hd ≤ 128: the tile width HD ∈ {16, 32, 64, 128} is the next multiple of 16,
// columns hd..HD-1 are zero in Q, K and V, so they add nothing.
#include "kernels/attention_common.cuh"
#include "kernels/mma_sm80.cuh"
#include <cuda_bf16.h>

typedef __nv_bfloat16 bf16;

#define FQ 64    // query rows per block: 4 warps × 16
#define FK 64    // keys per tile
#define FT 128   // threads per block

template <int HD> struct Fa2Smem {
    static constexpr int LDH = HD + 8;   // bf16 row stride: 16-byte rows for ldmatrix, shifted 4 banks per row
    static constexpr size_t k = 0, v = k + FK * LDH * 2, bytes = v + FK * LDH * 2;
};

// 64 rows (pointer per row, NULL = padding) of hd bf16 → bf16 [64][HD+8], zero-padded, 16 bytes
// per access (fewer registers than the element copy here, at every HD: attention_common.cuh).
template <int HD>
__device__ __forceinline__ void fa2_load(bf16 *dst, const bf16 *const *rows, int hd) {
    tile_to_bf16<64, HD, FT, true>(dst, HD + 8, rows, hd);
}

// Columns c and c+1 of a bf16 row as one b32 register (c in the low half), zero at and past hd
// or for a NULL row: one element pair of an A fragment.
__device__ __forceinline__ uint32_t fa2_pair(const bf16 *row, int c, int hd) {
    if (!row) return 0u;
    if (c + 2 <= hd && ((uintptr_t)(row + c) & 3) == 0) return *(const uint32_t *)(row + c);
    uint32_t lo = c < hd ? __bfloat16_as_ushort(row[c]) : 0u, hi = c + 1 < hd ? __bfloat16_as_ushort(row[c + 1]) : 0u;
    return lo | hi << 16;
}

// The warp's Q A fragments (rows g and g+8 of its 16, given as row pointers), dims 16kk..16kk+15:
// the registers ldmatrix x4 of a zero-padded bf16 Q tile gave (mma_sm80.cuh's A layout).
template <int HD>
__device__ __forceinline__ void fa2_q_frags(uint32_t (*qf)[4], const bf16 *row_g, const bf16 *row_g8, int hd,
                                            int tq) {
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        const int c = kk * 16 + 2 * tq;
        qf[kk][0] = fa2_pair(row_g, c, hd);
        qf[kk][1] = fa2_pair(row_g8, c, hd);
        qf[kk][2] = fa2_pair(row_g, c + 8, hd);
        qf[kk][3] = fa2_pair(row_g8, c + 8, hd);
    }
}

// s[j] (16 × 8 accumulators of keys 8j..8j+7) = Q(16 × HD) · K(tile keys)ᵀ.
template <int HD>
__device__ __forceinline__ void fa2_scores(float (*s)[4], const uint32_t (*qf)[4], const bf16 *Ks, int lane) {
    constexpr int LDH = HD + 8;
#pragma unroll
    for (int j = 0; j < FK / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int np = 0; np < FK / 16; np++)
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
            // matrices: keys 16np+{0..7, 0..7, 8..15, 8..15} × dims 16kk+{0..7, 8..15, 0..7, 8..15}
            uint32_t kf[4];
            ldmatrix_x4(kf, Ks + (np * 16 + (lane / 16) * 8 + lane % 8) * LDH + kk * 16 + (lane / 8) % 2 * 8);
            mma_m16n8k16_bf16(s[2 * np], qf[kk], kf, s[2 * np]);
            mma_m16n8k16_bf16(s[2 * np + 1], qf[kk], kf + 2, s[2 * np + 1]);
        }
}

// Online softmax of the tile for this lane's two rows (half r: row g + 8r).
// Turns s into bf16-rounded probabilities, updates m and l, rescales o.
template <int HD>
__device__ __forceinline__ void fa2_softmax(float (*s)[4], float (*o)[4], float *m, float *l, int kbase, int nk,
                                            float scale) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < FK / 8; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                float v = kbase + 8 * j + e < nk ? s[j][2 * r + e] * scale : -INFINITY;
                s[j][2 * r + e] = v;
                mx = fmaxf(mx, v);
            }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // The tile's first key is real, so mx and mnew are finite; alpha = 0 on the first tile.
        float mnew = fmaxf(m[r], mx), alpha = expf(m[r] - mnew), sum = 0.f;
#pragma unroll
        for (int j = 0; j < FK / 8; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                float p = kbase + 8 * j + e < nk ? expf(s[j][2 * r + e] - mnew) : 0.f;
                p = __bfloat162float(__float2bfloat16(p));   // what P·V multiplies, and what l sums
                s[j][2 * r + e] = p;
                sum += p;
            }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        m[r] = mnew;
        l[r] = l[r] * alpha + sum;
#pragma unroll
        for (int n = 0; n < HD / 8; n++) o[n][2 * r] *= alpha, o[n][2 * r + 1] *= alpha;
    }
}

// o (16 × HD, as HD/8 accumulators) += P(16 × 64, in s) · V(tile).
template <int HD>
__device__ __forceinline__ void fa2_pv(float (*o)[4], float (*s)[4], const bf16 *Vs, int lane) {
    constexpr int LDH = HD + 8;
#pragma unroll
    for (int kb = 0; kb < FK / 16; kb++) {
        // C→A: keys 16kb..+7 are s[2kb] (rows g | g+8), keys 16kb+8..+15 are s[2kb+1].
        const uint32_t pa[4] = {pack_bf16x2(s[2 * kb][0], s[2 * kb][1]), pack_bf16x2(s[2 * kb][2], s[2 * kb][3]),
                                pack_bf16x2(s[2 * kb + 1][0], s[2 * kb + 1][1]),
                                pack_bf16x2(s[2 * kb + 1][2], s[2 * kb + 1][3])};
#pragma unroll
        for (int nd = 0; nd < HD / 16; nd++) {
            // matrices (transposed): keys 16kb+{0..7, 8..15, 0..7, 8..15} × dims 16nd+{0..7, 0..7, 8..15, 8..15}
            uint32_t vf[4];
            ldmatrix_x4_trans(vf, Vs + (kb * 16 + (lane / 8) % 2 * 8 + lane % 8) * LDH + nd * 16 + (lane / 16) * 8);
            mma_m16n8k16_bf16(o[2 * nd], pa, vf, o[2 * nd]);
            mma_m16n8k16_bf16(o[2 * nd + 1], pa, vf + 2, o[2 * nd + 1]);
        }
    }
}

template <int HD>
__global__ void __launch_bounds__(FT) attn_fwd_fa2_kernel(AttnArgs a, __nv_bfloat16 *out, float *lse) {
    typedef Fa2Smem<HD> L;
    extern __shared__ __align__(128) unsigned char smraw[];
    bf16 *Ks = (bf16 *)(smraw + L::k), *Vs = (bf16 *)(smraw + L::v);
    __shared__ const bf16 *krow[FK], *vrow[FK];
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * FQ, nk = a.n1 + a.n2;
    const int t = threadIdx.x, w = t / 32, lane = t % 32, g = lane / 4, tq = lane % 4;

    // GLCA's gather happens here: q_off maps a query row through q_idx.
    const bf16 *qrow[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int qi = q0 + w * 16 + g + 8 * r;
        qrow[r] = qi < a.Nq ? act_ptr<bf16>(a.q) + q_off(a, b, h, qi) : nullptr;
    }
    uint32_t qf[HD / 16][4];   // A fragments of the warp's 16 rows, dims 16kk..16kk+15
    fa2_q_frags<HD>(qf, qrow[0], qrow[1], a.hd, tq);

    float o[HD / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;

    for (int k0 = 0; k0 < nk; k0 += FK) {
        __syncthreads();   // every warp is done with the previous Ks/Vs
        kv_tile_rows(a, b, h, k0, nk, FK, t, krow, vrow);   // PWCA: rows from k1/v1, then k2/v2
        __syncthreads();
        fa2_load<HD>(Ks, krow, a.hd);
        fa2_load<HD>(Vs, vrow, a.hd);
        __syncthreads();
        float s[FK / 8][4];
        fa2_scores<HD>(s, qf, Ks, lane);
        fa2_softmax<HD>(s, o, m, l, k0 + 2 * tq, nk, a.scale);
        fa2_pv<HD>(o, s, Vs, lane);
    }

    const int D = a.H * a.hd;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int qi = q0 + w * 16 + g + 8 * r;
        if (qi >= a.Nq) continue;
        float inv = 1.f / l[r];
        __nv_bfloat16 *orow = out + ((size_t)b * a.Nq + qi) * D + (size_t)h * a.hd;   // an Act: bf16
#pragma unroll
        for (int n = 0; n < HD / 8; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int c = 8 * n + 2 * tq + e;
                if (c < a.hd) orow[c] = __float2bfloat16_rn(o[n][2 * r + e] * inv);
            }
        if (tq == 0) lse[((size_t)b * a.H + h) * a.Nq + qi] = m[r] + logf(l[r]);
    }
}

template <int HD> static void fwd_fa2(const AttnArgs *a, __nv_bfloat16 *out, float *lse) {
    static int raised;
    if (!raised) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_fwd_fa2_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)Fa2Smem<HD>::bytes));
        raised = 1;
    }
    dim3 grid(cdiv(a->Nq, FQ), a->H, a->B);
    attn_fwd_fa2_kernel<HD><<<grid, FT, Fa2Smem<HD>::bytes, cuda_stream()>>>(*a, out, lse);
    LAUNCH_CHECK();
}

void attn_fa2_forward(const AttnArgs *a, __nv_bfloat16 *out, float *lse) {
    if (a->hd <= 16) fwd_fa2<16>(a, out, lse);
    else if (a->hd <= 32) fwd_fa2<32>(a, out, lse);
    else if (a->hd <= 64) fwd_fa2<64>(a, out, lse);
    else fwd_fa2<128>(a, out, lse);
}

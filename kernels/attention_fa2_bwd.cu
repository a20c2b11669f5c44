// attention_fa2_bwd.cu: the attention backward in the FlashAttention-2 manner, on
// sm_80+ tensor cores through mma.sync m16n8k16 and ldmatrix (mma_sm80.cuh); the
// pair of attention_fa2.cu's forward, selected with it by DCAL_CUDA_ATTN=fa2.
// Same contract (backend.h: SA; GLCA's dq scattered back through q_idx; PWCA's
// dk2/dv2 rows summed over every image that used them), same passes, block
// shapes and rounding as attention_mma.cu's WMMA backward: q, k, v in bf16 (Act
// tensors at precision bf16, copied into their tiles as they are), dout rounded
// to bf16 as its tile loads, p = exp(s·scale − lse) and dS = p·(dP − D) in
// fp32, both rounded to bf16 only as the operands of their products, fp32
// accumulation. So the op table's bf16 tolerance holds unchanged. For q/k/v that are
// the nearest-even bf16 of fp32 values x, bit for bit the gradients of the kernels
// that took x and rounded it on load: that rounding moved into the qkv GEMM
// (linear_forward_act, backend.h).
//
// dq pass, block (64-query tile, h, b), warp w owns query rows 16w..16w+15:
//   S = Q·Kᵀ, dP = dO·Vᵀ   accumulators s[j], dp[j]: lane (g, t) holds rows g and
//                          g+8, keys 8j+2t and 8j+2t+1 (the C layout);
//   dS                     elementwise in those registers (lse and D of the
//                          lane's two rows are two scalars each);
//   dQ += dS·K             dS's accumulators are an A fragment as they stand (two
//                          adjacent 8-key C tiles = one 16-key A tile, as the
//                          forward's P); K's B fragments: ldmatrix .trans of the
//                          row-major K tile (k = key, n = dim).
// dk/dv pass, block (64-key tile, h, target batch bt), warp w owns key rows
// 16w..16w+15, loops over every query tile of every source image (bt itself for
// buffer 1; each b with kv2_b[b] == bt, in increasing b, for buffer 2: the WMMA
// pass's scheme, so several images sharing one distractor add into its rows in a
// fixed order, one writer per row, no atomics):
//   Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ  computed transposed from the start (K, V as the A
//                          operands, Q, dO rows as the B operands), so the lane
//                          holds keys g, g+8 × queries 8j+2t, 8j+2t+1;
//   Pᵀ, dSᵀ                elementwise; lse and D now vary along the columns
//                          (queries), read per column from shared memory;
//   dV += Pᵀ·dO, dK += dSᵀ·Q   Pᵀ and dSᵀ are A fragments by the same C→A reuse,
//                          dO and Q B fragments by ldmatrix .trans.
// So no accumulator is ever transposed between registers: the transposed
// products Pᵀ·dO and dSᵀ·Q need their left operand with keys along the rows,
// which is exactly how the transposed score product leaves them (in the
// accumulator layout a lane holds one row pair and a column pair; a register
// transpose would need shuffles across quads, or a round trip through shared
// memory, both avoided this way). The cost is the recomputed S and dP in both
// passes (7 products instead of FA2's 5 with dq atomics), the price of a
// deterministic dq without atomics.
//
// Operands are read from shared memory by ldmatrix at each use (A included,
// unlike the forward's register-resident Q fragments): the dk/dv pass keeps two
// 16 × HD fp32 accumulators per warp plus S and dP, and K/V fragments on top
// would push HD = 128 far past the register file.
//
// hd ≤ 128: the tile width HD ∈ {16, 32, 64, 128} is the next multiple of 16,
// columns hd..HD-1 are zero in every tile, so they add nothing.
#include "kernels/attention_common.cuh"
#include "kernels/mma_sm80.cuh"
#include <cuda_bf16.h>

typedef __nv_bfloat16 bf16;

#define BT 64    // tile rows (queries in the dq pass, keys in the dk/dv pass), 4 warps × 16
#define BK 64    // tile columns: the other side
#define BNT 128  // threads per block

template <int HD> struct Fa2BwdSmem {
    static constexpr int LDH = HD + 8;   // bf16 row stride: 16-byte rows for ldmatrix, shifted 4 banks per row
    static constexpr size_t tile = (size_t)BT * LDH * 2, bytes = 4 * tile;   // four bf16 operand tiles
};

// 64 rows (pointer per row, NULL = padding) of hd bf16 (q/k/v: copied) or floats (dout: rounded to
// nearest even) → bf16 [64][HD+8], zero-padded.
template <int HD, class T>
__device__ __forceinline__ void fb_load(bf16 *dst, const T *const *rows, int hd) {
    tile_to_bf16<BT, HD, BNT>(dst, HD + 8, rows, hd);
}

// c[j] (16 × 8 accumulators, columns 8j..8j+7) = A(the warp's 16 rows of As) · B(64 rows of Bs)ᵀ.
template <int HD>
__device__ __forceinline__ void fb_abt(float (*c)[4], const bf16 *As, const bf16 *Bs, int lane) {
    constexpr int LDH = HD + 8;
#pragma unroll
    for (int j = 0; j < BK / 8; j++) c[j][0] = c[j][1] = c[j][2] = c[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        // matrices: rows {0..7, 8..15, 0..7, 8..15} × dims 16kk+{0..7, 0..7, 8..15, 8..15} → a[0..3]
        uint32_t af[4];
        ldmatrix_x4(af, As + (lane % 16) * LDH + kk * 16 + (lane / 16) * 8);
#pragma unroll
        for (int np = 0; np < BK / 16; np++) {
            // matrices: B rows 16np+{0..7, 0..7, 8..15, 8..15} × dims 16kk+{0..7, 8..15, 0..7, 8..15}
            uint32_t bfr[4];
            ldmatrix_x4(bfr, Bs + (np * 16 + (lane / 16) * 8 + lane % 8) * LDH + kk * 16 + (lane / 8) % 2 * 8);
            mma_m16n8k16_bf16(c[2 * np], af, bfr, c[2 * np]);
            mma_m16n8k16_bf16(c[2 * np + 1], af, bfr + 2, c[2 * np + 1]);
        }
    }
}

// acc (16 × HD as HD/8 accumulators) += X(16 × 64, in accumulator layout; rounded to bf16
// here, the contract's one rounding of p and dS) · B(64 rows × HD of Bs, row-major k × n).
template <int HD>
__device__ __forceinline__ void fb_xb(float (*acc)[4], const float (*x)[4], const bf16 *Bs, int lane) {
    constexpr int LDH = HD + 8;
#pragma unroll
    for (int kb = 0; kb < BK / 16; kb++) {
        // C→A: columns 16kb..+7 are x[2kb] (rows g | g+8), columns 16kb+8..+15 are x[2kb+1].
        const uint32_t xa[4] = {pack_bf16x2(x[2 * kb][0], x[2 * kb][1]), pack_bf16x2(x[2 * kb][2], x[2 * kb][3]),
                                pack_bf16x2(x[2 * kb + 1][0], x[2 * kb + 1][1]),
                                pack_bf16x2(x[2 * kb + 1][2], x[2 * kb + 1][3])};
#pragma unroll
        for (int nd = 0; nd < HD / 16; nd++) {
            // matrices (transposed): rows 16kb+{0..7, 8..15, 0..7, 8..15} × dims 16nd+{0..7, 0..7, 8..15, 8..15}
            uint32_t bfr[4];
            ldmatrix_x4_trans(bfr, Bs + (kb * 16 + (lane / 8) % 2 * 8 + lane % 8) * LDH + nd * 16 + (lane / 16) * 8);
            mma_m16n8k16_bf16(acc[2 * nd], xa, bfr, acc[2 * nd]);
            mma_m16n8k16_bf16(acc[2 * nd + 1], xa, bfr + 2, acc[2 * nd + 1]);
        }
    }
}

// rows[g + 8r][c] += alpha · acc (the lane's elements of the warp's 16 × HD result); NULL rows skipped.
template <int HD>
__device__ __forceinline__ void fb_add_rows(float *const *rows, const float (*acc)[4], int hd, float alpha, int lane) {
    const int g = lane / 4, tq = lane % 4;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float *row = rows[g + 8 * r];
        if (!row) continue;
#pragma unroll
        for (int n = 0; n < HD / 8; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int c = 8 * n + 2 * tq + e;
                if (c < hd) row[c] += alpha * acc[n][2 * r + e];
            }
    }
}

template <int HD>
__device__ __forceinline__ void fb_zero(float (*acc)[4]) {
#pragma unroll
    for (int n = 0; n < HD / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
}

// ---------------------------------------------------------------- dq
template <int HD>
__global__ void __launch_bounds__(BNT) attn_bwd_dq_fa2_kernel(AttnArgs a, float *dq, const float *lse,
                                                              const float *Dv, const float *dout) {
    typedef Fa2BwdSmem<HD> L;
    extern __shared__ __align__(128) unsigned char smraw[];
    bf16 *Qs = (bf16 *)smraw, *dOs = (bf16 *)(smraw + L::tile);
    bf16 *Ks = (bf16 *)(smraw + 2 * L::tile), *Vs = (bf16 *)(smraw + 3 * L::tile);
    __shared__ const bf16 *qrow[BT], *krow[BK], *vrow[BK];
    __shared__ const float *dorow[BT];
    __shared__ float *dqrow[BT];
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * BT, nk = a.n1 + a.n2, D = a.H * a.hd;
    const int t = threadIdx.x, w = t / 32, lane = t % 32, g = lane / 4, tq = lane % 4;

    if (t < BT) {   // GLCA: q_off maps query rows through q_idx, for the load and for dq's scatter
        bool v = q0 + t < a.Nq;
        long off = v ? q_off(a, b, h, q0 + t) : 0;
        qrow[t] = v ? act_ptr<bf16>(a.q) + off : nullptr;
        dqrow[t] = v ? dq + off : nullptr;
        dorow[t] = v ? dout + ((size_t)b * a.Nq + q0 + t) * D + (size_t)h * a.hd : nullptr;
    }
    __syncthreads();
    fb_load<HD>(Qs, qrow, a.hd);
    fb_load<HD>(dOs, dorow, a.hd);
    float lse_r[2], D_r[2];
    bool qv[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int qi = q0 + w * 16 + g + 8 * r;
        size_t li = ((size_t)b * a.H + h) * a.Nq + qi;
        qv[r] = qi < a.Nq;
        lse_r[r] = qv[r] ? lse[li] : 0.f;
        D_r[r] = qv[r] ? Dv[li] : 0.f;
    }
    float acc[HD / 8][4];
    fb_zero<HD>(acc);

    for (int k0 = 0; k0 < nk; k0 += BK) {
        __syncthreads();   // every warp is done with the previous Ks/Vs (and, first time, Q/dO are loaded)
        kv_tile_rows(a, b, h, k0, nk, BK, t, krow, vrow);   // PWCA: rows from k1/v1, then k2/v2
        __syncthreads();
        fb_load<HD>(Ks, krow, a.hd);
        fb_load<HD>(Vs, vrow, a.hd);
        __syncthreads();
        float s[BK / 8][4], dp[BK / 8][4];
        fb_abt<HD>(s, Qs + w * 16 * L::LDH, Ks, lane);     // S  = Q Kᵀ
        fb_abt<HD>(dp, dOs + w * 16 * L::LDH, Vs, lane);   // dP = dO Vᵀ
#pragma unroll
        for (int j = 0; j < BK / 8; j++)
#pragma unroll
            for (int r = 0; r < 2; r++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    float ds = 0.f;
                    if (qv[r] && k0 + 8 * j + 2 * tq + e < nk) {
                        float p = expf(s[j][2 * r + e] * a.scale - lse_r[r]);
                        ds = p * (dp[j][2 * r + e] - D_r[r]);
                    }
                    s[j][2 * r + e] = ds;
                }
        fb_xb<HD>(acc, s, Ks, lane);   // dQ += dS K
    }
    fb_add_rows<HD>(dqrow + w * 16, acc, a.hd, a.scale, lane);
}

// ---------------------------------------------------------------- dk, dv
template <int HD>
__global__ void __launch_bounds__(BNT) attn_bwd_dkv_fa2_kernel(AttnArgs a, float *dk, float *dv, int second,
                                                               const float *lse, const float *Dv, const float *dout) {
    typedef Fa2BwdSmem<HD> L;
    extern __shared__ __align__(128) unsigned char smraw[];
    bf16 *Ks = (bf16 *)smraw, *Vs = (bf16 *)(smraw + L::tile);
    bf16 *Qs = (bf16 *)(smraw + 2 * L::tile), *dOs = (bf16 *)(smraw + 3 * L::tile);
    __shared__ const bf16 *krow[BT], *vrow[BT], *qrow[BK];
    __shared__ const float *dorow[BK];
    __shared__ float *dkrow[BT], *dvrow[BT];
    __shared__ float lse_s[BK], D_s[BK];
    const int bt = blockIdx.z, h = blockIdx.y, j0 = blockIdx.x * BT;
    const int t = threadIdx.x, w = t / 32, lane = t % 32, g = lane / 4, tq = lane % 4;
    const int n = second ? a.n2 : a.n1;
    const long bs_ = second ? a.kv2_bstride : a.kv1_bstride, ts_ = second ? a.kv2_tstride : a.kv1_tstride;
    const bool kv[2] = {j0 + w * 16 + g < n, j0 + w * 16 + g + 8 < n};

    if (t < BT) {
        bool v = j0 + t < n;
        long off = bt * bs_ + (j0 + t) * ts_ + (long)h * a.hd;
        krow[t] = v ? act_ptr<bf16>(second ? a.k2 : a.k1) + off : nullptr;
        vrow[t] = v ? act_ptr<bf16>(second ? a.v2 : a.v1) + off : nullptr;
        dkrow[t] = v && dk ? dk + off : nullptr;
        dvrow[t] = v && dv ? dv + off : nullptr;
    }
    __syncthreads();
    fb_load<HD>(Ks, krow, a.hd);
    fb_load<HD>(Vs, vrow, a.hd);
    float gk[HD / 8][4], gv[HD / 8][4];
    fb_zero<HD>(gk);
    fb_zero<HD>(gv);

    for (int b = second ? 0 : bt; b < (second ? a.B : bt + 1); b++) {
        if (second && (a.kv2_b ? a.kv2_b[b] : b) != bt) continue;   // uniform across the block
        for (int i0 = 0; i0 < a.Nq; i0 += BK) {
            __syncthreads();   // every warp is done with the previous Qs/dOs/lse_s/D_s
            q_tile_rows(a, b, h, i0, BK, t, dout, lse, Dv, qrow, dorow, lse_s, D_s);
            __syncthreads();
            fb_load<HD>(Qs, qrow, a.hd);
            fb_load<HD>(dOs, dorow, a.hd);
            __syncthreads();
            float s[BK / 8][4], dp[BK / 8][4];
            fb_abt<HD>(s, Ks + w * 16 * L::LDH, Qs, lane);     // Sᵀ  = K Qᵀ
            fb_abt<HD>(dp, Vs + w * 16 * L::LDH, dOs, lane);   // dPᵀ = V dOᵀ
#pragma unroll
            for (int j = 0; j < BK / 8; j++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int c = 8 * j + 2 * tq + e;   // the query column this register pair holds
                    const bool qv = i0 + c < a.Nq;
                    const float ls = lse_s[c], dd = D_s[c];
#pragma unroll
                    for (int r = 0; r < 2; r++) {
                        float p = 0.f, ds = 0.f;
                        if (kv[r] && qv) {
                            p = expf(s[j][2 * r + e] * a.scale - ls);
                            ds = p * (dp[j][2 * r + e] - dd);
                        }
                        s[j][2 * r + e] = p;
                        dp[j][2 * r + e] = ds;
                    }
                }
            fb_xb<HD>(gv, s, dOs, lane);   // dV += Pᵀ dO
            fb_xb<HD>(gk, dp, Qs, lane);   // dK += dSᵀ Q
        }
    }
    fb_add_rows<HD>(dkrow + w * 16, gk, a.hd, a.scale, lane);
    fb_add_rows<HD>(dvrow + w * 16, gv, a.hd, 1.f, lane);
}

// ---------------------------------------------------------------- host side
template <int HD> static void raise_smem_fa2_bwd(void) {
    static int done;
    if (done) return;
    CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_dq_fa2_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)Fa2BwdSmem<HD>::bytes));
    CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_dkv_fa2_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)Fa2BwdSmem<HD>::bytes));
    done = 1;
}

template <int HD> static void bwd_fa2(const AttnArgs *a, const AttnGrads *g, const float *lse, const float *Dv,
                                      const float *dout) {
    raise_smem_fa2_bwd<HD>();
    const size_t sm = Fa2BwdSmem<HD>::bytes;
    if (g->dq) {
        dim3 grid(cdiv(a->Nq, BT), a->H, a->B);
        attn_bwd_dq_fa2_kernel<HD><<<grid, BNT, sm, cuda_stream()>>>(*a, g->dq, lse, Dv, dout);
        LAUNCH_CHECK();
    }
    if ((g->dk1 || g->dv1) && a->n1 > 0) {
        dim3 grid(cdiv(a->n1, BT), a->H, a->B);
        attn_bwd_dkv_fa2_kernel<HD><<<grid, BNT, sm, cuda_stream()>>>(*a, g->dk1, g->dv1, 0, lse, Dv, dout);
        LAUNCH_CHECK();
    }
    if ((g->dk2 || g->dv2) && a->n2 > 0) {
        dim3 grid(cdiv(a->n2, BT), a->H, a->B);
        attn_bwd_dkv_fa2_kernel<HD><<<grid, BNT, sm, cuda_stream()>>>(*a, g->dk2, g->dv2, 1, lse, Dv, dout);
        LAUNCH_CHECK();
    }
}

void attn_fa2_backward(const AttnArgs *a, const AttnGrads *g, const float *lse, const float *Dv, const float *dout) {
    if (a->hd <= 16) bwd_fa2<16>(a, g, lse, Dv, dout);
    else if (a->hd <= 32) bwd_fa2<32>(a, g, lse, Dv, dout);
    else if (a->hd <= 64) bwd_fa2<64>(a, g, lse, Dv, dout);
    else bwd_fa2<128>(a, g, lse, Dv, dout);
}

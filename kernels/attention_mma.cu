// attention_mma.cu: the tensor-core attention (ARCHITECTURE.md §5: bf16 operands, fp32
// accumulation, fp32 softmax statistics). Same contract, same tiling order and
// same one-writer-per-gradient-row scheme as the fp32 kernels in attention.cu,
// which stay as the reference (precision "fp32" selects them).
//
// WMMA m16n16k16 bf16 → fp32. A block is 4 warps; each warp owns 16 rows of a
// 64-row tile and multiplies against a 64-wide tile of the other side. The
// accumulator fragment layout is opaque, so every elementwise step (scale,
// mask, exp, online-softmax rescale) goes through fp32 shared memory, where a
// row belongs to 2 lanes (32 columns each). Rows are padded (bf16 by 8, fp32
// by 4) against bank conflicts; every fragment pointer is 32-byte aligned, as
// wmma requires (16-row offsets × padded strides are multiples of 32 bytes).
//
// q, k, v arrive as bf16 (Act tensors at precision bf16, the only one these kernels
// run at) and are copied into the shared tiles as they are; dout is fp32 and is
// rounded to bf16 (nearest even) as its tile loads. For q/k/v that are the nearest-even
// bf16 of fp32 values x, the outputs are bit for bit those of the kernels that took x
// and rounded them on load (the shared tiles hold the same bits): that rounding moved
// into the qkv GEMM, which stores its result once rounded (linear_forward_act; its
// bias is itself bf16 there, backend.h, so a model's q/k/v may differ from the old
// bf16(x) in the last bit, not the kernels' arithmetic). Probabilities and dS are rounded to
// bf16 before their products (the row sum l uses the rounded p, so normalisation
// matches what was multiplied).
// hd < HD columns are zero-padded, so any hd ≤ 128 works.
#include "kernels/attention_common.cuh"
#include <cuda_bf16.h>
#include <mma.h>

using namespace nvcuda;
typedef __nv_bfloat16 bf16;

#define MT 64    // tile rows: queries (forward, dq) or keys (dk/dv)
#define MK 64    // tile columns: the other side
#define MNT 128  // 4 warps × 16 rows
#define LDS (MK + 4)   // fp32 score rows
#define LDP (MK + 8)   // bf16 probability rows

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> FragBr;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> FragBc;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

// MT rows (pointer per row, NULL = padding) of bf16 (q/k/v) or fp32 (dout) → bf16 [MT][HD+8],
// zero-padded (attention_common.cuh: copied, or rounded to nearest even).
template <int HD, class T>
__device__ __forceinline__ void load_bf16(bf16 *dst, const T *const *rows, int hd) {
    tile_to_bf16<MT, HD, MNT>(dst, HD + 8, rows, hd);
}

// C[16 × 64] (fp32, ld LDS) = A[16 × HD] · Bᵀ where B is [64][HD] row-major,
// i.e. Bᵀ read as a column-major HD × 64 matrix. Both in bf16 shared memory.
template <int HD>
__device__ __forceinline__ void mm_abt(float *C, const bf16 *A, const bf16 *B) {
    constexpr int LDH = HD + 8;
#pragma unroll
    for (int n = 0; n < MK / 16; n++) {
        FragC c;
        wmma::fill_fragment(c, 0.f);
#pragma unroll
        for (int k = 0; k < HD / 16; k++) {
            FragA fa;
            FragBc fb;
            wmma::load_matrix_sync(fa, A + k * 16, LDH);
            wmma::load_matrix_sync(fb, B + n * 16 * LDH + k * 16, LDH);
            wmma::mma_sync(c, fa, fb, c);
        }
        wmma::store_matrix_sync(C + n * 16, c, LDS, wmma::mem_row_major);
    }
}

// acc[n] (16 × 16 blocks of a 16 × HD result) += P[16 × 64] (bf16, ld LDP) · V[64][HD] (bf16 row-major).
template <int HD>
__device__ __forceinline__ void mm_ab_acc(FragC *acc, const bf16 *P, const bf16 *V) {
    constexpr int LDH = HD + 8;
#pragma unroll
    for (int k = 0; k < MK / 16; k++) {
        FragA fa;
        wmma::load_matrix_sync(fa, P + k * 16, LDP);
#pragma unroll
        for (int n = 0; n < HD / 16; n++) {
            FragBr fb;
            wmma::load_matrix_sync(fb, V + k * 16 * LDH + n * 16, LDH);
            wmma::mma_sync(acc[n], fa, fb, acc[n]);
        }
    }
}

// Add alpha·acc (a warp's 16 × HD result) into global rows dst[r] (NULL: skip),
// one 16 × 16 block at a time through the warp's slice of a fp32 scratch tile.
template <int HD>
__device__ __forceinline__ void add_out(float *stage, const FragC *acc, float *const *dst, int hd, float alpha) {
    int lane = threadIdx.x % 32;
#pragma unroll
    for (int n = 0; n < HD / 16; n++) {
        wmma::store_matrix_sync(stage, acc[n], LDS, wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 256; e += 32) {
            int r = e / 16, c = n * 16 + e % 16;
            if (dst[r] && c < hd) dst[r][c] += alpha * stage[r * LDS + e % 16];
        }
        __syncwarp();
    }
}

template <int HD> struct FwdSmem {
    static constexpr int LDH = HD + 8, LDO = HD + 4;
    static constexpr size_t q = 0, k = q + MT * LDH * 2, v = k + MK * LDH * 2, s = v + MK * LDH * 2;
    static constexpr size_t p = s + MT * LDS * 4, o = p + MT * LDP * 2, bytes = o + MT * LDO * 4;
};

// ---------------------------------------------------------------- forward
// Block (64-query tile, h, b). The output accumulator O lives in shared fp32
// so the per-row online-softmax rescale can address it; each key tile loads it
// into fragments, adds P·V and stores it back.
template <int HD>
__global__ void __launch_bounds__(MNT) attn_fwd_mma_kernel(AttnArgs a, __nv_bfloat16 *out, float *lse) {
    typedef FwdSmem<HD> L;
    extern __shared__ __align__(128) unsigned char smraw[];
    bf16 *Qs = (bf16 *)(smraw + L::q), *Ks = (bf16 *)(smraw + L::k), *Vs = (bf16 *)(smraw + L::v);
    float *Ss = (float *)(smraw + L::s), *Os = (float *)(smraw + L::o);
    bf16 *Ps = (bf16 *)(smraw + L::p);
    __shared__ const bf16 *qrow[MT], *krow[MK], *vrow[MK];
    __shared__ float m_s[MT], l_s[MT];
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * MT, nk = a.n1 + a.n2;
    const int t = threadIdx.x, w = t / 32, lane = t % 32;
    const int r = w * 16 + lane / 2, half = lane % 2;   // softmax ownership: row r, columns half*32..+32

    if (t < MT) {
        qrow[t] = q0 + t < a.Nq ? act_ptr<bf16>(a.q) + q_off(a, b, h, q0 + t) : nullptr;
        m_s[t] = -INFINITY;
        l_s[t] = 0.f;
    }
    for (int e = t; e < MT * L::LDO; e += MNT) Os[e] = 0.f;
    __syncthreads();
    load_bf16<HD>(Qs, qrow, a.hd);

    for (int k0 = 0; k0 < nk; k0 += MK) {
        __syncthreads();   // all warps are done with the previous Ks/Vs
        kv_tile_rows(a, b, h, k0, nk, MK, t, krow, vrow);
        __syncthreads();
        load_bf16<HD>(Ks, krow, a.hd);
        load_bf16<HD>(Vs, vrow, a.hd);
        __syncthreads();

        mm_abt<HD>(Ss + w * 16 * LDS, Qs + w * 16 * L::LDH, Ks);
        __syncwarp();

        // Online softmax on row r (two lanes). k0 < nk: column 0 is real, so mnew is finite.
        float *srow = Ss + r * LDS + half * 32;
        float mx = -INFINITY;
        for (int c = 0; c < 32; c++)
            if (k0 + half * 32 + c < nk) mx = fmaxf(mx, srow[c] * a.scale);
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        float mold = m_s[r], mnew = fmaxf(mold, mx), alpha = expf(mold - mnew), sum = 0.f;
        for (int c = 0; c < 32; c++) {
            float p = k0 + half * 32 + c < nk ? expf(srow[c] * a.scale - mnew) : 0.f;
            bf16 pb = __float2bfloat16(p);
            Ps[r * LDP + half * 32 + c] = pb;
            sum += __bfloat162float(pb);
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        for (int c = half * (HD / 2); c < (half + 1) * (HD / 2); c++) Os[r * L::LDO + c] *= alpha;
        __syncwarp();   // both lanes of row r have read m_s[r]/l_s[r]
        if (half == 0) {
            m_s[r] = mnew;
            l_s[r] = l_s[r] * alpha + sum;
        }
        __syncwarp();   // Ps and the rescaled Os rows are complete

        FragC acc[HD / 16];
#pragma unroll
        for (int n = 0; n < HD / 16; n++)
            wmma::load_matrix_sync(acc[n], Os + w * 16 * L::LDO + n * 16, L::LDO, wmma::mem_row_major);
        mm_ab_acc<HD>(acc, Ps + w * 16 * LDP, Vs);
#pragma unroll
        for (int n = 0; n < HD / 16; n++)
            wmma::store_matrix_sync(Os + w * 16 * L::LDO + n * 16, acc[n], L::LDO, wmma::mem_row_major);
        __syncwarp();
    }

    const int qi = q0 + r;
    if (qi >= a.Nq) return;
    const int D = a.H * a.hd;
    float inv = 1.f / l_s[r];
    __nv_bfloat16 *orow = out + ((size_t)b * a.Nq + qi) * D + (size_t)h * a.hd;   // an Act: bf16
    for (int c = half; c < a.hd; c += 2) orow[c] = __float2bfloat16_rn(Os[r * L::LDO + c] * inv);
    if (half == 0) lse[((size_t)b * a.H + h) * a.Nq + qi] = m_s[r] + logf(l_s[r]);
}

// ---------------------------------------------------------------- backward
template <int HD> struct BwdSmem {
    static constexpr int LDH = HD + 8;
    // four bf16 operand tiles, two fp32 score tiles, two bf16 probability tiles
    static constexpr size_t t0 = 0, t1 = t0 + MT * LDH * 2, t2 = t1 + MT * LDH * 2, t3 = t2 + MT * LDH * 2;
    static constexpr size_t s0 = t3 + MT * LDH * 2, s1 = s0 + MT * LDS * 4, p0 = s1 + MT * LDS * 4;
    static constexpr size_t p1 = p0 + MT * LDP * 2, bytes = p1 + MT * LDP * 2;
};

// dq: block (64-query tile, h, b) loops over every key tile; dQ stays in fragments.
template <int HD>
__global__ void __launch_bounds__(MNT) attn_bwd_dq_mma_kernel(AttnArgs a, float *dq, const float *lse,
                                                              const float *Dv, const float *dout) {
    typedef BwdSmem<HD> L;
    extern __shared__ __align__(128) unsigned char smraw[];
    bf16 *Qs = (bf16 *)(smraw + L::t0), *dOs = (bf16 *)(smraw + L::t1);
    bf16 *Ks = (bf16 *)(smraw + L::t2), *Vs = (bf16 *)(smraw + L::t3);
    float *Ss = (float *)(smraw + L::s0), *dPs = (float *)(smraw + L::s1);
    bf16 *dSs = (bf16 *)(smraw + L::p0);
    __shared__ const bf16 *qrow[MT], *krow[MK], *vrow[MK];
    __shared__ const float *dorow[MT];
    __shared__ float *dqrow[MT];
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * MT, nk = a.n1 + a.n2, D = a.H * a.hd;
    const int t = threadIdx.x, w = t / 32, lane = t % 32, r = w * 16 + lane / 2, half = lane % 2;
    const bool qvalid = q0 + r < a.Nq;

    if (t < MT) {
        bool v = q0 + t < a.Nq;
        long off = v ? q_off(a, b, h, q0 + t) : 0;
        qrow[t] = v ? act_ptr<bf16>(a.q) + off : nullptr;
        dqrow[t] = v ? dq + off : nullptr;
        dorow[t] = v ? dout + ((size_t)b * a.Nq + q0 + t) * D + (size_t)h * a.hd : nullptr;
    }
    __syncthreads();
    load_bf16<HD>(Qs, qrow, a.hd);
    load_bf16<HD>(dOs, dorow, a.hd);
    const size_t li = ((size_t)b * a.H + h) * a.Nq + q0 + r;
    const float lse_r = qvalid ? lse[li] : 0.f, D_r = qvalid ? Dv[li] : 0.f;

    FragC acc[HD / 16];
#pragma unroll
    for (int n = 0; n < HD / 16; n++) wmma::fill_fragment(acc[n], 0.f);

    for (int k0 = 0; k0 < nk; k0 += MK) {
        __syncthreads();
        kv_tile_rows(a, b, h, k0, nk, MK, t, krow, vrow);
        __syncthreads();
        load_bf16<HD>(Ks, krow, a.hd);
        load_bf16<HD>(Vs, vrow, a.hd);
        __syncthreads();
        mm_abt<HD>(Ss + w * 16 * LDS, Qs + w * 16 * L::LDH, Ks);     // S  = Q Kᵀ
        mm_abt<HD>(dPs + w * 16 * LDS, dOs + w * 16 * L::LDH, Vs);   // dP = dO Vᵀ
        __syncwarp();
        for (int c = half * 32; c < half * 32 + 32; c++) {
            float ds = 0.f;
            if (qvalid && k0 + c < nk) {
                float p = expf(Ss[r * LDS + c] * a.scale - lse_r);
                ds = p * (dPs[r * LDS + c] - D_r);
            }
            dSs[r * LDP + c] = __float2bfloat16(ds);
        }
        __syncwarp();
        mm_ab_acc<HD>(acc, dSs + w * 16 * LDP, Ks);   // dQ += dS K
    }
    add_out<HD>(Ss + w * 16 * LDS, acc, dqrow + w * 16, a.hd, a.scale);
}

// dk, dv of one key buffer: block (64-key tile, h, target batch bt) owns those
// key rows and loops over the queries of every source batch element reading
// them (bt itself for buffer 1; each b with kv2_b[b] == bt for buffer 2), as in
// attention.cu. dK and dV stay in fragments.
template <int HD>
__global__ void __launch_bounds__(MNT) attn_bwd_dkv_mma_kernel(AttnArgs a, float *dk, float *dv, int second,
                                                               const float *lse, const float *Dv, const float *dout) {
    typedef BwdSmem<HD> L;
    extern __shared__ __align__(128) unsigned char smraw[];
    bf16 *Ks = (bf16 *)(smraw + L::t0), *Vs = (bf16 *)(smraw + L::t1);
    bf16 *Qs = (bf16 *)(smraw + L::t2), *dOs = (bf16 *)(smraw + L::t3);
    float *Ss = (float *)(smraw + L::s0), *dPs = (float *)(smraw + L::s1);   // [key][query]
    bf16 *Ps = (bf16 *)(smraw + L::p0), *dSs = (bf16 *)(smraw + L::p1);
    __shared__ const bf16 *krow[MT], *vrow[MT], *qrow[MK];
    __shared__ const float *dorow[MK];
    __shared__ float *dkrow[MT], *dvrow[MT];
    __shared__ float lse_s[MK], D_s[MK];
    const int bt = blockIdx.z, h = blockIdx.y, j0 = blockIdx.x * MT;
    const int t = threadIdx.x, w = t / 32, lane = t % 32, r = w * 16 + lane / 2, half = lane % 2;
    const int n = second ? a.n2 : a.n1;
    const long bs_ = second ? a.kv2_bstride : a.kv1_bstride, ts_ = second ? a.kv2_tstride : a.kv1_tstride;
    const bool kvalid = j0 + r < n;

    if (t < MT) {
        bool v = j0 + t < n;
        long off = bt * bs_ + (j0 + t) * ts_ + (long)h * a.hd;
        krow[t] = v ? act_ptr<bf16>(second ? a.k2 : a.k1) + off : nullptr;
        vrow[t] = v ? act_ptr<bf16>(second ? a.v2 : a.v1) + off : nullptr;
        dkrow[t] = v && dk ? dk + off : nullptr;
        dvrow[t] = v && dv ? dv + off : nullptr;
    }
    __syncthreads();
    load_bf16<HD>(Ks, krow, a.hd);
    load_bf16<HD>(Vs, vrow, a.hd);

    FragC gk[HD / 16], gv[HD / 16];
#pragma unroll
    for (int i = 0; i < HD / 16; i++) {
        wmma::fill_fragment(gk[i], 0.f);
        wmma::fill_fragment(gv[i], 0.f);
    }

    for (int b = second ? 0 : bt; b < (second ? a.B : bt + 1); b++) {
        if (second && (a.kv2_b ? a.kv2_b[b] : b) != bt) continue;   // uniform across the block
        for (int i0 = 0; i0 < a.Nq; i0 += MK) {
            __syncthreads();
            q_tile_rows(a, b, h, i0, MK, t, dout, lse, Dv, qrow, dorow, lse_s, D_s);
            __syncthreads();
            load_bf16<HD>(Qs, qrow, a.hd);
            load_bf16<HD>(dOs, dorow, a.hd);
            __syncthreads();
            mm_abt<HD>(Ss + w * 16 * LDS, Ks + w * 16 * L::LDH, Qs);     // Sᵀ  = K Qᵀ
            mm_abt<HD>(dPs + w * 16 * LDS, Vs + w * 16 * L::LDH, dOs);   // dPᵀ = V dOᵀ
            __syncwarp();
            for (int c = half * 32; c < half * 32 + 32; c++) {
                float p = 0.f, ds = 0.f;
                if (kvalid && i0 + c < a.Nq) {
                    p = expf(Ss[r * LDS + c] * a.scale - lse_s[c]);
                    ds = p * (dPs[r * LDS + c] - D_s[c]);
                }
                Ps[r * LDP + c] = __float2bfloat16(p);
                dSs[r * LDP + c] = __float2bfloat16(ds);
            }
            __syncwarp();
            mm_ab_acc<HD>(gv, Ps + w * 16 * LDP, dOs);   // dV += Pᵀ dO
            mm_ab_acc<HD>(gk, dSs + w * 16 * LDP, Qs);   // dK += dSᵀ Q
        }
    }
    if (dk) add_out<HD>(Ss + w * 16 * LDS, gk, dkrow + w * 16, a.hd, a.scale);
    if (dv) add_out<HD>(Ss + w * 16 * LDS, gv, dvrow + w * 16, a.hd, 1.f);
}

// ---------------------------------------------------------------- host side
template <int HD> static void raise_smem_mma(void) {
    static int done;
    if (done) return;
    CUDA_CHECK(cudaFuncSetAttribute(attn_fwd_mma_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)FwdSmem<HD>::bytes));
    CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_dq_mma_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)BwdSmem<HD>::bytes));
    CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_dkv_mma_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)BwdSmem<HD>::bytes));
    done = 1;
}

template <int HD> static void fwd_mma(const AttnArgs *a, __nv_bfloat16 *out, float *lse) {
    raise_smem_mma<HD>();
    dim3 grid(cdiv(a->Nq, MT), a->H, a->B);
    attn_fwd_mma_kernel<HD><<<grid, MNT, FwdSmem<HD>::bytes, cuda_stream()>>>(*a, out, lse);
    LAUNCH_CHECK();
}

template <int HD> static void bwd_mma(const AttnArgs *a, const AttnGrads *g, const float *lse, const float *Dv,
                                      const float *dout) {
    raise_smem_mma<HD>();
    const size_t sm = BwdSmem<HD>::bytes;
    if (g->dq) {
        dim3 grid(cdiv(a->Nq, MT), a->H, a->B);
        attn_bwd_dq_mma_kernel<HD><<<grid, MNT, sm, cuda_stream()>>>(*a, g->dq, lse, Dv, dout);
        LAUNCH_CHECK();
    }
    if ((g->dk1 || g->dv1) && a->n1 > 0) {
        dim3 grid(cdiv(a->n1, MT), a->H, a->B);
        attn_bwd_dkv_mma_kernel<HD><<<grid, MNT, sm, cuda_stream()>>>(*a, g->dk1, g->dv1, 0, lse, Dv, dout);
        LAUNCH_CHECK();
    }
    if ((g->dk2 || g->dv2) && a->n2 > 0) {
        dim3 grid(cdiv(a->n2, MT), a->H, a->B);
        attn_bwd_dkv_mma_kernel<HD><<<grid, MNT, sm, cuda_stream()>>>(*a, g->dk2, g->dv2, 1, lse, Dv, dout);
        LAUNCH_CHECK();
    }
}

void attn_mma_forward(const AttnArgs *a, __nv_bfloat16 *out, float *lse) {
    if (a->hd <= 32) fwd_mma<32>(a, out, lse);
    else if (a->hd <= 64) fwd_mma<64>(a, out, lse);
    else fwd_mma<128>(a, out, lse);
}

void attn_mma_backward(const AttnArgs *a, const AttnGrads *g, const float *lse, const float *Dv, const float *dout) {
    if (a->hd <= 32) bwd_mma<32>(a, g, lse, Dv, dout);
    else if (a->hd <= 64) bwd_mma<64>(a, g, lse, Dv, dout);
    else bwd_mma<128>(a, g, lse, Dv, dout);
}

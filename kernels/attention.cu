// attention.cu: fused attention for SA, GLCA and PWCA (backend.h AttnArgs), flash
// style: forward keeps only out and the natural-log lse per (b, h, query row);
// backward recomputes the scores tile by tile. No Nq×Nk matrix is ever stored.
//
// Two implementations of one contract. Default: bf16 tensor-core (WMMA)
// kernels in attention_mma.cu. Reference: the fp32 CUDA-core kernels in this
// file (precision "fp32", see device.cu), tiles of 32 queries × 32 keys, 128 threads — slower,
// but simple enough to check by reading, and the parity suite runs both.
// q/k/v are Act views (backend.h): these kernels run only at precision fp32, where an Act
// element is a float, so they read them as float (check_args holds the pairing).
//
// Thread layout, shared by all three kernels: thread t owns tile row r = t/4
// and, of a 32-wide score tile, columns cq + 4m (m < 8, cq = t%4); of an
// hd-wide accumulator, columns cq + 4k (k < HD/4). The four threads of a row
// are adjacent lanes, so row max/sum are two xor-shuffles. Shared rows are
// padded to HD+1 floats so the 8 rows a warp reads at once hit distinct banks.
//
// Keys live in one index space 0..n1+n2-1: index < n1 is row j of k1/v1 for
// batch b, index ≥ n1 is row j−n1 of k2/v2 for batch kv2_b[b]. Each tile looks
// up per-row pointers, so buffer 2 is never copied or concatenated.
//
// Determinism: every sum has a fixed order and every gradient row has exactly
// one writing block, so there are no atomics: dq by the query-tile kernel, dk/dv
// by the key-tile kernel, run once per key buffer and owning its key rows (for
// PWCA it gathers every b with kv2_b[b] equal to its batch row, so any kv2_b is
// safe; a derangement gives one source each). dq relies on q_idx rows being
// distinct within a batch element (the GLCA selection is).
#include "kernels/attention_common.cuh"

#define TR 32    // tile rows (queries, or keys in the dk/dv kernel)
#define TC 32    // tile columns of the score block
#define NT 128   // threads per block (TR rows × 4 threads)

__device__ __forceinline__ float row_max4(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float row_sum4(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Copy TR rows (pointer per row, NULL = padding row) of hd floats into a
// [TR][HD+1] tile; columns hd..HD-1 and padding rows are zero so the
// HD-long inner products below need no bounds checks.
template <int HD>
__device__ __forceinline__ void load_tile(float *dst, const float *const *rows, int hd) {
    constexpr int LD = HD + 1;
    for (int e = threadIdx.x; e < TR * HD; e += NT) {
        int r = e / HD, c = e % HD;
        const float *p = rows[r];
        dst[r * LD + c] = (p && c < hd) ? p[c] : 0.f;
    }
}

template <int HD>
__device__ __forceinline__ float dot_rows(const float *x, const float *y) {
    float s = 0.f;
#pragma unroll 16
    for (int d = 0; d < HD; d++) s += x[d] * y[d];
    return s;
}

// ---------------------------------------------------------------- forward
// Block (query tile, h, b). Online softmax over key tiles of buffer 1 then 2.
template <int HD>
__global__ void __launch_bounds__(NT) attn_fwd_kernel(AttnArgs a, float *out, float *lse) {
    constexpr int LD = HD + 1, NA = HD / 4;
    extern __shared__ float sm[];
    float *Qs = sm, *Ks = Qs + TR * LD, *Vs = Ks + TC * LD, *Ps = Vs + TC * LD;   // Ps [TR][TC+1]
    __shared__ const float *qrow[TR], *krow[TC], *vrow[TC];
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * TR;
    const int t = threadIdx.x, r = t >> 2, cq = t & 3, nk = a.n1 + a.n2;

    if (t < TR) qrow[t] = q0 + t < a.Nq ? act_ptr<float>(a.q) + q_off(a, b, h, q0 + t) : nullptr;
    __syncthreads();
    load_tile<HD>(Qs, qrow, a.hd);

    float o[NA];
#pragma unroll
    for (int k = 0; k < NA; k++) o[k] = 0.f;
    float mrow = -INFINITY, lrow = 0.f;

    for (int k0 = 0; k0 < nk; k0 += TC) {
        __syncthreads();   // everyone is done with the previous Ks/Vs
        kv_tile_rows(a, b, h, k0, nk, TC, t, krow, vrow);
        __syncthreads();
        load_tile<HD>(Ks, krow, a.hd);
        load_tile<HD>(Vs, vrow, a.hd);
        __syncthreads();

        float s[TC / 4], mx = -INFINITY;
#pragma unroll
        for (int m = 0; m < TC / 4; m++) {
            int j = cq + 4 * m;
            s[m] = k0 + j < nk ? a.scale * dot_rows<HD>(Qs + r * LD, Ks + j * LD) : -INFINITY;
            mx = fmaxf(mx, s[m]);
        }
        // k0 < nk, so column 0 is a real key and mnew is finite.
        float mnew = fmaxf(mrow, row_max4(mx));
        float alpha = expf(mrow - mnew), ps = 0.f;   // exp(−inf) = 0 on the first tile
#pragma unroll
        for (int m = 0; m < TC / 4; m++) {
            float p = expf(s[m] - mnew);   // masked keys: exp(−inf) = 0
            Ps[r * (TC + 1) + cq + 4 * m] = p;
            ps += p;
        }
        lrow = lrow * alpha + row_sum4(ps);
        mrow = mnew;
#pragma unroll
        for (int k = 0; k < NA; k++) o[k] *= alpha;
        __syncwarp();   // row r's probabilities were written by this warp's lanes
        for (int j = 0; j < TC; j++) {
            float p = Ps[r * (TC + 1) + j];
#pragma unroll
            for (int k = 0; k < NA; k++) o[k] += p * Vs[j * LD + cq + 4 * k];
        }
    }

    int qi = q0 + r;
    if (qi >= a.Nq) return;
    const int D = a.H * a.hd;
    float inv = 1.f / lrow;
    float *orow = out + ((size_t)b * a.Nq + qi) * D + (size_t)h * a.hd;
#pragma unroll
    for (int k = 0; k < NA; k++) {
        int c = cq + 4 * k;
        if (c < a.hd) orow[c] = o[k] * inv;
    }
    if (cq == 0) lse[((size_t)b * a.H + h) * a.Nq + qi] = mrow + logf(lrow);
}

// ---------------------------------------------------------------- backward
// Dv[b,h,i] = Σ_c dout·out over the head slice (the "D_i" of flash attention).
template <typename T>
__global__ void attn_bwd_dot_kernel(float *Dv, const T *out, const float *dout, int B, int H, int Nq, int hd) {
    size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (w >= (size_t)B * H * Nq) return;
    int qi = (int)(w % Nq), h = (int)((w / Nq) % H), b = (int)(w / ((size_t)Nq * H));
    size_t base = ((size_t)b * Nq + qi) * H * hd + (size_t)h * hd;
    float s = 0.f;
    for (int c = lane; c < hd; c += 32) s += act_load(out, base + c) * dout[base + c];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) Dv[w] = s;   // w = (b*H + h)*Nq + qi, the lse layout
}

// dq: block (query tile, h, b) loops over every key tile.
//   p = exp(s − lse), dp = dout·v, ds = p(dp − D), dq += scale · Σ_j ds k_j
template <int HD>
__global__ void __launch_bounds__(NT) attn_bwd_dq_kernel(AttnArgs a, float *dq, const float *lse, const float *Dv,
                                                         const float *dout) {
    constexpr int LD = HD + 1, NA = HD / 4;
    extern __shared__ float sm[];
    float *Qs = sm, *dOs = Qs + TR * LD, *Ks = dOs + TR * LD, *Vs = Ks + TC * LD, *dSs = Vs + TC * LD;
    __shared__ const float *qrow[TR], *dorow[TR], *krow[TC], *vrow[TC];
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * TR;
    const int t = threadIdx.x, r = t >> 2, cq = t & 3, nk = a.n1 + a.n2, D = a.H * a.hd;
    const int qi = q0 + r;
    const bool qvalid = qi < a.Nq;

    if (t < TR) {
        bool v = q0 + t < a.Nq;
        qrow[t] = v ? act_ptr<float>(a.q) + q_off(a, b, h, q0 + t) : nullptr;
        dorow[t] = v ? dout + ((size_t)b * a.Nq + q0 + t) * D + (size_t)h * a.hd : nullptr;
    }
    __syncthreads();
    load_tile<HD>(Qs, qrow, a.hd);
    load_tile<HD>(dOs, dorow, a.hd);
    const size_t li = ((size_t)b * a.H + h) * a.Nq + qi;
    const float lse_r = qvalid ? lse[li] : 0.f, D_r = qvalid ? Dv[li] : 0.f;

    float acc[NA];
#pragma unroll
    for (int k = 0; k < NA; k++) acc[k] = 0.f;

    for (int k0 = 0; k0 < nk; k0 += TC) {
        __syncthreads();
        kv_tile_rows(a, b, h, k0, nk, TC, t, krow, vrow);
        __syncthreads();
        load_tile<HD>(Ks, krow, a.hd);
        load_tile<HD>(Vs, vrow, a.hd);
        __syncthreads();
#pragma unroll
        for (int m = 0; m < TC / 4; m++) {
            int j = cq + 4 * m;
            float ds = 0.f;
            if (qvalid && k0 + j < nk) {
                float p = expf(a.scale * dot_rows<HD>(Qs + r * LD, Ks + j * LD) - lse_r);
                float dp = dot_rows<HD>(dOs + r * LD, Vs + j * LD);
                ds = p * (dp - D_r);
            }
            dSs[r * (TC + 1) + j] = ds;
        }
        __syncwarp();
        for (int j = 0; j < TC; j++) {
            float ds = dSs[r * (TC + 1) + j];
#pragma unroll
            for (int k = 0; k < NA; k++) acc[k] += ds * Ks[j * LD + cq + 4 * k];
        }
    }
    if (!qvalid) return;
    float *g = dq + q_off(a, b, h, qi);
#pragma unroll
    for (int k = 0; k < NA; k++) {
        int c = cq + 4 * k;
        if (c < a.hd) g[c] += a.scale * acc[k];
    }
}

// dk, dv of one key buffer (second = buffer 2): block (key tile, h, target
// batch bt) owns those key rows and loops over every query of every source
// batch element that reads them — bt itself for buffer 1; each b with
// kv2_b[b] == bt for buffer 2 (exactly one for a derangement), in ascending b.
// So no two blocks write one row, whatever kv2_b holds.
//   dv_j += Σ_i p_ij dout_i,  dk_j += scale · Σ_i ds_ij q_i
template <int HD>
__global__ void __launch_bounds__(NT) attn_bwd_dkv_kernel(AttnArgs a, float *dk, float *dv, int second,
                                                          const float *lse, const float *Dv, const float *dout) {
    constexpr int LD = HD + 1, NA = HD / 4;
    extern __shared__ float sm[];
    float *Ks = sm, *Vs = Ks + TR * LD, *Qs = Vs + TR * LD, *dOs = Qs + TC * LD;
    float *Ps = dOs + TC * LD, *dSs = Ps + TR * (TC + 1);   // [key][query]
    __shared__ const float *krow[TR], *vrow[TR], *qrow[TC], *dorow[TC];
    __shared__ float lse_s[TC], D_s[TC];
    const int bt = blockIdx.z, h = blockIdx.y, j0 = blockIdx.x * TR;
    const int t = threadIdx.x, r = t >> 2, cq = t & 3;
    const int n = second ? a.n2 : a.n1;
    const long bs_ = second ? a.kv2_bstride : a.kv1_bstride, ts_ = second ? a.kv2_tstride : a.kv1_tstride;
    const bool kvalid = j0 + r < n;
    const long koff = bt * bs_ + (j0 + r) * ts_ + (long)h * a.hd;   // used only when kvalid

    if (t < TR) {
        bool v = j0 + t < n;
        long off = bt * bs_ + (j0 + t) * ts_ + (long)h * a.hd;
        krow[t] = v ? act_ptr<float>(second ? a.k2 : a.k1) + off : nullptr;
        vrow[t] = v ? act_ptr<float>(second ? a.v2 : a.v1) + off : nullptr;
    }
    __syncthreads();
    load_tile<HD>(Ks, krow, a.hd);
    load_tile<HD>(Vs, vrow, a.hd);

    float gk[NA], gv[NA];
#pragma unroll
    for (int k = 0; k < NA; k++) gk[k] = gv[k] = 0.f;

    for (int b = second ? 0 : bt; b < (second ? a.B : bt + 1); b++) {
        if (second && (a.kv2_b ? a.kv2_b[b] : b) != bt) continue;   // uniform across the block
        for (int i0 = 0; i0 < a.Nq; i0 += TC) {
            __syncthreads();
            q_tile_rows(a, b, h, i0, TC, t, dout, lse, Dv, qrow, dorow, lse_s, D_s);
            __syncthreads();
            load_tile<HD>(Qs, qrow, a.hd);
            load_tile<HD>(dOs, dorow, a.hd);
            __syncthreads();
#pragma unroll
            for (int m = 0; m < TC / 4; m++) {
                int i = cq + 4 * m;
                float p = 0.f, ds = 0.f;
                if (kvalid && i0 + i < a.Nq) {
                    p = expf(a.scale * dot_rows<HD>(Ks + r * LD, Qs + i * LD) - lse_s[i]);
                    float dp = dot_rows<HD>(Vs + r * LD, dOs + i * LD);
                    ds = p * (dp - D_s[i]);
                }
                Ps[r * (TC + 1) + i] = p;
                dSs[r * (TC + 1) + i] = ds;
            }
            __syncwarp();
            for (int i = 0; i < TC; i++) {
                float p = Ps[r * (TC + 1) + i], ds = dSs[r * (TC + 1) + i];
#pragma unroll
                for (int k = 0; k < NA; k++) {
                    gv[k] += p * dOs[i * LD + cq + 4 * k];
                    gk[k] += ds * Qs[i * LD + cq + 4 * k];
                }
            }
        }
    }
    if (!kvalid) return;
#pragma unroll
    for (int k = 0; k < NA; k++) {
        int c = cq + 4 * k;
        if (c >= a.hd) continue;
        if (dk) dk[koff + c] += a.scale * gk[k];
        if (dv) dv[koff + c] += gv[k];
    }
}

// ---------------------------------------------------------------- host side
template <int HD> static size_t fwd_smem(void) { return (size_t)(3 * TR * (HD + 1) + TR * (TC + 1)) * sizeof(float); }
template <int HD> static size_t bwd_smem(void) {
    return (size_t)(4 * TR * (HD + 1) + 2 * TR * (TC + 1)) * sizeof(float);
}

// Kernels above 48 KB of dynamic shared memory must opt in, once per instantiation.
template <int HD> static void raise_smem(void) {
    static int done;
    if (done) return;
    CUDA_CHECK(cudaFuncSetAttribute(attn_fwd_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)fwd_smem<HD>()));
    CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_dq_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)bwd_smem<HD>()));
    CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_dkv_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)bwd_smem<HD>()));
    done = 1;
}

template <int HD> static void fwd(const AttnArgs *a, float *out, float *lse) {
    raise_smem<HD>();
    dim3 grid(cdiv(a->Nq, TR), a->H, a->B);
    attn_fwd_kernel<HD><<<grid, NT, fwd_smem<HD>(), cuda_stream()>>>(*a, out, lse);
    LAUNCH_CHECK();
}

template <int HD> static void bwd(const AttnArgs *a, const AttnGrads *g, const float *lse, const float *Dv,
                                  const float *dout) {
    raise_smem<HD>();
    if (g->dq) {
        dim3 grid(cdiv(a->Nq, TR), a->H, a->B);
        attn_bwd_dq_kernel<HD><<<grid, NT, bwd_smem<HD>(), cuda_stream()>>>(*a, g->dq, lse, Dv, dout);
        LAUNCH_CHECK();
    }
    // One launch per key buffer: the second is ordered after the first on the
    // stream, so even overlapping dk1/dk2 views get a fixed summation order.
    if ((g->dk1 || g->dv1) && a->n1 > 0) {
        dim3 grid(cdiv(a->n1, TR), a->H, a->B);
        attn_bwd_dkv_kernel<HD><<<grid, NT, bwd_smem<HD>(), cuda_stream()>>>(*a, g->dk1, g->dv1, 0, lse, Dv, dout);
        LAUNCH_CHECK();
    }
    if ((g->dk2 || g->dv2) && a->n2 > 0) {
        dim3 grid(cdiv(a->n2, TR), a->H, a->B);
        attn_bwd_dkv_kernel<HD><<<grid, NT, bwd_smem<HD>(), cuda_stream()>>>(*a, g->dk2, g->dv2, 1, lse, Dv, dout);
        LAUNCH_CHECK();
    }
}

static void check_args(const AttnArgs *a) {
    if (a->hd < 1 || a->hd > 128) {
        fprintf(stderr, "dcal: cuda: %s:%d: attention head dim %d unsupported (1..128)\n", __FILE__, __LINE__, a->hd);
        exit(1);
    }
    // The kernel family and the Act element type both follow the precision (device.cu): the
    // MMA/FA2 kernels read bf16 q/k/v, the fp32 kernels here float. There is no fallback from
    // one family to the other (both take any hd <= 128), so a mismatch is a bug, not a shape.
    if (cuda_attention_mma() != cuda_act_bf16()) {
        fprintf(stderr, "dcal: cuda: %s:%d: internal: attention kernels %s but Act tensors %s\n", __FILE__, __LINE__,
                cuda_attention_mma() ? "bf16" : "fp32", cuda_act_bf16() ? "bf16" : "fp32");
        exit(1);
    }
}

// out is an Act (backend.h), of the type check_args ties to the kernel family: bf16 for the
// MMA/FA2 kernels and cuDNN, float for the fp32 ones.
void cuda_attention_forward(const AttnArgs *a, Act *out, float *lse) {
    if (a->B <= 0 || a->Nq <= 0 || a->H <= 0) return;
    check_args(a);
    if (cuda_attention_cudnn()) return cudnn_attention_forward(a, out, lse);   // train.attention=cudnn
    __nv_bfloat16 *ob = (__nv_bfloat16 *)out;
    float *of = (float *)out;
    if (cuda_attention_mma()) (cuda_attention_fa2() ? attn_fa2_forward : attn_mma_forward)(a, ob, lse);
    else if (a->hd <= 32) fwd<32>(a, of, lse);
    else if (a->hd <= 64) fwd<64>(a, of, lse);
    else fwd<128>(a, of, lse);
}

void cuda_attention_backward(const AttnArgs *a, const AttnGrads *g, const Act *out, const float *lse,
                             const float *dout) {
    if (a->B <= 0 || a->Nq <= 0 || a->H <= 0) return;
    if (!g->dq && !g->dk1 && !g->dv1 && !g->dk2 && !g->dv2) return;
    check_args(a);
    if (cuda_attention_cudnn()) return cudnn_attention_backward(a, g, out, lse, dout);
    size_t rows = (size_t)a->B * a->H * a->Nq;
    float *Dv = (float *)cuda_scratch(rows * sizeof(float));
    if (cuda_act_bf16())
        attn_bwd_dot_kernel<__nv_bfloat16><<<cdiv(rows * 32, 256), 256, 0, cuda_stream()>>>(Dv, (const __nv_bfloat16 *)out, dout,
                                                                             a->B, a->H, a->Nq, a->hd);
    else
        attn_bwd_dot_kernel<float><<<cdiv(rows * 32, 256), 256, 0, cuda_stream()>>>(Dv, (const float *)out, dout, a->B,
                                                                             a->H, a->Nq, a->hd);
    LAUNCH_CHECK();
    if (cuda_attention_mma()) (cuda_attention_fa2() ? attn_fa2_backward : attn_mma_backward)(a, g, lse, Dv, dout);
    else if (a->hd <= 32) bwd<32>(a, g, lse, Dv, dout);
    else if (a->hd <= 64) bwd<64>(a, g, lse, Dv, dout);
    else bwd<128>(a, g, lse, Dv, dout);
}

// attention_pack.cu: the bf16 packs of attention_pack.cuh. Elementwise copies: q, k, v are Act
// views (backend.h), bf16 at precision bf16 (the only one train.attention=cudnn is allowed
// with, config.c), so their pack is a strided bf16 copy that changes no bit; a float source (out
// and dout, and q/k/v at precision fp32) is rounded to bf16 (nearest even), the rounding the
// qkv GEMM makes as it stores at bf16, so fp32 x and Act bf16(x) pack to the same bits; the
// way back adds in fp32. One writer per element everywhere:
// the unpack kernel gives each thread one (h, row, column) and walks b in order, so rows that
// several b share (PWCA's distractor, any kv2_b) are summed in a fixed order, without atomics.
#include "kernels/attention_pack.cuh"

// A view of rows: row t of batch b lives at base + b·bstride + t·tstride (+ h·hd + i). idx maps
// row t of b to token idx[b·idx_rows + t] (GLCA's queries); bmap maps b to another batch element
// (PWCA's distractor). S: the source's element type (float, or bf16 for Act views at bf16).
template <class S> struct RowView {
    const S *src;
    float *dst;
    long bstride, tstride;
    const int *idx;
    int idx_rows;
    const int *bmap;
};

__device__ __forceinline__ bf16 to_bf16(float x) { return __float2bfloat16(x); }
__device__ __forceinline__ bf16 to_bf16(bf16 x) { return x; }

template <class S> __device__ __forceinline__ long view_offset(const RowView<S> &v, int b, int t, int col) {
    int tok = v.idx ? v.idx[(long)b * v.idx_rows + t] : t;
    int bb = v.bmap ? v.bmap[b] : b;
    return bb * v.bstride + (long)tok * v.tstride + col;
}

// dst rows [t0, t0 + n) of every (b, h) ← the view's rows 0..n-1, as bf16 (copied or rounded).
template <class S> __global__ void pack_kernel(bf16 *dst, RowView<S> v, int B, int H, int T, int hd, int t0, int n) {
    size_t total = (size_t)B * H * n * hd;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(e % hd), t = (int)(e / hd % n), h = (int)(e / ((size_t)hd * n) % H), b = (int)(e / ((size_t)hd * n * H));
        dst[(((size_t)b * H + h) * T + t0 + t) * hd + i] = to_bf16(v.src[view_offset(v, b, t, h * hd + i)]);
    }
}

// The view's rows 0..n-1 ← (acc ? += : =) src rows [t0, t0 + n) of every (b, h). One thread owns
// one (h, t, i) and walks b in order, so rows that several b map to (PWCA's distractor) are summed
// in a fixed order with no atomics.
__global__ void unpack_kernel(RowView<float> v, const bf16 *src, int B, int H, int T, int hd, int t0, int n, int acc) {
    size_t total = (size_t)H * n * hd;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(e % hd), t = (int)(e / hd % n), h = (int)(e / ((size_t)hd * n));
        for (int b = 0; b < B; b++) {
            float x = __bfloat162float(src[(((size_t)b * H + h) * T + t0 + t) * hd + i]);
            float *d = v.dst + view_offset(v, b, t, h * hd + i);
            *d = acc ? *d + x : x;
        }
    }
}

static unsigned blocks_for(size_t n) {
    size_t b = (n + 255) / 256;
    return (unsigned)(b < 4096 ? (b ? b : 1) : 4096);
}

typedef struct { int B, H, hd; } Dims4;

template <class S> static void pack(bf16 *dst, RowView<S> v, const Dims4 *s, int T, int t0, int n) {
    if (!v.src || n <= 0) return;
    pack_kernel<S><<<blocks_for((size_t)s->B * s->H * n * s->hd), 256, 0, cuda_stream()>>>(dst, v, s->B, s->H, T, s->hd, t0, n);
    LAUNCH_CHECK();
}

static void unpack(RowView<float> v, const bf16 *src, const Dims4 *s, int T, int t0, int n, int acc) {
    if (!v.dst || n <= 0) return;
    unpack_kernel<<<blocks_for((size_t)s->H * n * s->hd), 256, 0, cuda_stream()>>>(v, src, s->B, s->H, T, s->hd, t0, n, acc);
    LAUNCH_CHECK();
}


// An Act view's rows into dst, read as the precision's element type (cuda_act_bf16()).
static void pack_act(bf16 *dst, const Act *src, long bs, long ts, const int *idx, int idx_rows, const int *bmap,
                     const Dims4 *s, int T, int t0, int n) {
    if (cuda_act_bf16()) pack(dst, RowView<bf16>{(const bf16 *)src, NULL, bs, ts, idx, idx_rows, bmap}, s, T, t0, n);
    else pack(dst, RowView<float>{(const float *)src, NULL, bs, ts, idx, idx_rows, bmap}, s, T, t0, n);
}

void attn_pack_q(const AttnArgs *a, bf16 *q) {
    const Dims4 s = {a->B, a->H, a->hd};
    pack_act(q, a->q, a->q_bstride, a->q_tstride, a->q_idx, a->Nq, NULL, &s, a->Nq, 0, a->Nq);
}

void attn_pack_kv(const AttnArgs *a, bf16 *k, bf16 *v) {
    const Dims4 s = {a->B, a->H, a->hd};
    int nk = a->n1 + a->n2;
    pack_act(k, a->k1, a->kv1_bstride, a->kv1_tstride, NULL, 0, NULL, &s, nk, 0, a->n1);
    pack_act(v, a->v1, a->kv1_bstride, a->kv1_tstride, NULL, 0, NULL, &s, nk, 0, a->n1);
    pack_act(k, a->k2, a->kv2_bstride, a->kv2_tstride, NULL, 0, a->kv2_b, &s, nk, a->n1, a->n2);
    pack_act(v, a->v2, a->kv2_bstride, a->kv2_tstride, NULL, 0, a->kv2_b, &s, nk, a->n1, a->n2);
}

void attn_pack_rows(const float *x, int B, int H, int Nq, int hd, bf16 *dst) {
    const Dims4 s = {B, H, hd};
    long D = (long)H * hd;
    pack(dst, RowView<float>{x, NULL, (long)Nq * D, D, NULL, 0, NULL}, &s, Nq, 0, Nq);
}

// An Act token matrix (attention's output: backend.h) to and from the packed layout.
void attn_pack_rows_act(const Act *x, int B, int H, int Nq, int hd, bf16 *dst) {
    const Dims4 s = {B, H, hd};
    long D = (long)H * hd;
    pack_act(dst, x, (long)Nq * D, D, NULL, 0, NULL, &s, Nq, 0, Nq);
}

template <class T> __global__ void unpack_rows_act_kernel(T *x, const bf16 *src, int B, int H, int Nq, int hd) {
    size_t total = (size_t)B * H * Nq * hd;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(e % hd), t = (int)(e / hd % Nq), h = (int)(e / ((size_t)hd * Nq) % H),
            b = (int)(e / ((size_t)hd * Nq * H));
        act_store(x, ((size_t)b * Nq + t) * H * hd + (size_t)h * hd + i, __bfloat162float(src[e]));
    }
}

void attn_unpack_rows_act(Act *x, const bf16 *src, int B, int H, int Nq, int hd) {
    size_t n = (size_t)B * H * Nq * hd;
    if (!n) return;
    if (cuda_act_bf16())
        unpack_rows_act_kernel<bf16><<<blocks_for(n), 256, 0, cuda_stream()>>>((bf16 *)x, src, B, H, Nq, hd);
    else
        unpack_rows_act_kernel<float><<<blocks_for(n), 256, 0, cuda_stream()>>>((float *)x, src, B, H, Nq, hd);
    LAUNCH_CHECK();
}

void attn_unpack_rows(float *x, const bf16 *src, int B, int H, int Nq, int hd) {
    const Dims4 s = {B, H, hd};
    long D = (long)H * hd;
    unpack(RowView<float>{NULL, x, (long)Nq * D, D, NULL, 0, NULL}, src, &s, Nq, 0, Nq, 0);
}

void attn_unpack_grads(const AttnArgs *a, const AttnGrads *g, const bf16 *dq, const bf16 *dk, const bf16 *dv) {
    const Dims4 s = {a->B, a->H, a->hd};
    int nk = a->n1 + a->n2;
    typedef RowView<float> V;
    // GLCA's query rows are distinct tokens of each b: one writer per element.
    unpack(V{NULL, g->dq, a->q_bstride, a->q_tstride, a->q_idx, a->Nq, NULL}, dq, &s, a->Nq, 0, a->Nq, 1);
    unpack(V{NULL, g->dk1, a->kv1_bstride, a->kv1_tstride, NULL, 0, NULL}, dk, &s, nk, 0, a->n1, 1);
    unpack(V{NULL, g->dv1, a->kv1_bstride, a->kv1_tstride, NULL, 0, NULL}, dv, &s, nk, 0, a->n1, 1);
    unpack(V{NULL, g->dk2, a->kv2_bstride, a->kv2_tstride, NULL, 0, a->kv2_b}, dk, &s, nk, a->n1, a->n2, 1);
    unpack(V{NULL, g->dv2, a->kv2_bstride, a->kv2_tstride, NULL, 0, a->kv2_b}, dv, &s, nk, a->n1, a->n2, 1);
}

// Test hook (tests/unit_attention_pack.c, run in the simulator and on a GPU): g += the unpack of
// the packs of a's own q, k, v, so each gradient view receives the bf16 rounding of its input
// through both index maps; y = the round trip of the token matrix x [B, Nq, H·hd] (y may be NULL).
extern "C" void dcal_attn_pack_roundtrip(const AttnArgs *a, const AttnGrads *g, const float *x, float *y) {
    size_t nq = (size_t)a->B * a->H * a->Nq * a->hd, nk = (size_t)a->B * a->H * (a->n1 + a->n2) * a->hd;
    bf16 *q = (bf16 *)cuda_scratch((2 * nq + 2 * nk) * sizeof(bf16)), *k = q + nq, *v = k + nk, *r = v + nk;
    attn_pack_q(a, q);
    attn_pack_kv(a, k, v);
    attn_unpack_grads(a, g, q, k, v);
    if (!x || !y) return;
    attn_pack_rows(x, a->B, a->H, a->Nq, a->hd, r);
    attn_unpack_rows(y, r, a->B, a->H, a->Nq, a->hd);
}

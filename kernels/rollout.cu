// rollout.cu: attention rollout (MODEL.md §2) and the top-K token selection.
// Runs without gradient, once per step, so these favour plain and exact over
// fast: fp32 throughout, fixed summation orders.
#include "kernels/cuda_common.h"

// S[b,i,j] = mean_h exp(scale·q_i·k_j − lse[b,h,i]) for one 32×32 tile of (i,j).
// Block 32×8: thread (tx, ty) owns j = tx and i = ty + 8m, m < 4. Shared rows
// are padded to hd+1 floats so the 32 distinct k rows of a warp hit 32 banks.
__global__ void probs_mean_kernel(AttnArgs a, const float *lse, float *S) {
    extern __shared__ float sm[];
    int ld = a.hd + 1;
    float *Qs = sm, *Ks = sm + 32 * ld;
    int b = blockIdx.z, i0 = blockIdx.y * 32, j0 = blockIdx.x * 32;
    int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 32 + tx;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int h = 0; h < a.H; h++) {
        __syncthreads();   // previous head's tiles fully consumed
        for (int e = tid; e < 32 * a.hd; e += 256) {
            int r = e / a.hd, c = e % a.hd;
            int qi = i0 + r, kj = j0 + r;
            float qv = 0.f, kv = 0.f;
            if (qi < a.Nq) {
                int tok = a.q_idx ? a.q_idx[b * a.Nq + qi] : qi;
                qv = a.q[b * a.q_bstride + tok * a.q_tstride + h * a.hd + c];
            }
            if (kj < a.n1) kv = a.k1[b * a.kv1_bstride + kj * a.kv1_tstride + h * a.hd + c];
            Qs[r * ld + c] = qv;
            Ks[r * ld + c] = kv;
        }
        __syncthreads();
#pragma unroll
        for (int m = 0; m < 4; m++) {
            int r = ty + 8 * m, qi = i0 + r;
            if (qi >= a.Nq || j0 + tx >= a.n1) continue;
            float s = 0.f;
            for (int d = 0; d < a.hd; d++) s += Qs[r * ld + d] * Ks[tx * ld + d];
            acc[m] += expf(s * a.scale - lse[((size_t)b * a.H + h) * a.Nq + qi]);
        }
    }
#pragma unroll
    for (int m = 0; m < 4; m++) {
        int qi = i0 + ty + 8 * m, kj = j0 + tx;
        if (qi < a.Nq && kj < a.n1) S[((size_t)b * a.Nq + qi) * a.n1 + kj] = acc[m] / a.H;
    }
}

void cuda_attention_probs_mean(const AttnArgs *a, const float *lse, float *S) {
    if (a->B <= 0 || a->Nq <= 0 || a->n1 <= 0) return;
    size_t smem = (size_t)2 * 32 * (a->hd + 1) * sizeof(float);
    static int raised;
    if (!raised) {   // hd up to 128 needs 33 KB; raise the cap once anyway for larger hd
        CUDA_CHECK(cudaFuncSetAttribute(probs_mean_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024));
        raised = 1;
    }
    dim3 grid(cdiv(a->n1, 32), cdiv(a->Nq, 32), a->B);
    probs_mean_kernel<<<grid, dim3(32, 8), smem, cuda_stream()>>>(*a, lse, S);
    LAUNCH_CHECK();
}

// tmp[b,j] = 0.5·Σ_i r[b,i]·S[b,i,j] + 0.5·r[b,j]; threads along j read S coalesced.
__global__ void rollout_kernel(float *tmp, const float *r, const float *S, int B, int N) {
    int j = blockIdx.x * blockDim.x + threadIdx.x, b = blockIdx.y;
    if (j >= N || b >= B) return;
    const float *rb = r + (size_t)b * N, *Sb = S + (size_t)b * N * N;
    float s = 0.f;
    for (int i = 0; i < N; i++) s += rb[i] * Sb[(size_t)i * N + j];
    tmp[(size_t)b * N + j] = 0.5f * s + 0.5f * rb[j];
}

void cuda_rollout_step(float *r, const float *S, float *tmp, int B, int N) {
    if (B <= 0 || N <= 0) return;
    rollout_kernel<<<dim3(cdiv(N, 128), B), 128, 0, cuda_stream()>>>(tmp, r, S, B, N);
    LAUNCH_CHECK();
    cuda_copy(r, tmp, (size_t)B * N * sizeof(float));
}

// One block per batch row. Token i (1..N-1) is chosen iff fewer than K patch
// tokens beat it (larger r, or equal r and lower index): an exact rank, so ties
// resolve to the lower index as in the CPU reference. Its output slot is the
// number of chosen tokens below it, which yields ascending order.
__global__ void topk_kernel(int *sel, const float *r, int N, int K) {
    extern __shared__ unsigned char tk_sm[];
    float *rv = (float *)tk_sm;
    int *chosen = (int *)(rv + N);
    int b = blockIdx.x;
    for (int i = threadIdx.x; i < N; i += blockDim.x) rv[i] = r[(size_t)b * N + i];
    __syncthreads();
    for (int i = threadIdx.x; i < N; i += blockDim.x) {
        int rank = 0;
        if (i > 0) {
            float x = rv[i];
            for (int j = 1; j < N; j++) rank += (rv[j] > x) || (rv[j] == x && j < i);
        }
        chosen[i] = i > 0 && rank < K;
    }
    __syncthreads();
    int *out = sel + (size_t)b * (K + 1);
    if (threadIdx.x == 0) out[0] = 0;
    for (int i = threadIdx.x; i < N; i += blockDim.x) {
        if (!chosen[i]) continue;
        int pos = 0;
        for (int j = 1; j < i; j++) pos += chosen[j];
        out[1 + pos] = i;
    }
}

void cuda_topk_select(int *sel, const float *r, int B, int N, int K) {
    if (B <= 0) return;
    size_t smem = (size_t)N * (sizeof(float) + sizeof(int));
    if (smem > 48 * 1024) {
        static int raised;
        if (!raised) {
            CUDA_CHECK(cudaFuncSetAttribute(topk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
            raised = 1;
        }
    }
    topk_kernel<<<B, 256, smem, cuda_stream()>>>(sel, r, N, K);
    LAUNCH_CHECK();
}

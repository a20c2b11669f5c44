// rollout.cu: attention rollout (MODEL.md §2), recomputed from Q, K and the saved
// log-sum-exp without any N×N map, and the top-K token selection.
// Runs without gradient, once per step, so these favour plain and exact over
// fast: fp32 throughout, fixed summation orders.
//
// q and k are Act views (backend.h): float at precision fp32, bf16 at precision bf16, read as
// the precision's element type T and widened exactly to fp32 in shared memory. So at bf16 the
// rollout now scores the bf16-rounded q and k, the values the bf16 attention kernels multiply
// (and whose lse it takes), where it used to read the fp32 ones; fp32 is unchanged.
#include "kernels/attention_common.cuh"

// One rollout step, r ← r·(0.5·S + 0.5·I), with S[b,i,j] = mean_h exp(scale·q_i·k_j −
// lse[b,h,i]) never stored (the Pᵀ·v pattern of a flash backward, v = r). Block 32×8 owns
// the key columns j0..j0+31 of image b: thread (tx, ty) has j = j0 + tx and the query rows
// i ≡ ty (mod 8) of each 32-row tile; per tile and head the q and k rows go through shared
// memory, padded to hd+1 floats so the 32 distinct k rows of a warp hit 32 banks. A thread
// sums its rows in ascending i, then thread ty = 0 adds the 8 partials in ty order: a fixed
// order, one writer per output, no atomics.
template <class T> __global__ void rollout_attn_kernel(AttnArgs a, const float *lse, const float *r, float *tmp) {
    extern __shared__ float sm[];
    int ld = a.hd + 1, N = a.n1;
    float *Qs = sm, *Ks = sm + 32 * ld, *part = sm + 64 * ld;
    int b = blockIdx.y, j0 = blockIdx.x * 32, tx = threadIdx.x, ty = threadIdx.y, tid = ty * 32 + tx;
    const float *rb = r + (size_t)b * N;
    const T *q = act_ptr<T>(a.q), *k = act_ptr<T>(a.k1);
    float acc = 0.f;
    for (int i0 = 0; i0 < N; i0 += 32) {
        float p[4] = {0.f, 0.f, 0.f, 0.f};
        for (int h = 0; h < a.H; h++) {
            __syncthreads();   // previous tile's rows fully consumed
            for (int e = tid; e < 32 * a.hd; e += 256) {
                int row = e / a.hd, c = e % a.hd, qi = i0 + row, kj = j0 + row;
                float qv = 0.f, kv = 0.f;
                if (qi < N) {
                    int tok = a.q_idx ? a.q_idx[b * a.Nq + qi] : qi;
                    qv = elem_f32(q[b * a.q_bstride + tok * a.q_tstride + h * a.hd + c]);
                }
                if (kj < N) kv = elem_f32(k[b * a.kv1_bstride + kj * a.kv1_tstride + h * a.hd + c]);
                Qs[row * ld + c] = qv;
                Ks[row * ld + c] = kv;
            }
            __syncthreads();
#pragma unroll
            for (int m = 0; m < 4; m++) {
                int row = ty + 8 * m, qi = i0 + row;
                if (qi >= N || j0 + tx >= N) continue;
                float s = 0.f;
                for (int d = 0; d < a.hd; d++) s += Qs[row * ld + d] * Ks[tx * ld + d];
                p[m] += expf(s * a.scale - lse[((size_t)b * a.H + h) * a.Nq + qi]);
            }
        }
#pragma unroll
        for (int m = 0; m < 4; m++) {
            int qi = i0 + ty + 8 * m;
            if (qi < N) acc += rb[qi] * (p[m] / a.H);
        }
    }
    part[ty * 32 + tx] = acc;
    __syncthreads();
    int j = j0 + tx;
    if (ty == 0 && j < N) {
        float s = 0.f;
        for (int k = 0; k < 8; k++) s += part[k * 32 + tx];
        tmp[(size_t)b * N + j] = 0.5f * s + 0.5f * rb[j];
    }
}

template <class T> static void rollout_step(const AttnArgs *a, const float *lse, float *r, float *tmp) {
    size_t smem = ((size_t)2 * 32 * (a->hd + 1) + 8 * 32) * sizeof(float);
    static int raised;
    if (!raised) {   // hd up to 128 needs 34 KB; raise the cap once anyway for larger hd
        CUDA_CHECK(cudaFuncSetAttribute(rollout_attn_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024));
        raised = 1;
    }
    rollout_attn_kernel<T><<<dim3(cdiv(a->n1, 32), a->B), dim3(32, 8), smem, cuda_stream()>>>(*a, lse, r, tmp);
    LAUNCH_CHECK();
}

void cuda_rollout_step_attn(const AttnArgs *a, const float *lse, float *r, float *tmp) {
    if (a->B <= 0 || a->n1 <= 0) return;
    if (cuda_act_bf16()) rollout_step<__nv_bfloat16>(a, lse, r, tmp);
    else rollout_step<float>(a, lse, r, tmp);
    cuda_copy(r, tmp, (size_t)a->B * a->n1 * sizeof(float));
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

// attention_pack.cuh: dcal's attention views (backend.h AttnArgs: Act q/k/v, strided, GLCA's gathered
// queries, PWCA's two key/value buffers) as contiguous bf16 [B, H, T, hd] copies, and the way
// back, for libraries that take plain tensors (attention_cudnn.cu). Own file, free of cuDNN, so
// that the CUDA simulator checks its index arithmetic (sim_attention_pack).
#pragma once
#include "kernels/cuda_common.h"
#include <cuda_bf16.h>

typedef __nv_bfloat16 bf16;

// q [B, H, Nq, hd]: row j of b is token q_idx[b·Nq + j] (or j) of a->q.
void attn_pack_q(const AttnArgs *a, bf16 *q);
// k, v [B, H, n1 + n2, hd]: rows 0..n1-1 from k1/v1 of b, then n2 rows from k2/v2 of kv2_b[b].
void attn_pack_kv(const AttnArgs *a, bf16 *k, bf16 *v);
// dst [B, H, Nq, hd] from a plain token matrix x [B, Nq, H·hd] (out, dout).
void attn_pack_rows(const float *x, int B, int H, int Nq, int hd, bf16 *dst);
// x [B, Nq, H·hd] = src [B, H, Nq, hd] (written, not accumulated: out).
void attn_unpack_rows(float *x, const bf16 *src, int B, int H, int Nq, int hd);
// The same two for an Act token matrix (attention's output, backend.h).
void attn_pack_rows_act(const Act *x, int B, int H, int Nq, int hd, bf16 *dst);
void attn_unpack_rows_act(Act *x, const bf16 *src, int B, int H, int Nq, int hd);
// g's views += the bf16 gradients dq [B, H, Nq, hd], dk, dv [B, H, n1 + n2, hd], the mirror of the
// packs (GLCA: into the gathered rows; PWCA: the second half into k2/v2 rows of kv2_b[b], several
// b adding to one row in ascending b). NULL gradients are skipped.
void attn_unpack_grads(const AttnArgs *a, const AttnGrads *g, const bf16 *dq, const bf16 *dk, const bf16 *dv);

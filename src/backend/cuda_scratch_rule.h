// cuda_scratch_rule.h: how much device scratch the CUDA backend's linear layers ask for, as
// plain C, so that the planner counts it on any build (dcal plan for a GPU on a machine
// without one) and kernels/linear.cu sizes its operand copies with the same functions.
//
// At precision bf16 a linear call carves, from one cuda_scratch request, a bf16 copy of each
// fp32 operand it multiplies (the weight, dout; the fp32 bias of an Act output) and a padded
// copy of an Act input whose rows are not whole 16-byte vectors: each copy's rows padded to a
// multiple of 8 elements, each part rounded up to 256 bytes, plus 256 bytes so that an empty
// call still gets a pointer. At fp32 nothing is copied. The other scratch users (attention's
// Dv, LayerNorm's and the bias gradient's column partials, the gradient norm) ask for less
// than the backend's 1 MiB minimum at every ViT shape. cuBLASLt's workspace is separate.
#pragma once
#include <stddef.h>

#define CUDA_SCRATCH_MIN_BYTES ((size_t)1 << 20)     // cuda_scratch never allocates less
#define CUDA_LT_WORKSPACE_BYTES ((size_t)32 << 20)   // cuBLASLt's workspace, ours (cuda_common.h)

static inline int gemm_padded_ld(int cols) { return (cols + 7) / 8 * 8; }
// One padded bf16 copy of a row-major [rows, cols] tensor.
static inline size_t gemm_bf16_part(size_t rows, int cols) {
    return (rows * (size_t)gemm_padded_ld(cols) * 2 + 255) / 256 * 256;
}
// The largest request one linear layer [rows, IC] → [rows, OC] makes at bf16 (its backward with
// both products: dout and W copied, the input read in place unless its rows need padding; or
// its forward with an Act output: W and the bf16 bias), at fp32 none.
static inline size_t gemm_linear_scratch(size_t rows, int IC, int OC, int bf16) {
    if (!bf16) return 0;
    size_t pad_in = IC == gemm_padded_ld(IC) ? 0 : gemm_bf16_part(rows, IC);
    size_t bwd = 256 + gemm_bf16_part(rows, OC) + gemm_bf16_part((size_t)OC, IC) + pad_in;
    size_t fwd = 256 + gemm_bf16_part((size_t)OC, IC) + gemm_bf16_part(1, OC) + pad_in;
    return bwd > fwd ? bwd : fwd;
}

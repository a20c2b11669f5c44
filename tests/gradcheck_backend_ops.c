// gradcheck_backend_ops.c: ONE table of op cases, run against every backend
// present (the float64 reference, the CPU, and CUDA where a GPU is there), the
// way ggml's test-backend-ops checks every backend against one list.
//
// For each row (tests/ops/runner.c): deterministic inputs; the float64
// reference forward and its analytic gradient, that gradient checked against
// float64 central finite differences; then per backend: forward vs reference
// (outputs start as NaN), backward from zero vs reference, backward from random
// start values (the += contract), the same on 1 and N threads bit for bit, and
// with the op's optional gradients NULL. One line per (row, backend):
//     cpu   layernorm 5x12 off3   fwd 2.1e-07 (tol 1e-05)  bwd 1.9e-06 (tol 1e-04)  OK
// Without a GPU (or built without CUDA) the cuda columns are skipped and the
// test still checks the reference and the CPU.
//
// HOW TO ADD AN OP: write its OpDef in tests/ops/ops_*.c (init: tensors and
// inputs from row->p; ref_fwd: the float64 definition; ref_bwd: its analytic
// gradient, if the op has a backward; be_fwd/be_bwd: the Backend calls; partial_keeps
// if some gradients are optional), declare it in tests/ops/ops.h, and add rows
// here. A new shape for an existing op is one row.
//
// Tolerances: max|got − ref| / max(max|ref|, 1e-6) per tensor. Columns:
// cpu (fp32), cuda at precision bf16 (bf16-operand GEMMs, bf16 tensor-core attention)
// and cuda at precision fp32 (fp32 GEMMs and attention kernels); see
// Backend.set_precision; and, for attention rows on a GPU, cuda-cudnn (train.attention=cudnn:
// cuDNN's fused SDPA; skipped, saying why, in the simulator and without cuDNN).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ops/ops.h"
#include "testutil.h"

// fp32 CPU against float64 (the old gradcheck_ops bounds; measured errors ~1e-7 / ~1e-6).
#define FWD 1e-5
#define GRAD 1e-4
// CUDA (the old gpu_parity bounds, there against the CPU):
#define G_EXACT 1e-7   // copies: no arithmetic
#define G_EW 1e-5      // fp32 elementwise: libm ulp differences
#define G_RED 1e-4     // fp32 reductions: summation order
#define G_BF16 2e-2    // bf16 operands (MMA attention's p and dS; the GEMMs' A and B)

#define CPU(f, b) [COL_CPU] = {f, b}
#define CUDA(f, b) [COL_CUDA] = {f, b}
#define CUDA_FP32(f, b) [COL_CUDA_FP32] = {f, b}
#define CUDA_CUDNN(f, b) [COL_CUDA_CUDNN] = {f, b}
// Attention: CPU as above; fp32 kernels differ in summation order and expf; MMA kernels use bf16;
// cuDNN's SDPA (only on a GPU) takes bf16 q, k, v, o, dO and returns bf16 out, dq, dk, dv.
#define ATTN_TOL {CPU(FWD, GRAD), CUDA(G_BF16, G_BF16), CUDA_FP32(G_RED, G_RED), CUDA_CUDNN(G_BF16, G_BF16)}
// Linear at precision bf16: both operands of every product are rounded to bf16 (8 significant
// bits: relative error ≤ u = 2^-8 each, so ≤ ~2^-7 per product), the K products summed in
// fp32 (adding ~K·2^-24, negligible). The per-term errors are independent roundings, so they
// grow like √K against a sum that also grows like √K: relative to max|ref| the error stays
// ~1e-3..4e-3 whatever K. Measured in the simulator (the same roundings a GPU makes; its sum
// order differs only at fp32 level): fwd ≤ 3.4e-3, bwd ≤ 3.5e-3 over the SMALL and MEDIUM rows
// (the TF32 GEMMs they replace: ≤ 8e-4). G_BF16 = 2e-2 leaves a factor ~6 for larger K (the
// BIG rows, K = 768, run on a GPU only) while a wrong operand (a swapped or fp32-typed copy:
// tools/cudasim/planted/linear--*) lands at O(1). Precision fp32: fp32 GEMMs (db is capped at
// G_RED in the op: a plain fp32 column sum in both columns).
#define LIN_TOL {CPU(FWD, GRAD), CUDA(G_BF16, G_BF16), CUDA_FP32(G_RED, G_RED)}
#define G_ACT 1e-2     // one bf16 rounding of an op's Act input (u = 2^-8), times the op's sensitivity
// Rollout at bf16: scores q·k·scale from bf16-rounded q and k (the Act storage), an absolute
// error ~ 2u·Σ|q_i k_i|·scale in the exponent, i.e. a relative one in each exp. Measured in the
// simulator: ≤ 9.4e-3 (B3 H1 hd16 N70, two steps), so G_BF16 keeps a factor 2.
#define ROLL_TOL {CPU(FWD, 0), CUDA(G_BF16, 0), CUDA_FP32(G_RED, 0)}
#define GELU_TOL {CPU(FWD, GRAD), CUDA(G_ACT, G_ACT), CUDA_FP32(G_EW, G_EW)}
// LayerNorm's output is an Act (a GEMM's input): at bf16 it is rounded once where it is written,
// ≤ u/2 = 2^-9 of each value (≤ 2e-3 of max), so the forward's bound is G_ACT there and the
// fp32 elementwise one at fp32; the backward reads the fp32 input and statistics, not the output.
#define LN_TOL {CPU(FWD, GRAD), CUDA(G_ACT, G_RED), CUDA_FP32(G_EW, G_RED)}
// Residual + LayerNorm: layernorm's columns (h, the residual sum, stays fp32).
#define RLN_TOL LN_TOL

static const Row rows[] = {
    // memory: p = {n}. Exact: alloc zero-fills, copies move bytes.
    {&OP_MEMORY, "memory n=1000", {1000}, {CPU(0, 0), CUDA(0, 0)}, SMALL},

    // im2col: p = {B, C, S, patch}. A permutation of the image, exact at fp32; its output is the
    // patch GEMM's Act input, so at bf16 each pixel is rounded once (≤ 2^-9 of it: G_ACT).
    {&OP_IM2COL, "im2col 2x3x8x8 p4", {2, 3, 8, 4}, {CPU(0, 0), CUDA(G_ACT, 0), CUDA_FP32(G_EXACT, 0)}, SMALL},
    {&OP_IM2COL, "im2col 2x3x48x48 p16", {2, 3, 48, 16}, {CPU(0, 0), CUDA(G_ACT, 0), CUDA_FP32(G_EXACT, 0)}, SMALL},

    // tokens: p = {B, N, D}. fwd: one fp32 add (≤ 6e-8 of max); bwd: dpe exact (a copy, the op
    // marks it), dcls/dpos fp32 sums over B.
    {&OP_TOKENS, "tokens B2 N4 D3", {2, 4, 3}, {CPU(1e-7, 1e-7), CUDA(G_EXACT, G_EW)}, SMALL},
    {&OP_TOKENS, "tokens B2 N10 D40", {2, 10, 40}, {CPU(1e-7, 1e-7), CUDA(G_EXACT, G_EW)}, SMALL},
    {&OP_TOKENS, "tokens B1 N17 D5", {1, 17, 5}, {CPU(1e-7, 1e-7), CUDA(G_EXACT, G_EW)}, SMALL},

    // layernorm: p = {rows, D, mean offset}.
    {&OP_LAYERNORM, "layernorm 5x12 off3", {5, 12, 3}, LN_TOL, SMALL},
    {&OP_LAYERNORM, "layernorm 1x65", {1, 65, 0}, LN_TOL, SMALL},
    {&OP_LAYERNORM, "layernorm 50x100 off3", {50, 100, 3}, LN_TOL, MEDIUM},
    // several 256-row chunks in the CUDA dw/db reduction
    {&OP_LAYERNORM, "layernorm 1000x768 off3", {1000, 768, 3}, LN_TOL, BIG},

    // linear: p = {rows, IC, OC, bias, weight scale/100}.
    {&OP_LINEAR, "linear 6x7->5", {6, 7, 5, 1, 100}, LIN_TOL, SMALL},
    {&OP_LINEAR, "linear 17x9->3 nobias", {17, 9, 3, 0, 100}, LIN_TOL, SMALL},
    {&OP_LINEAR, "linear 33x50->7 nobias", {33, 50, 7, 0, 10}, LIN_TOL, MEDIUM},
    // a bias on a medium shape: the simulator's cuBLASLt BIAS/BGRADB epilogues (odd sizes)
    {&OP_LINEAR, "linear 70x33->19", {70, 33, 19, 1, 10}, LIN_TOL, MEDIUM},
    {&OP_LINEAR, "linear 300x96->200", {300, 96, 200, 1, 10}, LIN_TOL, BIG},
    {&OP_LINEAR, "linear 257x768->2304 (qkv)", {257, 768, 2304, 1, 10}, LIN_TOL, BIG},
    // linear_backward_set: dinp written whatever it held (run B starts it at random values).
    {&OP_LINEAR_SET, "linear_set 6x7->5", {6, 7, 5, 1, 100}, LIN_TOL, SMALL},
    {&OP_LINEAR_SET, "linear_set 70x33->19", {70, 33, 19, 1, 10}, LIN_TOL, MEDIUM},
    {&OP_LINEAR_SET, "linear_set 300x96->200 nobias", {300, 96, 200, 0, 10}, LIN_TOL, BIG},

    // linear_forward_act: the same product stored as Act (qkv, fc1): at bf16 linear's error plus
    // one rounding of the output (u = 2^-8), so LIN_TOL's bound still holds with room.
    {&OP_LINEAR_ACT, "linear_act 6x7->5", {6, 7, 5, 1, 100}, LIN_TOL, SMALL},
    {&OP_LINEAR_ACT, "linear_act 17x9->3 nobias", {17, 9, 3, 0, 100}, LIN_TOL, SMALL},
    {&OP_LINEAR_ACT, "linear_act 70x33->19", {70, 33, 19, 1, 10}, LIN_TOL, MEDIUM},
    {&OP_LINEAR_ACT, "linear_act 33x64->96", {33, 64, 96, 1, 10}, LIN_TOL, MEDIUM},
    {&OP_LINEAR_ACT, "linear_act 257x768->3072 (fc1)", {257, 768, 3072, 1, 10}, LIN_TOL, BIG},

    // gelu: p = {n, input scale}. Its input is fc1's stored output (Act): at precision bf16 one
    // rounding of x (u = 2^-8) moves gelu(x) by ≤ |x·gelu'(x)|·u ≤ 1.13·u·max|x| (4.4e-3 relative)
    // and gelu'(x) by ≤ |x·gelu''(x)|·u ≤ 0.33·u; G_ACT keeps a factor 2 over the first. Measured
// (simulator): fwd ≤ 3.1e-3, bwd ≤ 7.5e-4; linear_act ≤ 4.5e-3.
    {&OP_GELU, "gelu n=64", {64, 2}, GELU_TOL, SMALL},
    {&OP_GELU, "gelu n=10007", {10007, 3}, GELU_TOL, MEDIUM},
    {&OP_GELU_SET, "gelu_set n=64", {64, 2}, GELU_TOL, SMALL},
    {&OP_GELU_SET, "gelu_set n=10007", {10007, 3}, GELU_TOL, MEDIUM},

    // residual: p = {B, n_per_b, drop-path scale}. CPU: at most two fp32 roundings (the old check:
    // 1e-6 absolute on |out| ≲ 5); dx exact (a copy, the op marks it).
    {&OP_RESIDUAL, "residual B3 n10 scaled", {3, 10, 1}, {CPU(2e-7, 2e-7), CUDA(G_EW, G_EW)}, SMALL},
    {&OP_RESIDUAL, "residual B4 n1001 scaled", {4, 1001, 1}, {CPU(2e-7, 2e-7), CUDA(G_EW, G_EW)}, SMALL},
    {&OP_RESIDUAL, "residual B3 n1001", {3, 1001, 0}, {CPU(2e-7, 2e-7), CUDA(G_EW, G_EW)}, SMALL},
    {&OP_RESIDUAL, "residual B1 n17 dropped", {1, 17, 1}, {CPU(2e-7, 2e-7), CUDA(G_EW, G_EW)}, SMALL},

    // residual_layernorm: p = {B, rows per b, D, drop-path scale, mean offset}. The residual's two
    // roundings and then layernorm's bounds: the same columns as layernorm. Scales cycle 0 (dropped),
    // 1.25, 1, 1/0.9; odd D (33, 768), one row, and 197 rows (a ViT-B/16 224 px sequence).
    {&OP_RESIDUAL_LAYERNORM, "residual_layernorm B2x3 D33 scaled", {2, 3, 33, 1, 0}, RLN_TOL, SMALL},
    {&OP_RESIDUAL_LAYERNORM, "residual_layernorm B4x2 D12 scaled off3", {4, 2, 12, 1, 3}, RLN_TOL, SMALL},
    {&OP_RESIDUAL_LAYERNORM, "residual_layernorm 1 row D33", {1, 1, 33, 0, 3}, RLN_TOL, SMALL},
    {&OP_RESIDUAL_LAYERNORM, "residual_layernorm 1 row D768 dropped", {1, 1, 768, 1, 0}, RLN_TOL, SMALL},
    {&OP_RESIDUAL_LAYERNORM, "residual_layernorm B1x197 D33", {1, 197, 33, 0, 0}, RLN_TOL, SMALL},
    {&OP_RESIDUAL_LAYERNORM, "residual_layernorm B2x197 D768 scaled off3", {2, 197, 768, 1, 3}, RLN_TOL, MEDIUM},
    // several 256-row chunks in the CUDA dw/db reduction
    {&OP_RESIDUAL_LAYERNORM, "residual_layernorm B8x197 D768 scaled off3", {8, 197, 768, 1, 3}, RLN_TOL, BIG},

    // droppath_masks: p = {nblk, B, seed lo, seed hi, step lo, step hi, rate ‰}. Bit for bit on every
    // backend (CUDA: cuRAND's Philox4_32_10 set to core/rng.c's stream): tolerance 0. Odd B ends
    // mid-block; high words of seed and step; rate 0 keeps all; rate 1 keeps none at the last block.
    {&OP_DROPPATH, "droppath 3 blk B4 rate .1", {3, 4, 42, 0, 0, 0, 100}, {CPU(0, 0), CUDA(0, 0)}, SMALL},
    {&OP_DROPPATH, "droppath 12 blk B16 step 77", {12, 16, 1, 0, 77, 0, 100}, {CPU(0, 0), CUDA(0, 0)}, SMALL},
    {&OP_DROPPATH, "droppath 36 blk B16 high words", {36, 16, (int)0xDEADBEEF, 0x7FFFFFFF, 123456, 3, 300},
     {CPU(0, 0), CUDA(0, 0)}, SMALL},
    {&OP_DROPPATH, "droppath 2 blk B33 rate 1", {2, 33, 7, 0, 5, 0, 1000}, {CPU(0, 0), CUDA(0, 0)}, SMALL},
    {&OP_DROPPATH, "droppath 1 blk B3 rate 0", {1, 3, 9, 0, 1, 0, 0}, {CPU(0, 0), CUDA(0, 0)}, SMALL},

    // gather_rows: p = {B, Nin, Nout, D}. CPU exact (distinct rows: copies).
    {&OP_GATHER, "gather B2 5->3 D4", {2, 5, 3, 4}, {CPU(0, 0), CUDA(G_EXACT, G_EW)}, SMALL},
    {&OP_GATHER, "gather B3 20->7 D70", {3, 20, 7, 70}, {CPU(0, 0), CUDA(G_EXACT, G_EW)}, SMALL},
    {&OP_GATHER, "gather B1 17->2 D5", {1, 17, 2, 5}, {CPU(0, 0), CUDA(G_EXACT, G_EW)}, SMALL},

    // attention: p = {B, H, hd, N, K (GLCA: 1+K queries), pwca mode, input scale×10}.
    {&OP_ATTENTION, "SA B2 H2 hd4 N6", {2, 2, 4, 6, 0, 0, 10}, ATTN_TOL, SMALL},
    {&OP_ATTENTION, "SA B1 H1 hd64 N17", {1, 1, 64, 17, 0, 0, 15}, ATTN_TOL, SMALL},
    {&OP_ATTENTION, "SA B2 H2 hd8 N65", {2, 2, 8, 65, 0, 0, 15}, ATTN_TOL, MEDIUM},
    {&OP_ATTENTION, "SA B2 H3 hd16 N37", {2, 3, 16, 37, 0, 0, 15}, ATTN_TOL, MEDIUM},
    {&OP_ATTENTION, "SA B2 H2 hd40 N33", {2, 2, 40, 33, 0, 0, 15}, ATTN_TOL, MEDIUM},
    {&OP_ATTENTION, "SA B1 H2 hd128 N70", {1, 2, 128, 70, 0, 0, 15}, ATTN_TOL, MEDIUM},
    {&OP_ATTENTION, "SA B1 H2 hd64 N785", {1, 2, 64, 785, 0, 0, 15}, ATTN_TOL, BIG},
    {&OP_ATTENTION, "GLCA B2 H2 hd4 N6 K2", {2, 2, 4, 6, 2, 0, 10}, ATTN_TOL, SMALL},
    {&OP_ATTENTION, "GLCA B2 H2 hd16 N33 K1 (Nq=2)", {2, 2, 16, 33, 1, 0, 15}, ATTN_TOL, SMALL},
    {&OP_ATTENTION, "GLCA B1 H1 hd64 N17 K1 (Nq=2)", {1, 1, 64, 17, 1, 0, 15}, ATTN_TOL, SMALL},
    {&OP_ATTENTION, "GLCA B2 H3 hd32 N50 K5", {2, 3, 32, 50, 5, 0, 15}, ATTN_TOL, MEDIUM},
    {&OP_ATTENTION, "GLCA B1 H2 hd64 N785 K78", {1, 2, 64, 785, 78, 0, 15}, ATTN_TOL, BIG},
    {&OP_ATTENTION, "PWCA B3 H2 hd4 N5 derange", {3, 2, 4, 5, 0, 1, 10}, ATTN_TOL, SMALL},
    {&OP_ATTENTION, "PWCA B3 H1 hd16 N17 kv2_b=b/2", {3, 1, 16, 17, 0, 2, 15}, ATTN_TOL, SMALL},
    {&OP_ATTENTION, "PWCA B2 H2 hd4 N5 self", {2, 2, 4, 5, 0, 3, 10}, ATTN_TOL, SMALL},
    {&OP_ATTENTION, "PWCA B1 H1 hd64 N33 self", {1, 1, 64, 33, 0, 3, 15}, ATTN_TOL, MEDIUM},
    {&OP_ATTENTION, "PWCA B3 H2 hd32 N29 derange", {3, 2, 32, 29, 0, 1, 15}, ATTN_TOL, MEDIUM},
    {&OP_ATTENTION, "PWCA B2 H3 hd64 N197 derange", {2, 3, 64, 197, 0, 1, 15}, ATTN_TOL, BIG},
    // Across the CPU's tiles (64 query rows × 256 keys, src/backend/cpu/attention.c): several
    // query tiles, several key tiles inside one key buffer (the online softmax rescales), and
    // PWCA's key tiles split at the buffer boundary.
    {&OP_ATTENTION, "SA B1 H1 hd16 N300 (tiles 5x2)", {1, 1, 16, 300, 0, 0, 15}, ATTN_TOL, MEDIUM},
    {&OP_ATTENTION, "GLCA B1 H2 hd8 N520 K70 (Nq=71)", {1, 2, 8, 520, 70, 0, 15}, ATTN_TOL, MEDIUM},
    {&OP_ATTENTION, "PWCA B2 H1 hd8 N260 derange", {2, 1, 8, 260, 0, 1, 15}, ATTN_TOL, MEDIUM},
    // hd 64 (ViT-B's) across several 64×64 tiles of the CUDA bf16 kernels: odd N, and PWCA's
    // buffer boundary (97) inside a key tile.
    {&OP_ATTENTION, "SA B1 H1 hd64 N197 (tiles 4x4)", {1, 1, 64, 197, 0, 0, 15}, ATTN_TOL, MEDIUM},
    {&OP_ATTENTION, "PWCA B2 H1 hd64 N97 derange", {2, 1, 64, 97, 0, 1, 15}, ATTN_TOL, MEDIUM},

    // rollout_step_attn: p = {B, H, hd, N, steps}. fp32 sums of N·H exponentials per output, in a fixed
    // order; N off the tiles (CPU 64 rows, CUDA 32) and one head or several. At precision bf16
    // q and k are the stored Act (bf16), so each score carries their rounding (ROLL_TOL).
    {&OP_ROLLOUT_ATTN, "rollout B1 H1 hd64 N17 x2", {1, 1, 64, 17, 2}, ROLL_TOL, SMALL},
    {&OP_ROLLOUT_ATTN, "rollout B3 H3 hd4 N5 x3", {3, 3, 4, 5, 3}, ROLL_TOL, SMALL},
    {&OP_ROLLOUT_ATTN, "rollout B3 H1 hd16 N70 x2", {3, 1, 16, 70, 2}, ROLL_TOL, SMALL},
    {&OP_ROLLOUT_ATTN, "rollout B1 H3 hd32 N70 x2", {1, 3, 32, 70, 2}, ROLL_TOL, SMALL},
    {&OP_ROLLOUT_ATTN, "rollout B1 H2 hd64 N197 x2", {1, 2, 64, 197, 2}, ROLL_TOL, MEDIUM},
    {&OP_ROLLOUT_ATTN, "rollout B3 H3 hd16 N197 x3", {3, 3, 16, 197, 3}, ROLL_TOL, MEDIUM},
    {&OP_ROLLOUT_ATTN, "rollout B2 H12 hd64 N785 x1", {2, 12, 64, 785, 1}, ROLL_TOL, BIG},

    // topk_select: p = {B, N, K, mode}. Indices: exact on every backend.
    {&OP_TOPK, "topk hand CLS largest, ties", {2, 7, 3, 2}, {CPU(0, 0), CUDA(0, 0)}, SMALL},
    {&OP_TOPK, "topk hand written ascending", {1, 7, 3, 3}, {CPU(0, 0), CUDA(0, 0)}, SMALL},
    {&OP_TOPK, "topk B2 N45 K9 grid ties", {2, 45, 9, 0}, {CPU(0, 0), CUDA(0, 0)}, SMALL},
    {&OP_TOPK, "topk B2 N45 K9 all equal", {2, 45, 9, 1}, {CPU(0, 0), CUDA(0, 0)}, SMALL},
    {&OP_TOPK, "topk B1 N17 K16 all patches", {1, 17, 16, 0}, {CPU(0, 0), CUDA(0, 0)}, SMALL},
    {&OP_TOPK, "topk B3 N65 K1", {3, 65, 1, 0}, {CPU(0, 0), CUDA(0, 0)}, SMALL},

    // crossentropy: p = {B, C, 1/dscale, large first logit, logit scale}.
    {&OP_CROSSENTROPY, "crossentropy B4 C6 logit 80", {4, 6, 4, 1, 3}, {CPU(FWD, GRAD), CUDA(G_EW, G_EW)}, SMALL},
    {&OP_CROSSENTROPY, "crossentropy B1 C17", {1, 17, 1, 0, 3}, {CPU(FWD, GRAD), CUDA(G_EW, G_EW)}, SMALL},
    {&OP_CROSSENTROPY, "crossentropy B5 C200", {5, 200, 4, 0, 4}, {CPU(FWD, GRAD), CUDA(G_EW, G_EW)}, SMALL},
    {&OP_CROSSENTROPY, "crossentropy B5 C1000", {5, 1000, 4, 0, 4}, {CPU(FWD, GRAD), CUDA(G_EW, G_EW)}, MEDIUM},

    // loss_forward: p = {B, heads, uncertainty weighting}; loss_backward: p = {heads, uw, scale ×100}.
    // fp32 results of double sums (loss_forward) or a few fp32 operations (loss_backward).
    {&OP_LOSS, "loss B4 all heads uw", {4, 7, 1}, {CPU(FWD, 0), CUDA(G_EW, 0)}, SMALL},
    {&OP_LOSS, "loss B3 SA+GLCA uw", {3, 3, 1}, {CPU(FWD, 0), CUDA(G_EW, 0)}, SMALL},
    {&OP_LOSS, "loss B5 SA+PWCA plain", {5, 5, 0}, {CPU(FWD, 0), CUDA(G_EW, 0)}, SMALL},
    {&OP_LOSS_BWD, "loss_backward all heads uw s=0.25", {7, 1, 25}, {CPU(FWD, 0), CUDA(G_EW, 0)}, SMALL},
    {&OP_LOSS_BWD, "loss_backward SA only uw s=1", {1, 1, 100}, {CPU(FWD, 0), CUDA(G_EW, 0)}, SMALL},
    {&OP_LOSS_BWD, "loss_backward SA+GLCA plain s=0.5", {3, 0, 50}, {CPU(FWD, 0), CUDA(G_EW, 0)}, SMALL},

    // adamw_update: p = {n, steps, wd×1000, first t, lr×1e4, hand}. CPU: fp32 elementwise
    // (measured ≤ 1.7e-7; 4e-7 of max|p| ≈ 2 keeps the old 1e-6 absolute bound of the hand step).
    {&OP_ADAMW, "adamw hand decay", {2, 1, 50, 1, 1000, 1}, {CPU(4e-7, 0), CUDA(G_EW, 0)}, SMALL},
    {&OP_ADAMW, "adamw hand no decay", {1, 1, 0, 1, 100, 2}, {CPU(4e-7, 0), CUDA(G_EW, 0)}, SMALL},
    {&OP_ADAMW, "adamw n1000 x3 decay", {1000, 3, 50, 1, 10, 0}, {CPU(4e-7, 0), CUDA(G_EW, 0)}, SMALL},
    {&OP_ADAMW, "adamw n1000 x3 no decay t5", {1000, 3, 0, 5, 10, 0}, {CPU(4e-7, 0), CUDA(G_EW, 0)}, SMALL},
    {&OP_ADAMW, "adamw n10007 x3 decay", {10007, 3, 50, 1, 10, 0}, {CPU(4e-7, 0), CUDA(G_EW, 0)}, SMALL},
    // adamw_multi: p = {n, steps, wd×1000, first t, lr×1e4}; spans of odd lengths, gaps, mixed decay
    // (ops_train.c multi_spans). The same arithmetic as adamw_update, so the same bounds.
    {&OP_ADAMW_MULTI, "adamw_multi n1000 x3 spans", {1000, 3, 50, 1, 10}, {CPU(4e-7, 0), CUDA(G_EW, 0)}, SMALL},
    {&OP_ADAMW_MULTI, "adamw_multi n10007 x2 spans t7", {10007, 2, 100, 7, 10}, {CPU(4e-7, 0), CUDA(G_EW, 0)}, SMALL},

    // sumsq: p = {n}. Double accumulation on every backend; one square of a float is exact.
    {&OP_SUMSQ, "sumsq n=1", {1}, {CPU(0, 0), CUDA(0, 0)}, SMALL},
    {&OP_SUMSQ, "sumsq n=1000", {1000}, {CPU(1e-12, 0), CUDA(1e-9, 0)}, SMALL},
    {&OP_SUMSQ, "sumsq n=3000017", {3000017}, {CPU(1e-9, 0), CUDA(1e-9, 0)}, BIG},
};
enum { NROWS = sizeof rows / sizeof rows[0] };

// DCAL_OPS_ONLY=name[,name...] runs only the rows of those ops (OpDef names): the simulator's
// planted-bug runs check the planted kernel's ops, not the whole table again (tools/cudasim/planted).
static int selected(const Row *row) {
    const char *only = getenv("DCAL_OPS_ONLY");
    if (!only || !*only) return 1;
    size_t n = strlen(row->op->name);
    for (const char *p = only; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, row->op->name, n) && (p[n] == ',' || !p[n])) return 1;
    return 0;
}

START_TEST(test_row) {
    if (!selected(&rows[_i])) return;
    int fail = run_row(&rows[_i], _i);
    ck_assert_msg(!fail, "op row '%s' failed (see the FAIL line above)", rows[_i].label);
}
END_TEST

// After every row: the cuDNN column of the attention rows (tests/ops/runner.c run_row_cudnn).
START_TEST(test_row_cudnn) {
    if (!selected(&rows[_i])) return;
    int fail = run_row_cudnn(&rows[_i], _i);
    ck_assert_msg(!fail, "op row '%s' failed in its cuDNN column (see the FAIL line above)", rows[_i].label);
}
END_TEST

static const Row *find_row(const char *label) {
    for (int i = 0; i < NROWS; i++)
        if (!strcmp(rows[i].label, label)) return &rows[i];
    ck_abort_msg("no row %s", label);
    return NULL;
}

static void expect_ref(const char *label, const double *want, int n, double tol) {
    double *got = ref_output(find_row(label), 0);
    for (int i = 0; i < n; i++) ck_assert_msg(fabs(got[i] - want[i]) <= tol, "%s[%d]: %.9g, want %.9g", label, i, got[i], want[i]);
    free(got);
}

// The references themselves, on cases computed by hand.
START_TEST(test_reference_hand_values) {
    // Rollout, MODEL.md §2: r = row0(S̄2)·S̄1 with S̄ = 0.5 S + 0.5 I → [.46, .39, .15].
    double S2[9] = {.2, .6, .2, .1, .1, .8, 1 / 3., 1 / 3., 1 / 3.}, S1[9] = {.5, .25, .25, 0, 1, 0, .2, .3, .5};
    double r[3] = {1, 0, 0};
    ref_rollout_step(r, S2, 1, 3);
    ref_rollout_step(r, S1, 1, 3);
    for (int j = 0; j < 3; j++) ck_assert_double_eq_tol(r[j], ((const double[]){.46, .39, .15})[j], 1e-12);
    // Top-K: CLS never ranks; ties → lower index; output [0; ascending].
    expect_ref("topk hand CLS largest, ties", (const double[]){0, 2, 3, 5, 0, 1, 2, 3}, 8, 0);
    expect_ref("topk hand written ascending", (const double[]){0, 2, 4, 6}, 4, 0);
    // AdamW at t=1: m̂ = g, v̂ = g², so p −= lr·(sign(g) + wd·p).
    expect_ref("adamw hand decay", (const double[]){1 - 0.1 * (1 + 0.05), -2 - 0.1 * (-1 + 0.05 * -2)}, 2, 1e-7);
    expect_ref("adamw hand no decay", (const double[]){3 - 0.01}, 1, 1e-7);
    // Drop-path: rate 0 keeps every sample at scale 1; rate 1 drops the whole last block.
    expect_ref("droppath 1 blk B3 rate 0", (const double[]){1, 1, 1, 1, 1, 1}, 6, 0);
    double *dp = ref_output(find_row("droppath 2 blk B33 rate 1"), 0);
    for (int i = 2 * 33; i < 4 * 33; i++) ck_assert_msg(dp[i] == 0, "droppath rate 1: last block [%d] = %g", i, dp[i]);
    free(dp);
}
END_TEST

int main(void) {
    // Which engine the cpu-bf16 column runs (oneDNN where the CPU has the instructions, else
    // the portable one under DCAL_CPU_BF16=portable): the test's output names it.
    if (strstr(backend_cpu.precisions, "bf16") && backend_cpu.set_precision("bf16")) {
        char d[1024];
        backend_cpu.describe(d, sizeof d);
        const char *p = strstr(d, "precision bf16:");
        printf("cpu-bf16 column: %s\n", p ? p : d);
        backend_cpu.set_precision("fp32");
    }
    Suite *s = suite_create("gradcheck_backend_ops");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_reference_hand_values);
    tcase_add_loop_test(tc, test_row, 0, NROWS);
    tcase_add_loop_test(tc, test_row_cudnn, 0, NROWS);
    suite_add_tcase(s, tc);
    // No fork: a CUDA context made before a fork is unusable in the child.
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

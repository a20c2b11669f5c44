// cpu_scratch_rule.h: the CPU backend's host scratch (below, and at the end: attention's and the
// rollout's at any precision), as plain C, so that the
// planner counts it (dcal plan, the micro-batch picker) and src/backend/cpu/linear_bf16.c sizes
// its operand copies with the same functions (cuda_scratch_rule.h is the CUDA side's).
//
// At bf16 every linear weight has a bf16 copy, made once per change (weight_bf16.c: 2 bytes a
// weight, cpu_weight_copies below). A bf16 linear call takes its rows CPU_LIN_ROWS at a time
// and copies, into three grow-only buffers: the weight's copy widened to fp32 (slot A: [OC, IC],
// the portable engine only); a chunk of the Act input widened to
// fp32 (slot B: [n, IC], the portable engine only: oneDNN reads bf16 in place); and a chunk of
// dout rounded to bf16, or of an Act output before its rounding (slot C: [n, OC]). The portable
// engine's copies are fp32 (4 bytes), oneDNN's bf16 (2): the rule counts 4, an upper bound for
// both. A buffer keeps its largest size, so the peak is the sum of each slot's largest request.
// At fp32 nothing is copied.
#pragma once
#include <stddef.h>

#define CPU_LIN_ROWS 512
// Attention's query and key tiles and the rollout's query rows per tile (attention.c, rollout.c).
#define CPU_ATT_QT 64
#define CPU_ATT_KT 256
#define CPU_ROLLOUT_PR 64
static inline size_t cpu_lin_chunk(size_t rows) { return rows < CPU_LIN_ROWS ? rows : CPU_LIN_ROWS; }
// The bf16 copies of the linear weights (model_block.c's and model_graph.c's calls): the patch
// embedding [D, 3·p²]; per SA block qkv [3D, D], proj [D, D], fc1 [F, D], fc2 [D, F]; per GLCA
// block the same, its qkv as two copies (q's [D, D] rows, k|v's [2D, D]); the SA and GLCA heads
// [C, D] (PWCA's is SA's). Linear calls on other weights would add theirs.
static inline size_t cpu_weight_copies(int patch, int D, int F, int depth, int glca, int classes) {
    size_t block = (size_t)4 * D * D + (size_t)2 * D * F;
    return 2 * ((size_t)D * 3 * patch * patch + (size_t)(depth + glca) * block + (size_t)2 * classes * D);
}
// The three slots' bytes for one linear layer [rows, IC] → [rows, OC] at bf16.
static inline void cpu_linear_scratch(size_t rows, int IC, int OC, size_t slot[3]) {
    slot[0] = (size_t)OC * IC * 4;
    slot[1] = cpu_lin_chunk(rows) * IC * 4;
    slot[2] = cpu_lin_chunk(rows) * OC * 4;
}

// At any precision, two ops take scratch for the length of one call, never at once: attention,
// per thread, its tile buffers for Nq queries and n1 + n2 keys (q, o, dO: [min(QT, Nq), hd];
// qT and dOᵀ: [hd, QT]; Sᵀ and dPᵀ: [min(KT, max(n1, n2)), QT]; three per-query statistics
// [QT]) and one (b, h)'s keys and values packed, [n1 + n2, hd] each; the rollout its H × PR × N
// scores, shared, and per thread PR query rows (and at bf16 N widened keys).
static inline size_t cpu_att_qrows(int Nq) { return Nq < CPU_ATT_QT ? (size_t)Nq : CPU_ATT_QT; }
static inline size_t cpu_att_krows(int n1, int n2) {
    int n = n1 > n2 ? n1 : n2;
    return n < CPU_ATT_KT ? (size_t)n : CPU_ATT_KT;
}
// At bf16 on a CPU with AMX (attention_bf16.c) the fp32 packs and transposes give way to bf16
// operands: keys and values as rows and transposed (each buffer padded to an even count), the
// query and dO tiles pair-interleaved two ways, P and dS of a key tile as rows and interleaved;
// o is [hd, QT]. The plan counts the larger of the two layouts at bf16 (the CPU decides which runs).
static inline size_t cpu_att_even(size_t n) { return (n + 1) & ~(size_t)1; }
static inline size_t cpu_attention_scratch(int Nq, int n1, int n2, int hd, int bf16) {
    size_t qr = cpu_att_qrows(Nq), kr = cpu_att_krows(n1, n2), QT = CPU_ATT_QT;
    size_t f32 = (3 * qr * hd + 2 * (size_t)hd * QT + 2 * kr * QT + 3 * QT + (size_t)2 * (n1 + n2) * hd) * 4;
    if (!bf16 || hd % 2) return f32;
    size_t b16 = (2 * qr * hd + QT * hd + 2 * kr * QT + 3 * QT) * 4 +
                 ((size_t)2 * (n1 + n2) * hd + 2 * (size_t)hd * (cpu_att_even(n1) + cpu_att_even(n2)) + 4 * QT * hd +
                  4 * cpu_att_even(kr) * QT) * 2;
    return b16 > f32 ? b16 : f32;
}
// At bf16 on the tile engines (rollout.c) each thread owns cpu_rollout_cols key columns: their
// keys per head, bf16 [H, hd, cols], and two [PR, cols] float buffers. The plan counts the larger.
static inline size_t cpu_rollout_cols(int N, int threads) {
    return ((size_t)(N + threads - 1) / threads + 15) / 16 * 16;
}
static inline size_t cpu_rollout_scratch(int H, int N, int hd, int bf16, int threads) {
    size_t sg = (size_t)H * CPU_ROLLOUT_PR * N * 4 +
                (size_t)threads * ((size_t)CPU_ROLLOUT_PR * hd + (bf16 ? (size_t)N * hd : 1)) * 4;
    size_t w = cpu_rollout_cols(N, threads), cols = (size_t)threads * w * ((size_t)H * hd * 2 + 2 * CPU_ROLLOUT_PR * 4);
    return bf16 && hd % 2 == 0 && cols > sg ? cols : sg;
}

// cpu_scratch_rule.h: the CPU backend's host scratch at precision bf16, as plain C, so that the
// planner counts it (dcal plan, the micro-batch picker) and src/backend/cpu/linear_bf16.c sizes
// its operand copies with the same functions (cuda_scratch_rule.h is the CUDA side's).
//
// A bf16 linear call takes its rows CPU_LIN_ROWS at a time and copies, into three grow-only
// buffers: the weight, rounded to bf16 (slot A: [OC, IC]); a chunk of the Act input widened to
// fp32 (slot B: [n, IC], the portable engine only: oneDNN reads bf16 in place); and a chunk of
// dout rounded to bf16, or of an Act output before its rounding (slot C: [n, OC]). The portable
// engine's copies are fp32 (4 bytes), oneDNN's bf16 (2): the rule counts 4, an upper bound for
// both. A buffer keeps its largest size, so the peak is the sum of each slot's largest request.
// At fp32 nothing is copied.
#pragma once
#include <stddef.h>

#define CPU_LIN_ROWS 512
static inline size_t cpu_lin_chunk(size_t rows) { return rows < CPU_LIN_ROWS ? rows : CPU_LIN_ROWS; }
// The three slots' bytes for one linear layer [rows, IC] → [rows, OC] at bf16.
static inline void cpu_linear_scratch(size_t rows, int IC, int OC, size_t slot[3]) {
    slot[0] = (size_t)OC * IC * 4;
    slot[1] = cpu_lin_chunk(rows) * IC * 4;
    slot[2] = cpu_lin_chunk(rows) * OC * 4;
}

// cudasim_mma_sm80.h: models of the sm_80 warp-level matrix instructions that
// kernels/mma_sm80.cuh wraps (tools/cudasim/README.md, "mma.sync and ldmatrix").
//
// Each is warp-collective, as on the hardware (.sync.aligned): all 32 lanes must
// arrive at the same instruction (else the simulator reports the divergence and
// exits), each deposits its own operand registers, and each gets back only its
// own result registers, placed by the PTX ISA's documented lane ↔ element
// layout. A kernel that packs a fragment in the wrong lanes or registers
// therefore computes wrong numbers here, as it would on a GPU.
#pragma once
#include <stdint.h>

namespace cudasim {
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32: d = a·b + c for the warp's
// 16×16 A (4 regs of bf16x2), 16×8 B (2 regs), 16×8 C/D (4 floats). bf16 products
// are exact in fp32; each d element sums c then k = 0..15 in order, in fp32.
void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]);
// ldmatrix.sync.aligned.m8n8.x{num}{.trans}.shared.b16: lanes 8m..8m+7 give the
// row addresses (16 bytes each, 16-byte aligned, in shared memory) of matrix m;
// lane l receives in r[m] row l/4, columns 2(l%4) and 2(l%4)+1 of matrix m (the
// transpose of matrix m with trans). A row is read when its lane arrives.
void ldmatrix_b16(uint32_t *r, int num, bool trans, const void *row);
}   // namespace cudasim

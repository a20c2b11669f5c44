// mma_sm80.cuh: one device wrapper per sm_80 warp-level matrix instruction the
// FA2-style attention forward (attention_fa2.cu) and backward (attention_fa2_bwd.cu) use. Under nvcc for
// sm_80+ each is one inline PTX instruction; compiled by the CUDA simulator
// (tools/cudasim, which defines CUDASIM) each calls the simulator's
// warp-collective model of that instruction (tools/cudasim/mma_sm80.cpp), which
// places every element by the layouts below, so a kernel that builds a fragment
// wrongly fails the parity suite without a GPU.
//
// Layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point
// type"; g = lane >> 2 "groupID", t = lane % 4 "threadID_in_group"; a b32
// register holds two bf16, the lower-indexed element in the low 16 bits):
//   A 16×16 row-major, 4 regs:  a[0] = A[g][2t..2t+1]     a[1] = A[g+8][2t..2t+1]
//                               a[2] = A[g][2t+8..2t+9]   a[3] = A[g+8][2t+8..2t+9]
//   B 16×8 "col" (k × n), 2 regs: b[0] = B[2t..2t+1][g]   b[1] = B[2t+8..2t+9][g]
//   C/D 16×8 fp32, 4 regs:      c[0..1] = C[g][2t..2t+1]  c[2..3] = C[g+8][2t..2t+1]
// ldmatrix m8n8 .b16 (.x1/.x2/.x4 loads 1/2/4 matrices): lane 8m+i gives the
// address of row i of matrix m (16 bytes, 16-byte aligned, shared memory); lane
// l receives r[m] = M_m[l/4][2(l%4)..2(l%4)+1], or with .trans the transpose:
// r[m] = {M_m[2(l%4)][l/4], M_m[2(l%4)+1][l/4]}. So a plain x4 of a row-major tile
// gives an A fragment (or two B fragments of a row-major Bᵀ, i.e. K for Q·Kᵀ),
// and .trans of a row-major k × n tile gives B fragments (V for P·V).
//
// No cp.async here yet. While q/k/v were fp32 every element had to pass through
// registers to be rounded, so cp.async could only add an fp32 staging tile. They
// now arrive in bf16 (Act tensors at precision bf16), already the tiles' type, so
// a cp.async copy of the next K/V tile, overlapped with this tile's products
// (double buffering), is the next step; it waits for a simulator model of
// cp.async (tools/cudasim has none), so that its numerics stay checked off-GPU.
#pragma once
#include <stdint.h>
#include <cuda_bf16.h>
#ifdef CUDASIM
#include "cudasim_mma_sm80.h"
#endif

// Two floats → one bf16x2 register (lo in the low half), each rounded to nearest even.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16(lo)) |
           (uint32_t)__bfloat16_as_ushort(__float2bfloat16(hi)) << 16;
}

// d = a·b + c (mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32). d may be c.
__device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                  const float c[4]) {
#if defined(CUDASIM)
    cudasim::mma_m16n8k16_bf16(d, a, b, c);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
                   "f"(c[2]), "f"(c[3]));
#else
    __trap();   // below sm_80: the host side never launches an mma kernel there (device.cu)
#endif
}

#if !defined(CUDASIM) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
#endif

// ldmatrix.sync.aligned.m8n8.x4.shared.b16: four 8×8 matrices, rows addressed by lanes 0-7, 8-15, 16-23, 24-31.
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *row) {
#if defined(CUDASIM)
    cudasim::ldmatrix_b16(r, 4, false, row);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(row)));
#else
    __trap();
#endif
}

// ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16: the same four matrices, each transposed.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *row) {
#if defined(CUDASIM)
    cudasim::ldmatrix_b16(r, 4, true, row);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(row)));
#else
    __trap();
#endif
}

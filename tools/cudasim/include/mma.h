// cudasim's mma.h: nvcuda::wmma on whole 16×16×16 tiles (tools/cudasim/README.md).
//
// Model: an accumulator lane owns the elements e ≡ lane (mod 32) of the
// row-major 16×16 tile: mma_sync computes, load_matrix_sync reads and
// store_matrix_sync writes only those; an A or B fragment holds, in each lane,
// the rows and column of the tiles those elements need, read from memory when
// the lane reaches load_matrix_sync. So a lane
// that reads the stored tile without a __syncwarp sees its neighbours' elements
// unwritten (NaN-poisoned shared memory) — a missing barrier shows. Products of
// bf16 operands are exact in fp32 and are accumulated in fp32 in k order.
// Checked as the hardware requires: 32-byte aligned pointers, ldm a multiple
// of 16 bytes. Only m16n16k16 with bf16 (or half-size float for the accumulator).
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include "cuda_bf16.h"
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment;
template <class Layout> struct fragment<matrix_a, 16, 16, 16, __nv_bfloat16, Layout> {
    enum { num_elements = 256 };
    float x[256];   // (row, k) row-major; bf16 values held as floats
};
template <class Layout> struct fragment<matrix_b, 16, 16, 16, __nv_bfloat16, Layout> {
    enum { num_elements = 256 };
    float x[256];   // (k, col) row-major
};
template <> struct fragment<accumulator, 16, 16, 16, float, void> {
    enum { num_elements = 256 };
    float x[256];   // (row, col) row-major; this lane's elements e ≡ lane (mod 32) only
};

static inline void check_ptr(const void *p, unsigned ldm, size_t esize, const char *what) {
    if ((uintptr_t)p % 32)
        cudasim::fail("wmma::%s: pointer %p is not 32-byte aligned (wmma requires 256-bit alignment)", what, p);
    if ((ldm * esize) % 16)
        cudasim::fail("wmma::%s: ldm %u is not a multiple of 16 bytes", what, ldm);
}

// A lane reads only what its accumulator elements need (mma_sync below): rows
// i ≡ lane/16 (mod 2) of A and column lane%16 of B; the rest of its fragment is unused.
template <class Layout>
void load_matrix_sync(fragment<matrix_a, 16, 16, 16, __nv_bfloat16, Layout> &f, const __nv_bfloat16 *p, unsigned ldm) {
    check_ptr(p, ldm, 2, "load_matrix_sync(matrix_a)");
    const bool row = std::is_same<Layout, row_major>::value;
    for (int i = cudasim::lane_id() / 16; i < 16; i += 2)
        for (int k = 0; k < 16; k++) f.x[i * 16 + k] = __bfloat162float(p[row ? i * ldm + k : k * ldm + i]);
}
template <class Layout>
void load_matrix_sync(fragment<matrix_b, 16, 16, 16, __nv_bfloat16, Layout> &f, const __nv_bfloat16 *p, unsigned ldm) {
    check_ptr(p, ldm, 2, "load_matrix_sync(matrix_b)");
    const bool row = std::is_same<Layout, row_major>::value;
    const int j = cudasim::lane_id() % 16;
    for (int k = 0; k < 16; k++) f.x[k * 16 + j] = __bfloat162float(p[row ? k * ldm + j : j * ldm + k]);
}
static inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p, unsigned ldm,
                                    layout_t l) {
    check_ptr(p, ldm, 4, "load_matrix_sync(accumulator)");
    for (int e = cudasim::lane_id(); e < 256; e += 32) {
        int i = e / 16, j = e % 16;
        f.x[e] = p[l == mem_row_major ? i * ldm + j : j * ldm + i];
    }
}
static inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm,
                                     layout_t l) {
    check_ptr(p, ldm, 4, "store_matrix_sync");
    for (int e = cudasim::lane_id(); e < 256; e += 32) {
        int i = e / 16, j = e % 16;
        p[l == mem_row_major ? i * ldm + j : j * ldm + i] = f.x[e];
    }
}
template <class Use, class T, class Layout>
void fill_fragment(fragment<Use, 16, 16, 16, T, Layout> &f, float v) {
    for (int e = 0; e < 256; e++) f.x[e] = v;
}
template <class LA, class LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA> &a,
              const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB> &b,
              const fragment<accumulator, 16, 16, 16, float> &c) {
    for (int e = cudasim::lane_id(); e < 256; e += 32) {
        int i = e / 16, j = e % 16;
        float s = c.x[e];
        for (int k = 0; k < 16; k++) s += a.x[i * 16 + k] * b.x[k * 16 + j];
        d.x[e] = s;
    }
}
}   // namespace wmma
}   // namespace nvcuda

// mma_sm80.cpp: cudasim's models of mma.sync m16n8k16 (bf16 → fp32) and
// ldmatrix m8n8 .b16, with the register layouts of the PTX ISA ("Matrix
// Fragments for mma.m16n8k16 with floating point type"; "ldmatrix"):
//   groupID g = lane >> 2, threadID_in_group t = lane % 4; a b32 register holds
//   two 16-bit elements, the lower-indexed one in its low half.
//   A (16×16, row): a0,a1 (row g,   cols 2t,2t+1)   a2,a3 (row g+8, cols 2t,2t+1)
//                   a4,a5 (row g,   cols 2t+8,+9)   a6,a7 (row g+8, cols 2t+8,+9)
//   B (16×8, col):  b0,b1 (rows 2t,2t+1, col g)     b2,b3 (rows 2t+8,+9, col g)
//   C/D (16×8):     c0,c1 (row g, cols 2t,2t+1)     c2,c3 (row g+8, cols 2t,2t+1)
// The models look each element up in the lane and register that holds it, so a
// kernel that builds a fragment differently gets different numbers.
#include <string.h>
#include "cuda_runtime.h"
#include "cudasim_mma_sm80.h"

namespace cudasim {
namespace {

float bf16_at(uint32_t reg, int half) {
    uint32_t u = (half ? reg >> 16 : reg & 0xffffu) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

struct MmaIn {
    uint32_t a[4], b[2];
    float c[4];
};
static_assert(sizeof(MmaIn) <= WARP_COLL_STRIDE, "mma operands fit a collective slot");

const MmaIn &lane_in(const unsigned char *all, int lane) { return *(const MmaIn *)(all + lane * WARP_COLL_STRIDE); }

// A[row][col] of the warp's fragment: held by lane 4(row%8) + (col%8)/2, register (row≥8) + 2(col≥8).
float elem_a(const unsigned char *all, int row, int col) {
    const MmaIn &in = lane_in(all, (row % 8) * 4 + (col % 8) / 2);
    return bf16_at(in.a[(row >= 8) + 2 * (col >= 8)], col & 1);
}
// B[k][n]: lane 4n + (k%8)/2, register k≥8.
float elem_b(const unsigned char *all, int k, int n) {
    const MmaIn &in = lane_in(all, n * 4 + (k % 8) / 2);
    return bf16_at(in.b[k >= 8], k & 1);
}

}   // namespace

void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
    MmaIn mine;
    memcpy(mine.a, a, sizeof mine.a);
    memcpy(mine.b, b, sizeof mine.b);
    memcpy(mine.c, c, sizeof mine.c);
    int lane;
    const unsigned char *all =
        warp_collective(0xffffffffu, &mine, sizeof mine, "mma.sync.m16n8k16.bf16", &lane);
    const int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; i++) {
        int row = g + 8 * (i >= 2), col = 2 * t + (i & 1);
        float s = mine.c[i];   // c_i is this lane's own element (row, col)
        for (int k = 0; k < 16; k++) s += elem_a(all, row, k) * elem_b(all, k, col);
        d[i] = s;
    }
}

void ldmatrix_b16(uint32_t *r, int num, bool trans, const void *row) {
    const char *what = trans ? "ldmatrix.m8n8.trans.b16" : "ldmatrix.m8n8.b16";
    if (num != 1 && num != 2 && num != 4) fail("%s: .x%d (want .x1, .x2 or .x4)", what, num);
    uint16_t mine[8] = {0};
    const int me = lane_id();
    if (me < 8 * num) {   // lanes past the last matrix's rows give no address
        if ((uintptr_t)row % 16) fail("%s: lane %d's row address %p is not 16-byte aligned", what, me, row);
        if (!shared_range(row, 16)) fail("%s: lane %d's row address %p is not in shared memory", what, me, row);
        memcpy(mine, row, 16);
    }
    int lane;
    const unsigned char *all = warp_collective(0xffffffffu, mine, sizeof mine, what, &lane);
    const int g = lane >> 2, t = lane & 3;
    for (int m = 0; m < num; m++) {
        uint16_t e[2];
        for (int j = 0; j < 2; j++) {
            // Matrix m's row i is lane 8m+i's deposit; plain: (g, 2t+j), transposed: (2t+j, g).
            int i = trans ? 2 * t + j : g, col = trans ? g : 2 * t + j;
            memcpy(&e[j], all + (8 * m + i) * WARP_COLL_STRIDE + 2 * col, 2);
        }
        r[m] = (uint32_t)e[0] | (uint32_t)e[1] << 16;
    }
}

}   // namespace cudasim

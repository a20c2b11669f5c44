// curand_stream.cu (ctest sim_curand): cuRAND's Philox4_32_10, compiled from the CUDA
// toolkit's own curand_kernel.h and run by the simulator, draws core/rng.c's streams
// bit for bit: the raw block function for any (counter, key); every u32 of a stream
// through curand() once kernels/rng_philox.cuh has set the state; rng_uniform's
// doubles. And why the state is set per block: cuRAND's own stepping leaves rng.c's
// stream at the end of a block. Written as CUDA and translated by cu2cpp.pl.
// Skips (77) when only the stand-in curand_kernel.h is there: it would test itself.
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>
#include "kernels/rng_philox.cuh"
extern "C" {
#include "core/rng.h"
}

static int g_fail;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); g_fail = 1; } } while (0)

struct Stream { uint64_t seed; uint32_t epoch; uint64_t index; uint32_t purpose; };
// High words set in seed and index, the largest epoch, and the drop-path streams' own shape.
static const Stream streams[] = {
    {0, 0, 0, RNG_DROPPATH},
    {42, 3, 17, RNG_DROPPATH},
    {0xDEADBEEFCAFEF00Dull, 0xFFFFFFFFu, 0x123456789ABCDEFull, RNG_INIT},
    {7, 71, (1ull << 32) + 5, RNG_SHUFFLE},
    {~0ull, 1, ~0ull, RNG_TEST},
};
enum { NS = sizeof streams / sizeof streams[0] };
// u32 positions to seek to: the first blocks at every offset, then far ones.
static const uint64_t positions[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 30, 31, 4001, 4002, 4003, (1ull << 20) + 3,
                                     (1ull << 33) + 2};
enum { NP = sizeof positions / sizeof positions[0], NRAW = 64, NUNI = 300 };

template <class T> static T *dev(const T *h, size_t n) {
    T *d;
    cudaMalloc(&d, n * sizeof(T));
    if (h) cudaMemcpy(d, h, n * sizeof(T), cudaMemcpyHostToDevice);
    return d;
}
template <class T> static void back(T *h, const T *d, size_t n) { cudaMemcpy(h, d, n * sizeof(T), cudaMemcpyDeviceToHost); }

// cuRAND's block function on given counters and keys (4 + 2 words per case).
__global__ void raw_block_kernel(unsigned *out, const unsigned *in, int n) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    const unsigned *c = in + t * 6;
    uint4 o = curand_Philox4x32_10(make_uint4(c[0], c[1], c[2], c[3]), make_uint2(c[4], c[5]));
    out[t * 4] = o.x, out[t * 4 + 1] = o.y, out[t * 4 + 2] = o.z, out[t * 4 + 3] = o.w;
}

// Seek to a position, then curand() up to `n` draws (n > what is left of the block
// crosses into cuRAND's next block: the negative check below).
__global__ void seek_kernel(unsigned *out, const Stream *st, const uint64_t *pos, int np, int n) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= NS * np) return;
    const Stream s = st[t / np];
    curandStatePhilox4_32_10_t r;
    rng_philox_seek(&r, s.seed, s.epoch, s.index, s.purpose, pos[t % np]);
    for (int i = 0; i < n; i++) out[t * n + i] = curand(&r);
}

__global__ void uniform_kernel(double *out, const Stream *st, int nu) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= NS * nu) return;
    const Stream s = st[t / nu];
    curandStatePhilox4_32_10_t r;
    rng_philox_seek(&r, s.seed, s.epoch, s.index, s.purpose, 2ull * (uint64_t)(t % nu));
    out[t] = rng_philox_uniform(&r);
}

// rng.c's block on a given (counter, key): its state's fields set directly.
static void rngc_block(const unsigned *c, unsigned *o) {
    Rng r;
    memcpy(r.ctr, c, 4 * sizeof(unsigned));
    memcpy(r.key, c + 4, 2 * sizeof(unsigned));
    r.used = 4;
    for (int i = 0; i < 4; i++) o[i] = rng_u32(&r);
}

static void test_raw_blocks(void) {
    unsigned in[NRAW * 6], want[4], got[NRAW * 4];
    Rng g;
    rng_init(&g, 2026, 0, 0, RNG_TEST);
    for (int i = 0; i < NRAW * 6; i++) in[i] = rng_u32(&g);
    for (int i = 0; i < 6; i++) in[i] = 0, in[6 + i] = 0xFFFFFFFFu;   // all-zero and all-ones cases
    unsigned *din = dev(in, NRAW * 6), *dout = dev<unsigned>(nullptr, NRAW * 4);
    raw_block_kernel<<<1, NRAW>>>(dout, din, NRAW);
    back(got, dout, NRAW * 4);
    for (int t = 0; t < NRAW; t++) {
        rngc_block(in + t * 6, want);
        CHECK(!memcmp(want, got + t * 4, sizeof want), "raw block %d: cuRAND %08x.. rng.c %08x..", t, got[t * 4],
              want[0]);
    }
    cudaFree(din), cudaFree(dout);
}

// rng.c's u32 number `pos` and the ones after it, by drawing from the start.
static void rngc_from(const Stream &s, uint64_t pos, unsigned *o, int n) {
    Rng r;
    rng_init(&r, s.seed, s.epoch, s.index, s.purpose);
    r.ctr[3] = (uint32_t)(pos >> 2);   // skip whole blocks (rng.c's block counter), then draw
    for (uint64_t i = 0; i < (pos & 3); i++) rng_u32(&r);
    for (int i = 0; i < n; i++) o[i] = rng_u32(&r);
}

static void test_seek(void) {
    unsigned got[NS * NP * 4], want[8];
    Stream *ds = dev(streams, NS);
    uint64_t *dp = dev(positions, NP);
    unsigned *dout = dev<unsigned>(nullptr, NS * NP * 4);
    seek_kernel<<<1, NS * NP>>>(dout, ds, dp, NP, 4);
    back(got, dout, NS * NP * 4);
    for (int s = 0; s < NS; s++)
        for (int p = 0; p < NP; p++) {
            int left = 4 - (int)(positions[p] & 3);   // draws to the end of the block
            rngc_from(streams[s], positions[p], want, left);
            const unsigned *g = got + (s * NP + p) * 4;
            CHECK(!memcmp(want, g, left * sizeof(unsigned)), "stream %d pos %llu: cuRAND %08x rng.c %08x", s,
                  (unsigned long long)positions[p], g[0], want[0]);
        }
    // The sanity check for the sanity check: from pos 0, curand()'s draws 4..7 come from
    // cuRAND's next counter (ctr.x + 1), not rng.c's (ctr.w + 1).
    unsigned cross[NS * NP * 8];
    unsigned *dcross = dev<unsigned>(nullptr, NS * NP * 8);
    seek_kernel<<<1, NS * NP>>>(dcross, ds, dp, NP, 8);
    back(cross, dcross, NS * NP * 8);
    for (int s = 0; s < NS; s++) {
        rngc_from(streams[s], 0, want, 8);
        const unsigned *g = cross + s * NP * 8;   // positions[0] == 0
        CHECK(!memcmp(want, g, 4 * sizeof(unsigned)), "stream %d: first block differs", s);
        CHECK(memcmp(want + 4, g + 4, 4 * sizeof(unsigned)), "stream %d: cuRAND's own next block equals rng.c's", s);
    }
    cudaFree(ds), cudaFree(dp), cudaFree(dout), cudaFree(dcross);
}

static void test_uniform(void) {
    static double got[NS * NUNI];
    Stream *ds = dev(streams, NS);
    double *dout = dev<double>(nullptr, NS * NUNI);
    uniform_kernel<<<(NS * NUNI + 255) / 256, 256>>>(dout, ds, NUNI);
    back(got, dout, NS * NUNI);
    for (int s = 0; s < NS; s++) {
        Rng r;
        rng_init(&r, streams[s].seed, streams[s].epoch, streams[s].index, streams[s].purpose);
        for (int i = 0; i < NUNI; i++) {
            double want = rng_uniform(&r);
            CHECK(!memcmp(&want, &got[s * NUNI + i], sizeof want), "stream %d uniform %d: cuRAND %.17g rng.c %.17g", s,
                  i, got[s * NUNI + i], want);
        }
    }
    cudaFree(ds), cudaFree(dout);
}

int main(void) {
#if !CUDASIM_REAL_CURAND
    printf("sim_curand: SKIP: built against the stand-in curand_kernel.h: no CUDA toolkit headers were found at "
           "configure time (install them, e.g. Debian non-free's nvidia-cuda-dev, or set CUDASIM_CURAND_DIR), or "
           "CUDASIM_TOOLKIT_CURAND=OFF\n");
    return 77;
#endif
    test_raw_blocks();
    test_seek();
    test_uniform();
    printf("%s\n", g_fail ? "sim_curand: FAILED" : "sim_curand: cuRAND's Philox4_32_10 draws rng.c's streams bit for bit");
    return g_fail;
}

// bf16.c: the CPU's precision bf16 — Act storage in bf16, conversions, whether the CPU offers
// it, and the host scratch its GEMMs widen operands into (cpu.h).
#include <cpuid.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend/cpu/cpu.h"
#include "backend/cpu/exp512.h"
#include "core/common.h"

int cpu_bf16;

// Conversions. The row functions are serial: they run inside the ops' parallel regions, where a
// nested (if-false) OpenMP region per row of 64 elements cost more than the conversion. Their
// loops are branch-free so that they vectorise, compiled for AVX2 and AVX-512 beside the
// portable build and picked once per process; every variant gives f32_bf16's bits exactly.
static inline uint16_t round_bits(uint32_t u) {   // f32_bf16 without the branch
    uint32_t r = (u + 0x7fffu + (u >> 16 & 1)) >> 16, q = u >> 16 | 0x40;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? q : r);
}
#define CONVERSIONS(sfx, attr)                                                                       \
    static attr void pack_##sfx(uint16_t *restrict dst, const uint32_t *restrict src, size_t n) {    \
        for (size_t i = 0; i < n; i++) dst[i] = round_bits(src[i]);                                  \
    }                                                                                                \
    static attr void unpack_##sfx(uint32_t *restrict dst, const uint16_t *restrict src, size_t n) {  \
        for (size_t i = 0; i < n; i++) dst[i] = (uint32_t)src[i] << 16;                              \
    }                                                                                                \
    static attr void round_##sfx(uint32_t *restrict dst, const uint32_t *restrict src, size_t n) {   \
        for (size_t i = 0; i < n; i++) dst[i] = (uint32_t)round_bits(src[i]) << 16;                 \
    }
CONVERSIONS(base, )
CONVERSIONS(avx2, __attribute__((target("avx2"))))
CONVERSIONS(avx512, __attribute__((target("avx512f,avx512bw,avx512vl"))))

// With AVX512_BF16: 32 at a time by vcvtne2ps2bf16 (exp512.h: the same bits, a subnormal the
// integer way), about twice as fast as the integer loop on rows in cache (the GEMM outputs and
// gradients the linear layers round row by row).
static AVX512BF16 void pack_cvt(uint16_t *restrict dst, const uint32_t *restrict src, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i r = bf16_round2x512(_mm512_castsi512_ps(_mm512_loadu_si512(src + i)),
                                    _mm512_castsi512_ps(_mm512_loadu_si512(src + i + 16)), 1);
        _mm512_storeu_si512(dst + i, r);
    }
    pack_avx512(dst + i, src + i, n - i);
}

void cpu_bf16_pack_row(uint16_t *dst, const float *src, size_t n) {
    const uint32_t *u = (const uint32_t *)(const void *)src;
    int k = cpu_isa();
    if (k == 2) cpu_bf16_cvt() ? pack_cvt(dst, u, n) : pack_avx512(dst, u, n);
    else if (k == 1) pack_avx2(dst, u, n);
    else pack_base(dst, u, n);
}

void cpu_bf16_unpack_row(float *dst, const uint16_t *src, size_t n) {
    uint32_t *u = (uint32_t *)(void *)dst;
    int k = cpu_isa();
    if (k == 2) unpack_avx512(u, src, n);
    else if (k == 1) unpack_avx2(u, src, n);
    else unpack_base(u, src, n);
}

static void round_row(float *dst, const float *src, size_t n) {
    uint32_t *d = (uint32_t *)(void *)dst;
    const uint32_t *u = (const uint32_t *)(const void *)src;
    int k = cpu_isa();
    if (k == 2) round_avx512(d, u, n);
    else if (k == 1) round_avx2(d, u, n);
    else round_base(d, u, n);
}

// Whole arrays: contiguous blocks of 64 Ki elements over the threads (one region per call).
enum { CONV_BLOCK = 65536 };
#define OVER_BLOCKS(n, body)                                                                  \
    do {                                                                                      \
        size_t nb_ = ((n) + CONV_BLOCK - 1) / CONV_BLOCK;                                     \
        _Pragma("omp parallel for schedule(static) if (nb_ > 1)") for (size_t b_ = 0; b_ < nb_; b_++) { \
            size_t i = b_ * CONV_BLOCK, m = (n) - i < CONV_BLOCK ? (n) - i : CONV_BLOCK;      \
            body;                                                                             \
        }                                                                                     \
    } while (0)

void cpu_bf16_pack(uint16_t *dst, const float *src, size_t n) { OVER_BLOCKS(n, cpu_bf16_pack_row(dst + i, src + i, m)); }
void cpu_bf16_unpack(float *dst, const uint16_t *src, size_t n) {
    OVER_BLOCKS(n, cpu_bf16_unpack_row(dst + i, src + i, m));
}
void cpu_bf16_round(float *dst, const float *src, size_t n) { OVER_BLOCKS(n, round_row(dst + i, src + i, m)); }

// Rows of a few hundred elements, called inside OpenMP regions: the serial row functions.
void cpu_act_load(float *dst, const Act *p, size_t i, size_t n) {
    if (cpu_bf16) cpu_bf16_unpack_row(dst, (const uint16_t *)p + i, n);
    else memcpy(dst, (const float *)p + i, n * sizeof(float));
}

void cpu_act_store(Act *p, size_t i, const float *src, size_t n) {
    if (cpu_bf16) cpu_bf16_pack_row((uint16_t *)p + i, src, n);
    else memcpy((float *)p + i, src, n * sizeof(float));
}

// AVX512_BF16: CPUID.(EAX=7, ECX=1):EAX[5]; AMX-BF16: CPUID.(EAX=7, ECX=0):EDX[22].
static int cpu_has_bf16_insns(void) {
    unsigned a, b, c, d;
    int amx = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 22 & 1);
    int avx512 = __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 5 & 1);
    return amx || avx512;
}

// DCAL_CPU_BF16=portable: bf16 offered on any CPU, its GEMMs on widened copies (for tests).
static int portable_forced(void) {
    const char *env = getenv("DCAL_CPU_BF16");
    return env && !strcmp(env, "portable");
}

// Only the instructions are asked here (cpuid, at start-up): oneDNN is probed when a bf16 GEMM
// first runs (cpu_bf16_dnnl), so no process pays for it before it needs it.
int cpu_bf16_offered(char *why, size_t n) {
    if (n) why[0] = 0;
    if (portable_forced() || cpu_has_bf16_insns()) return 1;
    snprintf(why, n, "bf16 on the CPU needs AVX512_BF16 or AMX-BF16, and this CPU has neither (DCAL_CPU_BF16=portable "
             "runs bf16 numerics on any CPU, slower than fp32: for tests)");
    return 0;
}

int cpu_bf16_dnnl(void) {
    static int v = -1;   // asked once: the engine never changes inside a run
    if (v < 0) v = !portable_forced() && cpu_has_bf16_insns() && cpu_dnnl_bf16_ready();
    return v;
}

int cpu_att_bf16(void) {
    static int v = -1;   // asked once, as cpu_bf16_dnnl
    if (v < 0) v = !cpu_bf16_dnnl() ? 0 : cpu_has_amx_bf16() ? CPU_ATT_AMX : cpu_has_avx512_bf16() ? CPU_ATT_DP : 0;
    return v;
}

const char *cpu_bf16_engine(void) {
    static char line[256];
    if (cpu_bf16_dnnl()) return cpu_dnnl_describe();
    snprintf(line, sizeof line, "portable: OpenBLAS sgemm on widened bf16 values (%s)",
             portable_forced() ? "DCAL_CPU_BF16=portable" : cpu_dnnl_describe());
    return line;
}

// ---- scratch: grow-only, one buffer per slot ----
static void *scratch[CPU_SCRATCH_NSLOTS];
static size_t scratch_n[CPU_SCRATCH_NSLOTS], scratch_peak;

void *cpu_scratch(int slot, size_t bytes) {
    if (bytes > scratch_n[slot]) {
        free(scratch[slot]);
        scratch[slot] = xmalloc(bytes);
        scratch_n[slot] = bytes;
        size_t t = 0;
        for (int s = 0; s < CPU_SCRATCH_NSLOTS; s++) t += scratch_n[s];
        if (t > scratch_peak) scratch_peak = t;
    }
    return scratch[slot];
}

size_t cpu_scratch_peak_bytes(void) { return scratch_peak; }

// exp512.h: the AVX-512 pieces that the passes at precision bf16 share (vecmath.c,
// attention_bf16.c, bf16.c): the exponential sixteen at a time and the rounding to bf16.
#pragma once
#include <immintrin.h>

// Attention's exponentials at precision bf16, whose P is rounded to bf16 right after: exp(x)
// sixteen at a time, inlined into the row loop (libmvec's expf is a call per eight values; it
// was 4% of a 448-px bf16 step on a Zen 4). x = n·ln2 + r with |r| <= ln2/2; e^r by its Taylor
// polynomial to degree 6 (truncation under 1.2e-7 relative, ~2 ulp with the roundings:
// unit_vecmath measures it); 2^n by vscalefps, which also takes x below -87 smoothly to 0
// (x is clamped at -104 first, so -inf gives 0).
#define AVX512 __attribute__((target("avx512f")))
static AVX512 inline __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.7f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);   // ln2 in two parts: n·hi exact
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

// f32_bf16's bits sixteen at a time (round to nearest even; a NaN stays a quiet NaN), in the
// low 16 bits of each 32-bit lane.
static AVX512 inline __m512i bf16_round512(__m512 x) {
    __m512i u = _mm512_castps_si512(x), one = _mm512_set1_epi32(1);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)),
                                                   _mm512_and_si512(_mm512_srli_epi32(u, 16), one)), 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}

// Two vectors rounded to bf16 at once, x0's sixteen in the low 256 bits and x1's in the high:
// bf16_round512's bits by one vcvtne2ps2bf16 (AVX512_BF16), which rounds to nearest even and
// quiets a NaN the same way but flushes a denormal input to zero. A pair holding a denormal
// (vfpclassps; rare: P past e^-87, a tiny dS) takes bf16_round512, so the bits never differ.
// cvt 0 (cpu_bf16_cvt(): a CPU without AVX512_BF16) always takes it; the function's target
// names the instructions, and only the cvt branch executes them.
#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
static AVX512BF16 inline __m512i bf16_round2x512(__m512 x0, __m512 x1, int cvt) {
    if (cvt && !(_mm512_fpclass_ps_mask(x0, 0x20) | _mm512_fpclass_ps_mask(x1, 0x20)))   // 0x20: denormal
        return (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(bf16_round512(x0))),
                              _mm512_cvtepi32_epi16(bf16_round512(x1)), 1);
}

// bf16_round2x512's halves zipped: word i = (x0[i], x1[i]), the pair layout of the tile engines.
static AVX512BF16 inline __m512i bf16_zip512(__m512i r) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21,
                                         5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(idx, r);
}

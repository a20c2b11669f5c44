// unit_attention_pack.c: the bf16 packs that feed cuDNN's attention (kernels/attention_pack.cu,
// train.attention=cudnn) move every element to and from the right place: GLCA's gathered query
// rows (unsorted indices; the rows not selected keep their gradient), PWCA's distractor keys and
// values through kv2_b with two images sharing one distractor (their gradients summed in
// ascending b), strided views into a q|k|v buffer, the += contract, and out's plain round trip.
// q|k|v is an Act buffer (backend.h) filled by act_from_f32: at precision bf16 (cuDNN's) it
// holds bf16 and the pack is a plain copy; at fp32 it holds floats and the pack rounds. Either
// way each packed element is the nearest-even bf16 of the fp32 source, bit for bit against a
// host loop. Runs on a CUDA backend: in the simulator (sim_attention_pack)
// and on a GPU; skips (77) in a build or on a machine without one.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend/backend.h"
#include "testutil.h"

// Defined by kernels/attention_pack.cu. The simulator's build declares it needed (a strong
// reference pulls it from the static library); elsewhere weak, so a CPU-only build links.
#if ATTN_PACK_NEED_CUDA
void dcal_attn_pack_roundtrip(const AttnArgs *a, const AttnGrads *g, const float *x, float *y);
#else
__attribute__((weak)) void dcal_attn_pack_roundtrip(const AttnArgs *a, const AttnGrads *g, const float *x, float *y);
#endif

enum { B = 3, H = 2, HD = 8, D = H * HD, N = 7, QKV = 3 * D };

static const Backend *cuda(void) {
    char why[256];
    for (int i = 0; i < backend_count(); i++)
        if (!strcmp(backend_at(i)->name, "cuda") && backend_at(i)->available(why, sizeof why)) return backend_at(i);
    return NULL;
}

// Round to nearest even at bf16, as __float2bfloat16 (finite values).
static float bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

static float *randoms(size_t n, unsigned seed) {
    float *x = malloc(n * sizeof *x);
    srand(seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)rand() / RAND_MAX * 4 - 2 + 1e-3f * (float)(rand() % 97);
    return x;
}

static void *up(const Backend *be, const void *h, size_t bytes) {
    void *d = be->alloc(bytes);
    be->to_device(d, h, bytes);
    return d;
}

// The Act buffer holding host floats h[0..n) (rounded by act_from_f32 at bf16).
static Act *up_act(const Backend *be, const float *h, size_t n) {
    float *f = up(be, h, n * 4);
    Act *a = be->alloc(n * be->act_bytes());
    be->act_from_f32(a, f, n);
    be->free(f);
    return a;
}

// One call: own stream qkv [B, N, 3D] (q | k | v), distractor stream qkv2, both Act under
// `precision`; gradients (fp32) with random start values in the same layout. q_idx (GLCA, Nq
// rows) or kv2_b (PWCA) may be NULL.
static void check(const char *precision, int Nq, const int *q_idx, const int *kv2_b) {
    const Backend *be = cuda();
    ck_assert_int_eq(be->set_precision(precision), 1);
    size_t n = (size_t)B * N * QKV, nx = (size_t)B * Nq * D, eb = be->act_bytes();
    ck_assert_uint_eq(eb, strcmp(precision, "bf16") ? 4 : 2);
    float *qkv = randoms(n, 1), *qkv2 = randoms(n, 2), *g0 = randoms(n, 3), *g20 = randoms(n, 4);
    float *x = randoms(nx, 5);
    Act *dqkv = up_act(be, qkv, n), *dqkv2 = up_act(be, qkv2, n);
    float *dg = up(be, g0, n * 4), *dg2 = up(be, g20, n * 4);
    float *dx = up(be, x, nx * 4), *dy = be->alloc(nx * 4);
    int *didx = q_idx ? up(be, q_idx, (size_t)B * Nq * sizeof(int)) : NULL;
    int *dkb = kv2_b ? up(be, kv2_b, B * sizeof(int)) : NULL;
    int pwca = kv2_b != NULL;
    long bs = (long)N * QKV;
    AttnArgs a = {.B = B, .H = H, .hd = HD, .Nq = Nq, .q_idx = didx, .q = dqkv, .q_bstride = bs, .q_tstride = QKV,
                  .k1 = act_at(dqkv, D, eb), .v1 = act_at(dqkv, 2 * D, eb), .n1 = N, .kv1_bstride = bs,
                  .kv1_tstride = QKV, .k2 = pwca ? act_at(dqkv2, D, eb) : NULL,
                  .v2 = pwca ? act_at(dqkv2, 2 * D, eb) : NULL, .n2 = pwca ? N : 0,
                  .kv2_bstride = bs, .kv2_tstride = QKV, .kv2_b = dkb, .scale = 0.25f};
    AttnGrads g = {dg, dg + D, dg + 2 * D, pwca ? dg2 + D : NULL, pwca ? dg2 + 2 * D : NULL};
    dcal_attn_pack_roundtrip(&a, &g, dx, dy);
    be->sync();
    float *got = malloc(n * 4), *got2 = malloc(n * 4), *y = malloc(nx * 4);
    be->to_host(got, dg, n * 4), be->to_host(got2, dg2, n * 4), be->to_host(y, dy, nx * 4);
    // The host loop, in the kernels' order: q rows (gathered), k1|v1 rows, then k2|v2 rows by ascending b.
    for (int b = 0; b < B; b++)
        for (int j = 0; j < Nq; j++)
            for (int c = 0; c < D; c++) {
                size_t e = (size_t)b * bs + (size_t)(q_idx ? q_idx[b * Nq + j] : j) * QKV + c;
                g0[e] += bf16(qkv[e]);
            }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < N; t++)
            for (int c = D; c < 3 * D; c++) g0[(size_t)b * bs + (size_t)t * QKV + c] += bf16(qkv[(size_t)b * bs + (size_t)t * QKV + c]);
    for (int b = 0; pwca && b < B; b++)
        for (int t = 0; t < N; t++)
            for (int c = D; c < 3 * D; c++) {
                size_t e = (size_t)kv2_b[b] * bs + (size_t)t * QKV + c;
                g20[e] += bf16(qkv2[e]);
            }
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(!memcmp(&got[i], &g0[i], 4), "%s: own gradient [b %zu, t %zu, col %zu]: %.9g, want %.9g",
                      precision, i / bs, i % bs / QKV, i % QKV, got[i], g0[i]);
        ck_assert_msg(!memcmp(&got2[i], &g20[i], 4),
                      "%s: distractor gradient [b %zu, t %zu, col %zu]: %.9g, want %.9g", precision, i / bs,
                      i % bs / QKV, i % QKV, got2[i], g20[i]);
    }
    for (size_t i = 0; i < nx; i++) ck_assert_msg(y[i] == bf16(x[i]), "out round trip [%zu]: %.9g", i, y[i]);
    void *bufs[] = {dqkv, dqkv2, dg, dg2, dx, dy};
    for (int i = 0; i < 6; i++) be->free(bufs[i]);
    ck_assert_int_eq(be->set_precision("bf16"), 1);   // the backend's default again
    if (didx) be->free(didx);
    if (dkb) be->free(dkb);
    free(qkv), free(qkv2), free(g0), free(g20), free(x), free(got), free(got2), free(y);
}

// Each case at both precisions: bf16 Act (cuDNN's, a copy) and fp32 Act (the pack rounds).
static const char *const precisions[] = {"bf16", "fp32"};

START_TEST(test_sa) { check(precisions[_i], N, NULL, NULL); }
END_TEST

START_TEST(test_glca_gathered_rows) {
    static const int idx[B * 3] = {0, 5, 2, 0, 1, 6, 0, 6, 3};   // CLS first, then unsorted tokens
    check(precisions[_i], 3, idx, NULL);
}
END_TEST

START_TEST(test_pwca_shared_distractor) {
    static const int kv2_b[B] = {1, 0, 0};   // images 1 and 2 both pair with image 0
    check(precisions[_i], N, NULL, kv2_b);
}
END_TEST

int main(void) {
#if !ATTN_PACK_NEED_CUDA
    if (!dcal_attn_pack_roundtrip) {
        printf("SKIP: no CUDA kernels in this build (kernels/attention_pack.cu)\n");
        return 77;
    }
#endif
    if (!cuda()) {
        printf("SKIP: no CUDA device here (sim_attention_pack runs this suite in the simulator)\n");
        return 77;
    }
    setenv("CK_FORK", "no", 1);   // a forked child cannot use the parent's CUDA context
    Suite *s = suite_create("attention_pack");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, test_sa, 0, 2);
    tcase_add_loop_test(tc, test_glca_gathered_rows, 0, 2);
    tcase_add_loop_test(tc, test_pwca_shared_distractor, 0, 2);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

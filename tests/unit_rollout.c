// unit_rollout.c: the CPU rollout step that recomputes the head-mean attention tile
// by tile (backend.h rollout_step_attn, MODEL.md §2) gives the same bits on any thread
// count, the same bits as the explicit-S path it replaced (with the same exponentials, glibc's
// vector expf since 2026-12-02), and the selection of a float64 chain.
// Accuracy against float64 on odd shapes, and the CUDA twin, are op rows in
// tests/gradcheck_backend_ops.c.
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "core/common.h"
#include "core/rng.h"
#include "testutil.h"

// A ViT-ish chain off every tile size: N = 197 (1 + 14²), three heads of 64, three images,
// four SA layers, each with its own q|k|v [B, N, 3D] and the lse of its own forward.
enum { B = 3, H = 3, HD = 64, N = 197, D = H * HD, LAYERS = 4, K = 19 };

typedef struct {
    float *qkv[LAYERS], *lse[LAYERS];
} Chain;

// The CPU's Act storage is fp32 (act_bytes 4), so the float qkv is the Act buffer as it stands.
static AttnArgs args(const float *qkv) {
    long bs = (long)N * 3 * D, ts = 3 * D;
    return (AttnArgs){.B = B, .H = H, .hd = HD, .Nq = N, .q = (const Act *)qkv, .q_bstride = bs, .q_tstride = ts,
                      .k1 = (const Act *)(qkv + D), .v1 = (const Act *)(qkv + 2 * D), .n1 = N, .kv1_bstride = bs,
                      .kv1_tstride = ts,
                      .scale = 1.0f / sqrtf((float)HD)};
}

static Chain make_chain(void) {
    ck_assert_uint_eq(backend_cpu.act_bytes(), sizeof(float));   // what args() relies on
    Chain c;
    Rng r;
    rng_init(&r, 2024, 0, 0, 0);
    float *out = xmalloc(sizeof(float) * B * N * D);
    for (int l = 0; l < LAYERS; l++) {
        c.qkv[l] = xmalloc(sizeof(float) * B * N * 3 * D);
        c.lse[l] = xmalloc(sizeof(float) * B * H * N);
        for (size_t k = 0; k < (size_t)B * N * 3 * D; k++) c.qkv[l][k] = 1.5f * rng_normal(&r);
        AttnArgs a = args(c.qkv[l]);
        backend_cpu.attention_forward(&a, (Act *)out, c.lse[l]);   // the CPU's Act is fp32
    }
    free(out);
    return c;
}

static void free_chain(Chain *c) {
    for (int l = 0; l < LAYERS; l++) free(c->qkv[l]), free(c->lse[l]);
}

static void cls_row(float *r) {
    memset(r, 0, sizeof(float) * B * N);
    for (int b = 0; b < B; b++) r[b * N] = 1;
}

// r ← e0, then one fused step per layer on `threads` OpenMP threads.
static void fused(const Chain *c, int threads, float *r) {
    float tmp[B * N];
    int was = omp_get_max_threads();
    omp_set_num_threads(threads);
    cls_row(r);
    for (int l = LAYERS - 1; l >= 0; l--) {
        AttnArgs a = args(c->qkv[l]);
        backend_cpu.rollout_step_attn(&a, c->lse[l], r, tmp);
    }
    omp_set_num_threads(was);
}

// The path the fused op replaced: S [B, N, N] built row-tile by row-tile (64 query rows,
// one sgemm per head over all keys, heads summed in order), then t_j = 0.5·r_j +
// Σ_i (0.5·r_i)·S_ij with i ascending.
static void explicit_step(const float *qkv, const float *lse, float *r, float *S) {
    float *qt = xmalloc(sizeof(float) * 64 * HD), *st = xmalloc(sizeof(float) * 64 * N), t[N];
    memset(S, 0, sizeof(float) * B * N * N);
    for (int b = 0; b < B; b++)
        for (int i0 = 0; i0 < N; i0 += 64) {
            int nq = N - i0 < 64 ? N - i0 : 64;
            for (int h = 0; h < H; h++) {
                for (int i = 0; i < nq; i++)
                    memcpy(qt + i * HD, qkv + ((size_t)b * N + i0 + i) * 3 * D + h * HD, sizeof(float) * HD);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, N, HD, 1.0f / sqrtf((float)HD), qt, HD,
                            qkv + (size_t)b * N * 3 * D + D + h * HD, 3 * D, 0.0f, st, N);
                for (int i = 0; i < nq; i++) {   // the exponentials as the op takes them (vecmath.c)
                    float e[N];
                    cpu_vexp(e, st + i * N, lse[((size_t)b * H + h) * N + i0 + i], N);
                    for (int j = 0; j < N; j++) S[((size_t)b * N + i0 + i) * N + j] += e[j] / (float)H;
                }
            }
        }
    for (int b = 0; b < B; b++) {
        for (int j = 0; j < N; j++) t[j] = 0.5f * r[b * N + j];
        for (int i = 0; i < N; i++) {
            float ri = 0.5f * r[b * N + i];
            for (int j = 0; j < N; j++) t[j] += ri * S[((size_t)b * N + i) * N + j];
        }
        memcpy(r + b * N, t, sizeof t);
    }
    free(qt), free(st);
}

START_TEST(same_bits_on_any_thread_count) {
    Chain c = make_chain();
    float r1[B * N], r2[B * N], r3[B * N];
    fused(&c, 1, r1);
    fused(&c, 2, r2);
    fused(&c, 3, r3);
    ck_assert_msg(!memcmp(r1, r2, sizeof r1), "rollout differs between 1 and 2 threads");
    ck_assert_msg(!memcmp(r1, r3, sizeof r1), "rollout differs between 1 and 3 threads");
    free_chain(&c);
}
END_TEST

START_TEST(same_bits_as_explicit_attention_map) {
    Chain c = make_chain();
    float got[B * N], want[B * N], *S = xmalloc(sizeof(float) * B * N * N);
    fused(&c, 2, got);
    omp_set_num_threads(1);   // the sgemm calls single-threaded, as inside the op's parallel region
    cls_row(want);
    for (int l = LAYERS - 1; l >= 0; l--) explicit_step(c.qkv[l], c.lse[l], want, S);
    omp_set_num_threads(2);
    for (int k = 0; k < B * N; k++)
        ck_assert_msg(!memcmp(&got[k], &want[k], sizeof(float)), "r[%d] = %.9g, the explicit S path gives %.9g", k,
                      got[k], want[k]);
    free(S);
    free_chain(&c);
}
END_TEST

// The chain in float64 from q, k (as floats, 3·D a token) and each layer's lse: r [B, N].
static void float64_chain(float *const *qkv, float *const *lse, double *rd) {
    double *t = xmalloc(sizeof(double) * N);
    memset(rd, 0, sizeof(double) * B * N);
    for (int b = 0; b < B; b++) rd[b * N] = 1;
    for (int l = LAYERS - 1; l >= 0; l--)
        for (int b = 0; b < B; b++) {
            const float *x = qkv[l] + (size_t)b * N * 3 * D;
            for (int j = 0; j < N; j++) t[j] = 0.5 * rd[b * N + j];
            for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++) {
                    double s = 0;
                    for (int h = 0; h < H; h++) {
                        double dot = 0;
                        const float *q = x + i * 3 * D + h * HD, *k = x + j * 3 * D + D + h * HD;
                        for (int d = 0; d < HD; d++) dot += (double)q[d] * k[d];
                        s += exp(dot / sqrt((double)HD) - lse[l][(b * H + h) * N + i]);
                    }
                    t[j] += 0.5 * rd[b * N + i] * s / H;
                }
            memcpy(rd + b * N, t, sizeof(double) * N);
        }
    free(t);
}

// The chain in float64 from the same q, k and lse; then the top-K of both.
START_TEST(selection_of_float64_chain) {
    Chain c = make_chain();
    float r[B * N];
    fused(&c, 2, r);
    double *rd = xmalloc(sizeof(double) * B * N);
    float64_chain(c.qkv, c.lse, rd);
    float rf[B * N];
    double err = 0;
    for (int k = 0; k < B * N; k++) rf[k] = (float)rd[k], err = fmax(err, fabs(r[k] - rd[k]) / rd[k]);
    ck_assert_msg(err < 1e-4, "fp32 rollout off the float64 chain by %.2g (relative)", err);
    int sel[B * (K + 1)], want[B * (K + 1)];
    backend_cpu.topk_select(sel, r, B, N, K);
    backend_cpu.topk_select(want, rf, B, N, K);
    for (int k = 0; k < B * (K + 1); k++) ck_assert_int_eq(sel[k], want[k]);
    free(rd);
    free_chain(&c);
}
END_TEST

// At precision bf16 (q, k stored as bf16; on a CPU with AVX512_BF16 or AMX the scores are
// products on the tile engine, each thread owning key columns: rollout.c): the same bits on
// 1, 2, 3 and 5 threads (5: the last thread's columns are a partial vector), the float64
// chain on the same bf16 values within 1e-4, and its selection.
START_TEST(bf16_same_bits_and_float64_chain) {
    if (!backend_cpu.set_precision("bf16")) {
        printf("bf16_same_bits_and_float64_chain: skipped (no bf16 on this CPU)\n");
        return;
    }
    printf("rollout at bf16: %s\n", cpu_att_bf16() ? "scores on the bf16 tile engine" : "sgemm on widened q, k");
    Rng g;
    rng_init(&g, 2025, 0, 0, 0);
    size_t n = (size_t)B * N * 3 * D;
    float *qkv[LAYERS], *lse[LAYERS];
    uint16_t *act[LAYERS], *out = xmalloc(sizeof(uint16_t) * B * N * D);
    AttnArgs a[LAYERS];
    for (int l = 0; l < LAYERS; l++) {
        qkv[l] = xmalloc(sizeof(float) * n), act[l] = xmalloc(sizeof(uint16_t) * n);
        lse[l] = xmalloc(sizeof(float) * B * H * N);
        for (size_t k = 0; k < n; k++) act[l][k] = f32_bf16(1.5f * rng_normal(&g)), qkv[l][k] = bf16_f32(act[l][k]);
        a[l] = args(qkv[l]);   // its strides; the views are the bf16 copy's
        a[l].q = (const Act *)act[l], a[l].k1 = (const Act *)(act[l] + D), a[l].v1 = (const Act *)(act[l] + 2 * D);
        backend_cpu.attention_forward(&a[l], (Act *)out, lse[l]);
    }
    float r[4][B * N], tmp[B * N];
    const int threads[4] = {1, 2, 3, 5};
    int was = omp_get_max_threads();
    for (int c = 0; c < 4; c++) {
        omp_set_num_threads(threads[c]);
        cls_row(r[c]);
        for (int l = LAYERS - 1; l >= 0; l--) backend_cpu.rollout_step_attn(&a[l], lse[l], r[c], tmp);
        if (c)
            ck_assert_msg(!memcmp(r[0], r[c], sizeof r[0]), "bf16 rollout differs between 1 and %d threads",
                          threads[c]);
    }
    omp_set_num_threads(was);
    backend_cpu.set_precision("fp32");
    double *rd = xmalloc(sizeof(double) * B * N), err = 0;
    float64_chain(qkv, lse, rd);
    float rf[B * N];
    for (int k = 0; k < B * N; k++) rf[k] = (float)rd[k], err = fmax(err, fabs(r[0][k] - rd[k]) / rd[k]);
    ck_assert_msg(err < 1e-4, "bf16 rollout off the float64 chain on its values by %.2g (relative)", err);
    int sel[B * (K + 1)], want[B * (K + 1)];
    backend_cpu.topk_select(sel, r[0], B, N, K);
    backend_cpu.topk_select(want, rf, B, N, K);
    for (int k = 0; k < B * (K + 1); k++) ck_assert_int_eq(sel[k], want[k]);
    for (int l = 0; l < LAYERS; l++) free(qkv[l]), free(act[l]), free(lse[l]);
    free(out), free(rd);
}
END_TEST

int main(void) {
    Suite *s = suite_create("rollout");
    TCase *tc = tcase_create("cpu");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, same_bits_on_any_thread_count);
    tcase_add_test(tc, same_bits_as_explicit_attention_map);
    tcase_add_test(tc, selection_of_float64_chain);
    tcase_add_test(tc, bf16_same_bits_and_float64_chain);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

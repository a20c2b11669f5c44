// unit_upload.c: the input batch's way in (backend.h: host_alloc, upload, consumed, host_ready),
// on every backend present: the CPU here, the simulated CUDA backend in the sim build
// (sim_upload: its copy stream is lazy, so an op that does not wait for the copy reads the
// old bytes) and a GPU when there is one (gpu-check.sh runs this suite on the device).
//
// The trainer's pattern, many micro-batches without a host sync: two host buffers taken in
// turn, each upload into one device buffer, a reader of it, consumed(). Every reader must see
// its own micro-batch's bytes: not the next one's (upload must wait for consumed readers),
// not the last one's (the compute stream must wait for the copy), not a refilled host
// buffer's (the caller waits in host_ready before refilling).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/common.h"
#include "backend/backend.h"
#include "testutil.h"

enum { N = 4099, ROUNDS = 12 };   // an odd size: no copy path may assume whole blocks

static float pattern(int round, int i) { return (float)round * 10000.f + (float)i; }

static void check_backend(const Backend *be) {
    float *h[2];
    for (int k = 0; k < 2; k++) {
        h[k] = be->host_alloc(N * sizeof(float));
        for (int i = 0; i < N; i++) ck_assert_msg(h[k][i] == 0.f, "%s: host_alloc[%d] = %g, not zero", be->name, i, h[k][i]);
    }
    float *dev = be->alloc(N * sizeof(float)), *seen[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        float *src = h[r & 1];
        be->host_ready(src);
        for (int i = 0; i < N; i++) src[i] = pattern(r, i);
        be->upload(dev, src, N * sizeof(float));
        seen[r] = be->alloc(N * sizeof(float));
        be->copy(seen[r], dev, N * sizeof(float));   // the reader, as im2col in the model
        be->consumed(dev);
    }
    float *out = xmalloc(N * sizeof(float));
    for (int r = 0; r < ROUNDS; r++) {
        be->to_host(out, seen[r], N * sizeof(float));
        for (int i = 0; i < N; i++)
            ck_assert_msg(out[i] == pattern(r, i), "%s: round %d read [%d] = %.1f, want %.1f", be->name, r, i, out[i],
                          pattern(r, i));
        be->free(seen[r]);
    }
    // An upload from ordinary (pageable) host memory, as eval and explain do, is also right.
    float *plain = xmalloc(N * sizeof(float));
    for (int i = 0; i < N; i++) plain[i] = -pattern(1, i);
    be->upload(dev, plain, N * sizeof(float));
    be->to_host(out, dev, N * sizeof(float));
    ck_assert_msg(!memcmp(out, plain, N * sizeof(float)), "%s: upload from pageable memory differs", be->name);
    be->consumed(dev);
    free(plain);
    free(out);
    be->free(dev);
    for (int k = 0; k < 2; k++) be->host_free(h[k]);
}

START_TEST(test_upload_rounds) {
    int ran = 0, cuda_checked = 0;
    for (int i = 0; i < backend_count(); i++) {
        const Backend *be = backend_at(i);
        char why[256];
        if (!be->available(why, sizeof why)) {
            printf("unit_upload: %s skipped: %s\n", be->name, why);
            continue;
        }
        check_backend(be);
        printf("unit_upload: %s: %d uploads through two host buffers, each read back as written\n", be->name, ROUNDS);
        ran++;
        cuda_checked += !strcmp(be->name, "cuda");
    }
    ck_assert_int_ge(ran, 1);
    (void)cuda_checked;
#ifdef UPLOAD_NEED_CUDA
    ck_assert_msg(cuda_checked, "the simulated cuda backend was not checked");
#endif
}
END_TEST

int main(void) {
    Suite *s = suite_create("upload");
    TCase *tc = tcase_create("upload");
    tcase_add_test(tc, test_upload_rounds);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

// unit_valsplit.c: the held-out validation split (data.val_fraction) is per
// class, keyed by the seed, removes its images from training and keeps both
// lists in index order; 0 changes nothing. The test-time crop (data.test_crop)
// is checked against a crop computed by hand, and the retired key
// loss.label_smoothing loads only as 0 and is never written.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "config/config.h"
#include "core/common.h"
#include "core/rng.h"
#include "datasets/dataset.h"
#include "stb_image_write.h"
#include "testutil.h"

// n_per[c] training items of class c, interleaved by class like a real index.
static void make_ds(Dataset *d, int C, const int *n_per) {
    memset(d, 0, sizeof *d);
    snprintf(d->root, sizeof d->root, "/data/x");
    d->num_classes = C;
    int total = 0;
    for (int c = 0; c < C; c++) total += n_per[c];
    d->train = xmalloc(sizeof(DatasetItem) * (size_t)total);
    int left[64];
    memcpy(left, n_per, sizeof(int) * (size_t)C);
    for (int k = 0; d->n_train < total; k++) {
        int c = k % C;
        if (!left[c]) continue;
        left[c]--;
        char p[64];
        snprintf(p, sizeof p, "/data/x/img%04d.jpg", d->n_train);
        d->train[d->n_train] = (DatasetItem){xstrdup(p), c};
        d->n_train++;
    }
}

static int index_of(const char *path) { return atoi(strstr(path, "img") + 3); }

START_TEST(split_per_class_and_ordered) {
    int n_per[3] = {10, 20, 3};
    Dataset d;
    make_ds(&d, 3, n_per);
    ck_assert(dataset_hold_out_val(&d, 0.2, 5));
    // round(0.2 * n): 2, 4 and 1 (0.6 rounds up); nothing lost, nothing twice.
    int per_val[3] = {0}, per_train[3] = {0};
    for (int i = 0; i < d.n_val; i++) per_val[d.val[i].label]++;
    for (int i = 0; i < d.n_train; i++) per_train[d.train[i].label]++;
    ck_assert_int_eq(per_val[0], 2); ck_assert_int_eq(per_val[1], 4); ck_assert_int_eq(per_val[2], 1);
    ck_assert_int_eq(per_train[0], 8); ck_assert_int_eq(per_train[1], 16); ck_assert_int_eq(per_train[2], 2);
    for (int i = 1; i < d.n_train; i++) ck_assert_int_lt(index_of(d.train[i - 1].path), index_of(d.train[i].path));
    for (int i = 1; i < d.n_val; i++) ck_assert_int_lt(index_of(d.val[i - 1].path), index_of(d.val[i].path));
    for (int i = 0; i < d.n_val; i++)
        for (int j = 0; j < d.n_train; j++) ck_assert_str_ne(d.val[i].path, d.train[j].path);
    ck_assert_int_eq((int)strlen(d.val_sha256), 64);
    // The view evaluates the val images as a test split.
    Dataset v = dataset_val_view(&d);
    ck_assert_int_eq(v.n_test, d.n_val);
    ck_assert_ptr_eq(v.test, d.val);
    dataset_free(&d);
}
END_TEST

// Same seed: the same images (and record); another seed: other images.
START_TEST(split_is_keyed_by_seed) {
    int n_per[2] = {40, 40};
    Dataset a, b, c;
    make_ds(&a, 2, n_per); make_ds(&b, 2, n_per); make_ds(&c, 2, n_per);
    ck_assert(dataset_hold_out_val(&a, 0.25, 11) && dataset_hold_out_val(&b, 0.25, 11) &&
              dataset_hold_out_val(&c, 0.25, 12));
    ck_assert_int_eq(a.n_val, 20);
    ck_assert_int_eq(b.n_val, 20);
    int same = 0;
    for (int i = 0; i < a.n_val; i++) {
        ck_assert_str_eq(a.val[i].path, b.val[i].path);
        same += !strcmp(a.val[i].path, c.val[i].path);
    }
    ck_assert_str_eq(a.val_sha256, b.val_sha256);
    ck_assert_str_ne(a.val_sha256, c.val_sha256);
    ck_assert_int_lt(same, a.n_val);
    dataset_free(&a); dataset_free(&b); dataset_free(&c);
}
END_TEST

START_TEST(split_zero_changes_nothing_and_small_classes) {
    int n_per[2] = {5, 1};
    Dataset d;
    make_ds(&d, 2, n_per);
    DatasetItem first = d.train[0];
    ck_assert(dataset_hold_out_val(&d, 0, 1));
    ck_assert_int_eq(d.n_train, 6);
    ck_assert_int_eq(d.n_val, 0);
    ck_assert_ptr_eq(d.train[0].path, first.path);
    // A class of one image keeps it; fraction 0.05 of 5 rounds to 0: nothing held out is an error.
    cap_begin();
    int ok = dataset_hold_out_val(&d, 0.05, 1);
    const char *e = cap_end();
    ck_assert(!ok);
    ck_assert_msg(strstr(e, "dcal: /data/x: data.val_fraction=0.05 holds out no image"), "%s", e);
    ck_assert(dataset_hold_out_val(&d, 0.5, 1));
    ck_assert_int_eq(d.n_val, 3);   // round(2.5) = 3 of class 0, none of the single image of class 1
    for (int i = 0; i < d.n_val; i++) ck_assert_int_eq(d.val[i].label, 0);
    dataset_free(&d);
}
END_TEST

// An 8x8 PNG (no resampling at resize 8) whose pixel (x, y), channel c is 10x + 3y + 60c.
static const char *write_png(void) {
    static char path[1200];
    snprintf(path, sizeof path, "%s/img.png", test_tmpdir("valsplit"));
    unsigned char px[8 * 8 * 3];
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++)
            for (int c = 0; c < 3; c++) px[(y * 8 + x) * 3 + c] = (unsigned char)(10 * x + 3 * y + 60 * c);
    ck_assert(stbi_write_png(path, 8, 8, 3, px, 8 * 3));
    return path;
}

static DataConfig crop_cfg(const char *test_crop) {
    DcalConfig c;
    config_defaults(&c);
    DataConfig d = c.data;
    d.resize = 8;
    d.crop = 4;
    snprintf(d.test_crop, sizeof d.test_crop, "%s", test_crop);
    return d;
}

// out must be the 4x4 window at (ox, oy), unflipped, normalised with mean/std.
static void expect_window(const float *out, const DataConfig *d, int ox, int oy) {
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) {
                double v = (10 * (ox + x) + 3 * (oy + y) + 60 * c) / 255.0;
                double want = (v - d->mean[c]) / d->std[c];
                ck_assert_msg(fabs(out[(c * 4 + y) * 4 + x] - want) < 1e-5, "c%d y%d x%d: %g vs %g", c, y, x,
                              out[(c * 4 + y) * 4 + x], want);
            }
}

START_TEST(test_crop_center_and_random) {
    const char *png = write_png();
    float out[3 * 4 * 4];
    DataConfig d = crop_cfg("center");
    ck_assert(image_load(png, &d, false, 9, 0, 3, out));
    expect_window(out, &d, 2, 2);   // (8 - 4) / 2
    d = crop_cfg("random");
    for (int sample = 0; sample < 6; sample++) {
        Rng r;   // the offsets a random crop of this sample must take: keyed (seed, epoch 0, sample)
        rng_init(&r, 9, 0, (uint64_t)sample, RNG_CROP);
        int ox = (int)rng_below(&r, 5), oy = (int)rng_below(&r, 5);
        ck_assert(image_load(png, &d, false, 9, 0, sample, out));
        expect_window(out, &d, ox, oy);   // and never flipped at test time, hflip or not
    }
}
END_TEST

START_TEST(label_smoothing_is_retired) {
    const char *dir = test_tmpdir("retired");
    char yaml[1200];
    snprintf(yaml, sizeof yaml, "%s/old.yaml", dir);
    write_text(yaml, "loss:\n  label_smoothing: 0.0\n  uncertainty_weighting: true\n");
    DcalConfig c;
    config_defaults(&c);
    ck_assert(config_load(&c, yaml));   // a run's config.yaml from before the key went
    write_text(yaml, "loss:\n  label_smoothing: 0.1\n");
    config_defaults(&c);
    cap_begin();
    int ok = config_load(&c, yaml);
    const char *e = cap_end();
    ck_assert(!ok);
    ck_assert_msg(strstr(e, ":2:") && strstr(e, "loss.label_smoothing: label smoothing is not implemented"), "%s", e);
    config_defaults(&c);
    cap_begin();
    ok = config_set(&c, "loss.label_smoothing=0.1");
    e = cap_end();
    ck_assert(!ok);
    ck_assert_msg(strstr(e, "dcal: --set loss.label_smoothing=0.1: loss.label_smoothing: label smoothing is not "
                            "implemented: DCAL trains each branch with plain cross-entropy (docs/MODEL.md §3) (remove "
                            "the key)\n"), "%s", e);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert(config_write_yaml(&c, f));
    fclose(f);
    ck_assert_msg(!strstr(text, "label_smoothing"), "written: %s", text);
    ck_assert(strstr(text, "  val_fraction: 0\n") && strstr(text, "  keep_last: 1\n"));
    free(text);
}
END_TEST

int main(void) {
    Suite *s = suite_create("valsplit");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, split_per_class_and_ordered);
    tcase_add_test(tc, split_is_keyed_by_seed);
    tcase_add_test(tc, split_zero_changes_nothing_and_small_classes);
    tcase_add_test(tc, test_crop_center_and_random);
    tcase_add_test(tc, label_smoothing_is_retired);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

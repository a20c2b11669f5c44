// unit_dataset.c: dataset readers (CUB/synthetic, Cars CSV, Aircraft), the
// fingerprint, image_load augmentation and normalisation, the loader's
// determinism across worker counts, and the bad-file errors (MODEL.md §5, §7).
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "core/common.h"
#include "config/config.h"
#include "datasets/dataset.h"
#include "datasets/registry.h"
#include "core/rng.h"
#include "stb_image.h"         // implemented in datasets/image.c
#include "stb_image_write.h"   // implemented in datasets/synthetic.c
#include "testutil.h"

enum { CLASSES = 4, PER = 6, TEST_PER = 3, IMG = 32 };


// A fresh synthetic set and a DataConfig pointing at it (small: fast on 2 cores).
static char root[1024];
static DataConfig synth(const char *tag) {
    snprintf(root, sizeof root, "%s", test_tmpdir(tag));
    ck_assert_int_eq(synthetic_write(root, CLASSES, PER, TEST_PER, IMG, 7), 1);
    DcalConfig c;
    config_defaults(&c);
    DataConfig d = c.data;
    strcpy(d.dataset, "synthetic");
    snprintf(d.root, sizeof d.root, "%s", root);
    d.resize = 40; d.crop = 32; d.workers = 0;
    return d;
}

static void append_byte(const char *path, int c) {
    FILE *f = fopen(path, "ab");
    ck_assert_ptr_nonnull(f);
    fputc(c, f);
    fclose(f);
}

// Replace line k (1-based) of a text file.
static void set_line(const char *path, int k, const char *text) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static char buf[65536], out[65600];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    out[0] = 0;
    char *p = buf;
    for (int i = 1; *p; i++) {
        char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (i == k) strcat(out, text);
        else strncat(out, p, len);
        strcat(out, "\n");
        p += len + (e != NULL);
    }
    write_text(path, out);
}

// dataset_open fails with one line containing each of want[] (NULL-terminated).
static void open_fails(const DataConfig *cfg, const char *const *want) {
    Dataset d;
    cap_begin();
    int ok = dataset_open(&d, cfg);
    const char *e = cap_end();
    if (ok) dataset_free(&d);
    ck_assert_msg(!ok, "dataset_open succeeded; wanted an error with '%s'", want[0]);
    for (int i = 0; want[i]; i++) ck_assert_msg(strstr(e, want[i]) != NULL, "'%s' not in: %s", want[i], e);
    ck_assert_ptr_eq(strchr(e, '\n'), e + strlen(e) - 1);   // one line
    ck_assert_int_eq(strncmp(e, "dcal: ", 6), 0);
}
#define OPEN_FAILS(cfg, ...) open_fails(cfg, (const char *const[]){__VA_ARGS__, NULL})

START_TEST(open_counts_labels) {
    DataConfig cfg = synth("ds_open");
    Dataset d;
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);
    ck_assert_int_eq(d.num_classes, CLASSES);
    ck_assert_int_eq(d.n_train, CLASSES * PER);
    ck_assert_int_eq(d.n_test, CLASSES * TEST_PER);
    ck_assert_str_eq(d.class_names[0], "001.square_red");
    ck_assert_str_eq(d.class_names[1], "002.plus_red");
    // Class-major order: labels are 0-based and follow the 1-based files.
    for (int i = 0; i < d.n_train; i++) ck_assert_int_eq(d.train[i].label, i / PER);
    for (int i = 0; i < d.n_test; i++) ck_assert_int_eq(d.test[i].label, i / TEST_PER);
    ck_assert_ptr_nonnull(strstr(d.train[0].path, "/images/001.square_red/"));
    ck_assert_int_eq(access(d.test[d.n_test - 1].path, R_OK), 0);
    ck_assert_int_eq((int)strlen(d.fingerprint), 64);
    dataset_free(&d);
}
END_TEST

START_TEST(fingerprint) {
    DataConfig cfg = synth("ds_fp");
    Dataset a, b;
    ck_assert_int_eq(dataset_open(&a, &cfg), 1);
    ck_assert_int_eq(dataset_open(&b, &cfg), 1);
    ck_assert_str_eq(a.fingerprint, b.fingerprint);
    dataset_free(&b);
    // Same generator seed elsewhere: same data, same fingerprint (it names data, not places).
    DataConfig cfg2 = synth("ds_fp2");
    ck_assert_int_eq(dataset_open(&b, &cfg2), 1);
    ck_assert_str_eq(a.fingerprint, b.fingerprint);
    // One image one byte longer: a different fingerprint.
    append_byte(b.test[2].path, 0);
    Dataset c;
    ck_assert_int_eq(dataset_open(&c, &cfg2), 1);
    ck_assert_str_ne(a.fingerprint, c.fingerprint);
    dataset_free(&c);
    // An index file edited: also different.
    char p[1200];
    snprintf(p, sizeof p, "%s/classes.txt", cfg.root);
    append_byte(p, '\n');   // a blank line: same parse, different bytes
    ck_assert_int_eq(dataset_open(&c, &cfg), 1);
    ck_assert_str_ne(a.fingerprint, c.fingerprint);
    dataset_free(&a); dataset_free(&b); dataset_free(&c);
}
END_TEST

START_TEST(image_augment) {
    DataConfig cfg = synth("ds_img");
    Dataset d;
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);
    size_t n = 3 * 32 * 32;
    float *x = xmalloc(n * 4), *y = xmalloc(n * 4);
    // Same (seed, epoch, sample): the same bytes.
    ck_assert_int_eq(image_load(d.train[3].path, &cfg, true, 1, 5, 3, x), 1);
    ck_assert_int_eq(image_load(d.train[3].path, &cfg, true, 1, 5, 3, y), 1);
    ck_assert_int_eq(memcmp(x, y, n * 4), 0);
    // Another epoch: another crop/flip for some sample (9x9 offsets x 2 flips; 4 tries).
    int differs = 0;
    for (int s = 0; s < 4; s++) {
        image_load(d.train[s].path, &cfg, true, 1, 0, s, x);
        image_load(d.train[s].path, &cfg, true, 1, 1, s, y);
        differs += memcmp(x, y, n * 4) != 0;
    }
    ck_assert_int_gt(differs, 0);
    // Test mode ignores seed and epoch (centre crop, no flip).
    image_load(d.test[0].path, &cfg, false, 1, 0, 0, x);
    image_load(d.test[0].path, &cfg, false, 9, 3, 0, y);
    ck_assert_int_eq(memcmp(x, y, n * 4), 0);
    // resize = crop = image side: the output is the decoded image, CHW, (p/255 - mean)/std.
    cfg.resize = 32;
    int w, h, ch;
    unsigned char *px = stbi_load(d.test[0].path, &w, &h, &ch, 3);
    ck_assert_ptr_nonnull(px);
    image_load(d.test[0].path, &cfg, false, 0, 0, 0, x);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 32 * 32; i++) {
            float want = ((float)px[i * 3 + c] / 255.0f - cfg.mean[c]) / cfg.std[c];
            ck_assert_float_eq_tol(x[c * 1024 + i], want, 1e-5);
        }
    // Flip: find a train draw that flips, compare with the mirrored decode.
    int found = 0;
    for (int e = 0; e < 16 && !found; e++) {
        Rng r;
        rng_init(&r, 3, (uint32_t)e, 0, RNG_FLIP);
        if (rng_uniform(&r) >= 0.5) continue;
        found = 1;
        ck_assert_int_eq(image_load(d.test[0].path, &cfg, true, 3, e, 0, x), 1);
        for (int c = 0; c < 3; c++)
            for (int yy = 0; yy < 32; yy++)
                for (int xx = 0; xx < 32; xx++) {
                    float want = ((float)px[(yy * 32 + 31 - xx) * 3 + c] / 255.0f - cfg.mean[c]) / cfg.std[c];
                    ck_assert_float_eq_tol(x[c * 1024 + yy * 32 + xx], want, 1e-5);
                }
    }
    ck_assert_int_eq(found, 1);
    stbi_image_free(px);
    free(x); free(y);
    dataset_free(&d);
}
END_TEST

// Run a whole epoch into flat arrays; returns rows.
static int run_epoch(const Dataset *d, DataConfig cfg, bool train, int batch, int epoch, int start, float *img, int *lab,
                     int *ids, int *skipped) {
    Loader *l = loader_create(d, &cfg, train, batch, 11);
    ck_assert_ptr_nonnull(l);
    loader_start(l, epoch, start);
    size_t per = 3 * (size_t)cfg.crop * cfg.crop;
    int rows = 0, r;
    while ((r = loader_next(l, img + per * rows, lab + rows, ids + rows)) > 0) rows += r;
    ck_assert_int_eq(r, 0);
    if (skipped) *skipped = loader_skipped(l);
    loader_destroy(l);
    return rows;
}

START_TEST(loader_workers) {
    DataConfig cfg = synth("ds_loader");
    Dataset d;
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);
    size_t per = 3 * 32 * 32;
    int N = d.n_train + d.n_test;
    float *a = xmalloc(per * N * 4), *b = xmalloc(per * N * 4);
    int la[64], lb[64], ia[64], ib[64];
    for (int train = 0; train < 2; train++)
        for (int epoch = 0; epoch < 2; epoch++) {
            cfg.workers = 0;
            int ra = run_epoch(&d, cfg, train, 5, epoch, 0, a, la, ia, NULL);
            cfg.workers = 3;
            int rb = run_epoch(&d, cfg, train, 5, epoch, 0, b, lb, ib, NULL);
            // train: 24 / 5 → 4 full batches (last partial dropped); test: 12 → 5 + 5 + 2.
            ck_assert_int_eq(ra, train ? 20 : 12);
            ck_assert_int_eq(rb, ra);
            ck_assert_int_eq(memcmp(a, b, per * ra * 4), 0);
            ck_assert_int_eq(memcmp(la, lb, sizeof(int) * ra), 0);
            ck_assert_int_eq(memcmp(ia, ib, sizeof(int) * ra), 0);
            for (int i = 0; i < ra; i++) {
                ck_assert_int_eq(la[i], (train ? d.train : d.test)[ia[i]].label);
                if (!train) ck_assert_int_eq(ia[i], i);   // test: in order
                for (int j = 0; j < i; j++) ck_assert_int_ne(ia[i], ia[j]);
            }
        }
    // Different epochs shuffle differently; a resume at batch 2 continues the same epoch.
    cfg.workers = 2;
    run_epoch(&d, cfg, true, 5, 0, 0, a, la, ia, NULL);
    run_epoch(&d, cfg, true, 5, 1, 0, b, lb, ib, NULL);
    ck_assert_int_ne(memcmp(ia, ib, sizeof(int) * 20), 0);
    int rr = run_epoch(&d, cfg, true, 5, 0, 2, b, lb, ib, NULL);
    ck_assert_int_eq(rr, 10);
    ck_assert_int_eq(memcmp(ia + 10, ib, sizeof(int) * 10), 0);
    ck_assert_int_eq(memcmp(a + per * 10, b, per * 10 * 4), 0);
    // Restarting an epoch mid-way on a live loader (prefetch in flight) is clean.
    Loader *l = loader_create(&d, &cfg, true, 5, 11);
    loader_start(l, 0, 0);
    ck_assert_int_eq(loader_next(l, b, lb, ib), 5);
    loader_start(l, 0, 0);
    ck_assert_int_eq(loader_next(l, b, lb, ib), 5);
    ck_assert_int_eq(memcmp(a, b, per * 5 * 4), 0);
    loader_destroy(l);
    free(a); free(b);
    dataset_free(&d);
}
END_TEST

START_TEST(missing_files) {
    DataConfig cfg = synth("ds_missing");
    Dataset d;
    char p[1200];
    // A missing image: open fails naming it (unless skip_bad).
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);
    char img[1200];
    snprintf(img, sizeof img, "%s", d.train[4].path);
    dataset_free(&d);
    ck_assert_int_eq(unlink(img), 0);
    cap_begin();
    ck_assert_int_eq(dataset_open(&d, &cfg), 0);
    ck_assert_ptr_nonnull(strstr(cap_end(), img));
    cfg.skip_bad = true;
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);
    dataset_free(&d);
    // A missing index file: one line naming it, the layout and where to get the data.
    snprintf(p, sizeof p, "%s/train_test_split.txt", cfg.root);
    ck_assert_int_eq(unlink(p), 0);
    cap_begin();
    ck_assert_int_eq(dataset_open(&d, &cfg), 0);
    const char *e = cap_end();
    ck_assert_ptr_nonnull(strstr(e, p));
    ck_assert_ptr_nonnull(strstr(e, "images.txt"));
    ck_assert_ptr_nonnull(strstr(e, "https://"));
    ck_assert_ptr_eq(strchr(e, '\n'), e + strlen(e) - 1);
    // Bad contents: line numbers.
    write_text(p, "1 1\n3 0\n");
    cap_begin();
    ck_assert_int_eq(dataset_open(&d, &cfg), 0);
    ck_assert_ptr_nonnull(strstr(cap_end(), "train_test_split.txt:2: expected id 2"));
    // Unknown dataset and a root that is not there.
    strcpy(cfg.dataset, "imagenet");
    cap_begin();
    ck_assert_int_eq(dataset_open(&d, &cfg), 0);
    ck_assert_ptr_nonnull(strstr(cap_end(), "unknown dataset 'imagenet'"));
    strcpy(cfg.dataset, "cub");
    strcpy(cfg.root, "tmp/no-such-root");
    cap_begin();
    ck_assert_int_eq(dataset_open(&d, &cfg), 0);
    ck_assert_ptr_nonnull(strstr(cap_end(), "no-such-root"));
    // Cars and Aircraft name their own layouts.
    strcpy(cfg.root, root);
    strcpy(cfg.dataset, "cars");
    cap_begin();
    ck_assert_int_eq(dataset_open(&d, &cfg), 0);
    ck_assert_ptr_nonnull(strstr(cap_end(), "class_names.txt"));
    strcpy(cfg.dataset, "aircraft");
    cap_begin();
    ck_assert_int_eq(dataset_open(&d, &cfg), 0);
    e = cap_end();
    ck_assert_ptr_nonnull(strstr(e, "data/variants.txt"));
    ck_assert_ptr_nonnull(strstr(e, "fgvc-aircraft"));
}
END_TEST

START_TEST(bad_images) {
    DataConfig cfg = synth("ds_bad");
    Dataset d;
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);
    // Test item 4 becomes a corrupt JPEG (valid SOI marker, garbage after).
    const char *bad = d.test[4].path;
    FILE *f = fopen(bad, "wb");
    fwrite("\xff\xd8\xff\xe0garbage-not-a-jpeg", 1, 22, f);
    fclose(f);
    size_t per = 3 * 32 * 32;
    float *x = xmalloc(per * 64 * 4), *y = xmalloc(per * 64 * 4);
    cap_begin();
    ck_assert_int_eq(image_load(bad, &cfg, false, 0, 0, 4, x), 0);
    const char *e = cap_end();
    ck_assert_ptr_nonnull(strstr(e, bad));
    ck_assert_ptr_eq(strchr(e, '\n'), e + strlen(e) - 1);
    // Without skip_bad the batch holding it fails; the batch before it is fine.
    int lab[64], ids[64];
    for (int w = 0; w <= 2; w += 2) {
        cfg.workers = w;
        cap_begin();   // before the workers start: they may decode (and report) the bad file while prefetching
        Loader *l = loader_create(&d, &cfg, false, 4, 0);
        loader_start(l, 0, 0);
        int r0 = loader_next(l, x, lab, ids), r1 = loader_next(l, x, lab, ids);
        e = cap_end();
        ck_assert_int_eq(r0, 4);
        ck_assert_int_eq(r1, -1);
        ck_assert_ptr_nonnull(strstr(e, bad));
        loader_destroy(l);
    }
    // skip_bad is for training images only: a bad test image still stops the loader
    // (skipping it would change the reported accuracy), naming the file and why.
    cfg.skip_bad = true;
    for (int w = 0; w <= 2; w += 2) {
        cfg.workers = w;
        cap_begin();
        Loader *l = loader_create(&d, &cfg, false, 4, 0);
        loader_start(l, 0, 0);
        int r0 = loader_next(l, x, lab, ids), r1 = loader_next(l, x, lab, ids);
        e = cap_end();
        ck_assert_int_eq(r0, 4);
        ck_assert_int_eq(r1, -1);
        ck_assert_ptr_nonnull(strstr(e, bad));
        ck_assert_ptr_nonnull(strstr(e, "data.skip_bad applies to training images only"));
        ck_assert_ptr_eq(strchr(e, '\n'), e + strlen(e) - 1);   // one line: the file, why, the hint
        ck_assert_int_eq(loader_skipped(l), 0);
        loader_destroy(l);
    }
    // A bad training image with skip_bad: replaced by the next image in epoch order,
    // counted, the same bytes with any worker count.
    f = fopen(d.train[7].path, "wb");
    fwrite("\xff\xd8\xff\xe0garbage-not-a-jpeg", 1, 22, f);
    fclose(f);
    int sk0, sk3, la[64], ia[64];
    cfg.workers = 0;
    cap_begin();
    int ra = run_epoch(&d, cfg, true, 4, 0, 0, x, la, ia, &sk0);
    cfg.workers = 3;
    int rb = run_epoch(&d, cfg, true, 4, 0, 0, y, lab, ids, &sk3);
    cap_end();
    ck_assert_int_eq(ra, 24);
    ck_assert_int_eq(rb, 24);
    ck_assert_int_eq(sk0, 1);
    ck_assert_int_eq(sk3, 1);
    int dup = 0;
    for (int i = 0; i < 24; i++) {
        ck_assert_int_ne(ia[i], 7);
        for (int j = 0; j < i; j++) dup += ia[i] == ia[j];
    }
    ck_assert_int_eq(dup, 1);
    ck_assert_int_eq(memcmp(x, y, per * 24 * 4), 0);
    ck_assert_int_eq(memcmp(ia, ids, sizeof(int) * 24), 0);
    // A PNG that is huge on paper is refused before decoding.
    unsigned char hdr[33] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                             0, 0, 0x30, 0x00, 0, 0, 0x30, 0x00, 8, 2, 0, 0, 0, 0, 0, 0, 0};
    f = fopen(d.test[0].path, "wb");
    fwrite(hdr, 1, sizeof hdr, f);
    fclose(f);
    cap_begin();
    ck_assert_int_eq(image_load(d.test[0].path, &cfg, false, 0, 0, 0, x), 0);
    e = cap_end();
    ck_assert_ptr_nonnull(strstr(e, d.test[0].path));
    free(x); free(y);
    dataset_free(&d);
}
END_TEST

// Cars (CSV layout) and Aircraft (official layout, banner dropped) on tiny hand-made sets.
START_TEST(cars_aircraft) {
    const char *r = test_tmpdir("ds_fgvc");
    char p[1200];
    unsigned char px[40 * 60 * 3];
    // 40 wide, 60 tall: black except a white 20-px banner at the bottom.
    for (int i = 0; i < 40 * 60; i++) memset(px + i * 3, i / 40 >= 40 ? 255 : 0, 3);
    snprintf(p, sizeof p, "%s/data/images", r);
    ck_assert_int_eq(mkdir_p(p), 0);
    const char *ids[3] = {"0034309", "1025794", "2233019"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/data/images/%s.jpg", r, ids[i]);
        // PNG bytes under the official .jpg name: stb_image sniffs the content, and
        // stb's JPEG encoder trips UBSan (left shift of a negative int) in the sanitizer build.
        ck_assert(stbi_write_png(p, 40, 60, 3, px, 40 * 3));
    }
    snprintf(p, sizeof p, "%s/data/variants.txt", r);
    write_text(p, "707-320\nA300B4\nF/A-18\n");
    snprintf(p, sizeof p, "%s/data/images_variant_trainval.txt", r);
    write_text(p, "0034309 F/A-18\n1025794 707-320\n");
    snprintf(p, sizeof p, "%s/data/images_variant_test.txt", r);
    write_text(p, "2233019 A300B4\n");
    DcalConfig c;
    config_defaults(&c);
    DataConfig cfg = c.data;
    strcpy(cfg.dataset, "aircraft");
    snprintf(cfg.root, sizeof cfg.root, "%s", r);
    cfg.resize = 16; cfg.crop = 16; cfg.banner_px = 20;
    for (int i = 0; i < 3; i++) { cfg.mean[i] = 0; cfg.std[i] = 1; }
    Dataset d;
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);
    ck_assert_int_eq(d.num_classes, 3);
    ck_assert_int_eq(d.n_train, 2);
    ck_assert_int_eq(d.n_test, 1);
    ck_assert_int_eq(d.train[0].label, 2);
    ck_assert_int_eq(d.test[0].label, 1);
    ck_assert_ptr_nonnull(strstr(d.train[1].path, "data/images/1025794.jpg"));
    float out[3 * 16 * 16];
    ck_assert_int_eq(image_load(d.test[0].path, &cfg, false, 0, 0, 0, out), 1);
    float mx = 0;
    for (int i = 0; i < 3 * 256; i++) mx = out[i] > mx ? out[i] : mx;
    ck_assert_float_eq(mx, 0.0f);   // the white banner is gone
    cfg.banner_px = 0;
    image_load(d.test[0].path, &cfg, false, 0, 0, 0, out);
    ck_assert_float_gt(out[15 * 16 + 3], 0.9f);   // kept: the bottom row is white
    dataset_free(&d);
    // An unknown variant names the file and line.
    snprintf(p, sizeof p, "%s/data/images_variant_test.txt", r);
    write_text(p, "2233019 A300B4\n2233019 Concorde\n");
    cap_begin();
    ck_assert_int_eq(dataset_open(&d, &cfg), 0);
    ck_assert_ptr_nonnull(strstr(cap_end(), "images_variant_test.txt:2"));

    // Cars: CSV with a header line, relpaths relative to root.
    snprintf(p, sizeof p, "%s/class_names.txt", r);
    write_text(p, "AM General Hummer SUV 2000\nAcura RL Sedan 2012\n");
    snprintf(p, sizeof p, "%s/cars_train.csv", r);
    write_text(p, "relpath,class_id\ndata/images/0034309.jpg,2\ndata/images/1025794.jpg,1\n");
    snprintf(p, sizeof p, "%s/cars_test.csv", r);
    write_text(p, "data/images/2233019.jpg,2\n");
    strcpy(cfg.dataset, "cars");
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);
    ck_assert_int_eq(d.num_classes, 2);
    ck_assert_str_eq(d.class_names[1], "Acura RL Sedan 2012");
    ck_assert_int_eq(d.n_train, 2);
    ck_assert_int_eq(d.train[0].label, 1);
    ck_assert_int_eq(d.test[0].label, 1);
    dataset_free(&d);
    write_text(p, "data/images/2233019.jpg,3\n");
    cap_begin();
    ck_assert_int_eq(dataset_open(&d, &cfg), 0);
    ck_assert_ptr_nonnull(strstr(cap_end(), "cars_test.csv:1"));
}
END_TEST

// data.skip_bad covers training images only: a missing test image fails the open
// (skipping it would change the reported accuracy); dataset_open_lenient (dataset
// check, audit) lets both splits through with size -1 in the fingerprint.
START_TEST(skip_bad_train_only) {
    DataConfig cfg = synth("ds_skiptest");
    Dataset d;
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);
    char tr[1200], te[1200];
    snprintf(tr, sizeof tr, "%s", d.train[2].path);
    snprintf(te, sizeof te, "%s", d.test[1].path);
    char fp[65];
    memcpy(fp, d.fingerprint, sizeof fp);
    dataset_free(&d);
    ck_assert_int_eq(unlink(te), 0);
    cfg.skip_bad = true;
    OPEN_FAILS(&cfg, te, "a test image", "data.skip_bad applies to training images only");
    ck_assert_int_eq(dataset_open_lenient(&d, &cfg), 1);
    ck_assert_str_ne(d.fingerprint, fp);   // the missing file shows in the fingerprint
    dataset_free(&d);
    // A missing training image is still skipped with skip_bad, refused without.
    write_text(te, "x");
    ck_assert_int_eq(unlink(tr), 0);
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);
    dataset_free(&d);
    cfg.skip_bad = false;
    OPEN_FAILS(&cfg, tr, "data.skip_bad=true");
}
END_TEST

// Only regular files are read: a FIFO, a directory or a device named as an image
// gives one line naming it, at once (it used to block in open() forever).
START_TEST(not_regular_files) {
    DataConfig cfg = synth("ds_fifo");
    Dataset d;
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);
    char tr[1200], te[1200];
    snprintf(tr, sizeof tr, "%s", d.train[5].path);
    snprintf(te, sizeof te, "%s", d.test[0].path);
    dataset_free(&d);
    ck_assert_int_eq(unlink(te), 0);
    ck_assert_int_eq(mkfifo(te, 0644), 0);
    float x[3 * 32 * 32];
    cap_begin();
    ck_assert_int_eq(image_load(te, &cfg, false, 0, 0, 0, x), 0);
    const char *e = cap_end();
    ck_assert_ptr_nonnull(strstr(e, te));
    ck_assert_ptr_nonnull(strstr(e, "is a FIFO, not a regular file"));
    ck_assert_ptr_eq(strchr(e, '\n'), e + strlen(e) - 1);
    OPEN_FAILS(&cfg, te, "is a FIFO, not a regular file");
    char why[256];
    ck_assert_int_eq(image_probe(te, 0, why, sizeof why), 0);
    ck_assert_ptr_nonnull(strstr(why, "is a FIFO"));
    cfg.skip_bad = true;   // a test image: still refused
    OPEN_FAILS(&cfg, te, "not a regular file", "training images only");
    ck_assert_int_eq(unlink(te), 0);
    write_text(te, "x");
    // A training image that is a FIFO: refused, or skipped with skip_bad.
    ck_assert_int_eq(unlink(tr), 0);
    ck_assert_int_eq(mkfifo(tr, 0644), 0);
    cfg.skip_bad = false;
    OPEN_FAILS(&cfg, tr, "not a regular file");
    cfg.skip_bad = true;
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);
    float *img = xmalloc(sizeof(float) * 3 * 32 * 32 * 64);
    int lab[64], ids[64], sk;
    cfg.workers = 2;
    cap_begin();
    ck_assert_int_eq(run_epoch(&d, cfg, true, 4, 0, 0, img, lab, ids, &sk), 24);
    ck_assert_ptr_nonnull(strstr(cap_end(), "is a FIFO"));
    ck_assert_int_eq(sk, 1);
    free(img);
    dataset_free(&d);
    // A directory and a device.
    cap_begin();
    ck_assert_int_eq(image_load(cfg.root, &cfg, false, 0, 0, 0, x), 0);
    ck_assert_ptr_nonnull(strstr(cap_end(), "is a directory, not a regular file"));
    cap_begin();
    ck_assert_int_eq(image_load("/dev/zero", &cfg, false, 0, 0, 0, x), 0);
    ck_assert_ptr_nonnull(strstr(cap_end(), "/dev/zero: is a device, not a regular file"));
}
END_TEST

// A worker stuck in a read (a hung file system; here a pipe nobody writes) must
// not keep the trainer from stopping: after the stop flag, loader_next gives up
// within ~2 s and loader_destroy returns within 5 s.
static int hang_fd = -1;
static int hang_load(const char *path, const DataConfig *cfg, bool train, uint64_t seed, int epoch, int sample,
                     float *out, char *why, size_t n) {
    (void)path; (void)cfg; (void)train; (void)seed; (void)epoch; (void)sample; (void)out; (void)why; (void)n;
    char c;
    return (int)read(hang_fd, &c, 1);   // blocks: the write end stays open and silent
}
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
static volatile sig_atomic_t stop_flag;

START_TEST(stop_with_stuck_worker) {
    DataConfig cfg = synth("ds_stuck");
    Dataset d;
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);
    float *img = xmalloc(sizeof(float) * 3 * 32 * 32 * 4);
    int lab[4], ids[4];
    cfg.workers = 2;
    // Healthy workers: the stop flag alone changes nothing (the step in progress finishes).
    stop_flag = 1;
    Loader *l = loader_create(&d, &cfg, true, 4, 1);
    loader_set_stop_flag(l, &stop_flag);
    loader_start(l, 0, 0);
    ck_assert_int_eq(loader_next(l, img, lab, ids), 4);
    loader_destroy(l);
    // Workers blocked in read().
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    hang_fd = fds[0];
    stop_flag = 0;
    l = loader_create(&d, &cfg, true, 4, 1);
    loader_set_image_fn(l, hang_load);
    loader_set_stop_flag(l, &stop_flag);
    loader_start(l, 0, 0);
    stop_flag = SIGTERM;
    double t0 = now_s();
    cap_begin();
    ck_assert_int_eq(loader_next(l, img, lab, ids), LOADER_INTERRUPTED);
    double t1 = now_s();
    ck_assert_int_eq(loader_next(l, img, lab, ids), LOADER_INTERRUPTED);   // and stays so
    loader_destroy(l);
    double t2 = now_s();
    const char *e = cap_end();
    ck_assert_double_lt(t1 - t0, 4.0);
    ck_assert_double_lt(t2 - t1, 5.0);
    ck_assert_ptr_nonnull(strstr(e, "dcal: loader: stopping before the next batch"));
    ck_assert_ptr_nonnull(strstr(e, "dcal: loader: 2 image worker(s) still blocked"));
    // No stop request (loader_destroy after an error): still back within 5 s.
    l = loader_create(&d, &cfg, true, 4, 1);
    loader_set_image_fn(l, hang_load);
    loader_start(l, 0, 0);
    usleep(100000);   // the workers are in read() now
    t0 = now_s();
    cap_begin();
    loader_destroy(l);
    e = cap_end();
    ck_assert_double_lt(now_s() - t0, 5.0);
    ck_assert_ptr_nonnull(strstr(e, "still blocked in a read after 3 s"));
    free(img);
    dataset_free(&d);
}
END_TEST

// Listed paths stay inside their root: absolute paths and '..' are refused with
// file:line; a symbolic link inside the root may point anywhere (linked data folders).
START_TEST(listed_paths_stay_inside) {
    DataConfig cfg = synth("ds_paths");
    char p[1200], q[1200], list[1200];
    snprintf(list, sizeof list, "%s/images.txt", cfg.root);
    const char *bad[] = {"../classes.txt", "/etc/passwd", "001.square_red/../../../x.png", "a/..", NULL};
    const char *why[] = {"has a '..' component", "is absolute", "has a '..' component", "has a '..' component"};
    for (int i = 0; bad[i]; i++) {
        snprintf(q, sizeof q, "3 %s", bad[i]);
        set_line(list, 3, q);
        snprintf(p, sizeof p, "images.txt:3: path '%s' %s", bad[i], why[i]);
        OPEN_FAILS(&cfg, p, "symbolic links inside it are fine");
    }
    // A symbolic link inside the root to a folder elsewhere: allowed and read.
    const char *elsewhere = test_tmpdir("ds_paths_target");
    char abs[PATH_MAX], moved[PATH_MAX + 16];
    ck_assert_ptr_nonnull(realpath(elsewhere, abs));
    snprintf(p, sizeof p, "%s/images/001.square_red/square_red_00003.png", cfg.root);
    snprintf(moved, sizeof moved, "%s/moved.png", abs);
    ck_assert_int_eq(rename(p, moved), 0);
    snprintf(p, sizeof p, "%s/images/linked", cfg.root);
    ck_assert_int_eq(symlink(abs, p), 0);
    set_line(list, 3, "3 linked/moved.png");
    Dataset d;
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);
    float x[3 * 32 * 32];
    ck_assert_int_eq(image_load(d.train[2].path, &cfg, true, 0, 0, 2, x), 1);
    dataset_free(&d);

    // Cars: relpaths relative to the root.
    snprintf(p, sizeof p, "%s/class_names.txt", cfg.root);
    write_text(p, "A\nB\n");
    snprintf(p, sizeof p, "%s/cars_test.csv", cfg.root);
    write_text(p, "images/linked/moved.png,1\n");
    snprintf(p, sizeof p, "%s/cars_train.csv", cfg.root);
    strcpy(cfg.dataset, "cars");
    write_text(p, "images/linked/moved.png,2\n../outside.jpg,1\n");
    OPEN_FAILS(&cfg, "cars_train.csv:2: path '../outside.jpg' has a '..' component", "inside the data root");
    write_text(p, "relpath,class_id\n/tmp/x.jpg,1\n");
    OPEN_FAILS(&cfg, "cars_train.csv:2: path '/tmp/x.jpg' is absolute");
    write_text(p, "images/linked/moved.png,2\n");
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);
    dataset_free(&d);

    // Aircraft: the image id names data/images/<id>.jpg.
    snprintf(p, sizeof p, "%s/data", cfg.root);
    ck_assert_int_eq(mkdir_p(p), 0);
    snprintf(p, sizeof p, "%s/data/variants.txt", cfg.root);
    write_text(p, "A300B4\n");
    snprintf(p, sizeof p, "%s/data/images_variant_test.txt", cfg.root);
    write_text(p, "1 A300B4\n");
    snprintf(p, sizeof p, "%s/data/images_variant_trainval.txt", cfg.root);
    write_text(p, "1 A300B4\n../../images/linked/moved A300B4\n");
    strcpy(cfg.dataset, "aircraft");
    OPEN_FAILS(&cfg, "images_variant_trainval.txt:2: path '../../images/linked/moved' has a '..' component");
    write_text(p, "/etc/passwd A300B4\n");
    OPEN_FAILS(&cfg, "images_variant_trainval.txt:1: path '/etc/passwd' is absolute");
}
END_TEST

// Cars CSV: only the documented header "relpath,class_id", only on line 1; any
// other malformed line, and anything after the class id, is an error with file:line.
START_TEST(cars_csv_strict) {
    const char *r = test_tmpdir("ds_cars");
    char p[1200], q[1200];
    snprintf(p, sizeof p, "%s/a.png", r);
    unsigned char px[8 * 8 * 3] = {0};
    ck_assert(stbi_write_png(p, 8, 8, 3, px, 8 * 3));
    snprintf(p, sizeof p, "%s/class_names.txt", r);
    write_text(p, "A\nB\nC\n");
    snprintf(p, sizeof p, "%s/cars_test.csv", r);
    write_text(p, "a.png,1\n");
    DcalConfig c;
    config_defaults(&c);
    DataConfig cfg = c.data;
    strcpy(cfg.dataset, "cars");
    snprintf(cfg.root, sizeof cfg.root, "%s", r);
    snprintf(p, sizeof p, "%s/cars_train.csv", r);
    Dataset d;
    const char *good[] = {"relpath,class_id\na.png,3\n", "a.png,3\n", "a.png,2  \r\n\n# comment\na.png,1\n", NULL};
    for (int i = 0; good[i]; i++) {
        write_text(p, good[i]);
        ck_assert_msg(dataset_open(&d, &cfg) == 1, "refused: %s", good[i]);
        dataset_free(&d);
    }
    struct { const char *text, *want; } bad[] = {
        {"a.png,3xyz\n", "cars_train.csv:1: class_id '3xyz' is not an integer in 1..3"},
        {"a.png,3,extra\n", "cars_train.csv:1: class_id 'extra' is not an integer"},
        {"a.png,3 xyz\n", "cars_train.csv:1: class_id '3 xyz'"},
        {"a.png\n", "cars_train.csv:1: expected 'relpath,class_id'"},
        {"path,label\na.png,1\n", "cars_train.csv:1: class_id 'label'"},
        {"Relpath,Class_Id\n", "cars_train.csv:1: class_id 'Class_Id'"},
        {"a.png,1\nrelpath,class_id\n", "cars_train.csv:2: class_id 'class_id'"},
        {"a.png,1\n,2\n", "cars_train.csv:2: expected 'relpath,class_id'"},
        {"a.png,0\n", "cars_train.csv:1: class_id '0' is not an integer in 1..3"},
        {"a.png,4\n", "cars_train.csv:1: class_id '4'"},
        {"a.png,-1\n", "cars_train.csv:1: class_id '-1'"},
        {"a.png,+1\n", "cars_train.csv:1: class_id '+1'"},
        {"a.png, 1\n", "cars_train.csv:1: class_id ' 1'"},
        {"a.png,99999999999999999999\n", "cars_train.csv:1: class_id '99999999999999999999'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(p, bad[i].text);
        snprintf(q, sizeof q, "%s", bad[i].want);
        OPEN_FAILS(&cfg, q);
    }
}
END_TEST

// CUB numbers: image ids, class ids and split flags are whole integers in range;
// anything else names file:line.
START_TEST(cub_numbers_bounded) {
    DataConfig cfg = synth("ds_nums");
    char lab[1200], spl[1200], img[1200];
    snprintf(lab, sizeof lab, "%s/image_class_labels.txt", cfg.root);
    snprintf(spl, sizeof spl, "%s/train_test_split.txt", cfg.root);
    snprintf(img, sizeof img, "%s/images.txt", cfg.root);
    struct { const char *file, *line, *want; } bad[] = {
        {lab, "5 0", "image_class_labels.txt:5: class id '0' is not an integer in 1..4"},
        {lab, "5 5", "image_class_labels.txt:5: class id '5'"},
        {lab, "5 -1", "image_class_labels.txt:5: class id '-1'"},
        {lab, "5 1x", "image_class_labels.txt:5: class id '1x'"},
        {lab, "5 +1", "image_class_labels.txt:5: class id '+1'"},
        {lab, "5 4294967297", "image_class_labels.txt:5: class id '4294967297'"},
        {spl, "5 2", "train_test_split.txt:5: is_train flag '2' is not an integer in 0..1"},
        {spl, "5 1 0", "train_test_split.txt:5: is_train flag '1 0'"},
        {spl, "5 yes", "train_test_split.txt:5: is_train flag 'yes'"},
        {img, "5x a.png", "images.txt:5: expected id 5, got '5x'"},
        {img, "4294967301 a.png", "images.txt:5: expected id 5, got '4294967301'"},
        {img, "-5 a.png", "images.txt:5: expected id 5, got '-5'"},
        {img, "5", "images.txt:5: missing value after id 5"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char keep[256];
        FILE *f = fopen(bad[i].file, "rb");
        ck_assert_ptr_nonnull(f);
        for (int k = 0; k < 5; k++) ck_assert_ptr_nonnull(fgets(keep, sizeof keep, f));
        fclose(f);
        keep[strcspn(keep, "\n")] = 0;
        set_line(bad[i].file, 5, bad[i].line);
        OPEN_FAILS(&cfg, bad[i].want);
        set_line(bad[i].file, 5, keep);
    }
    Dataset d;
    ck_assert_int_eq(dataset_open(&d, &cfg), 1);   // all restored
    dataset_free(&d);
}
END_TEST

// The registry: the facts config, compliance and `dataset check` read, and the
// name list static tables use (DATASET_NAMES) agrees with the rows.
START_TEST(registry) {
    const DatasetInfo *cub = dataset_info("cub"), *cars = dataset_info("cars"), *air = dataset_info("aircraft");
    ck_assert_ptr_nonnull(cub); ck_assert_ptr_nonnull(cars); ck_assert_ptr_nonnull(air);
    ck_assert_int_eq(cub->num_classes, 200); ck_assert_int_eq(cub->n_train, 5994); ck_assert_int_eq(cub->n_test, 5794);
    ck_assert_int_eq(cars->num_classes, 196); ck_assert_int_eq(cars->n_train, 8144); ck_assert_int_eq(cars->n_test, 8041);
    ck_assert_int_eq(air->num_classes, 100); ck_assert_int_eq(air->n_train, 6667); ck_assert_int_eq(air->n_test, 3333);
    ck_assert_int_eq(air->banner_px, 20); ck_assert_int_eq(cub->banner_px, 0); ck_assert_int_eq(cars->banner_px, 0);
    const DatasetInfo *syn = dataset_info("synthetic");
    ck_assert_ptr_nonnull(syn);
    ck_assert_int_eq(syn->num_classes, 0); ck_assert_int_eq(syn->n_train, 0);
    ck_assert_str_eq(syn->layout, cub->layout);   // make-synthetic writes CUB's layout
    ck_assert_ptr_null(dataset_info("imagenet"));
    ck_assert_ptr_null(dataset_info(NULL));
    ck_assert_ptr_eq(dataset_info_at(0), cub);      // the default dataset
    ck_assert_ptr_null(dataset_info_at(dataset_info_count()));
    char names[256] = "";
    for (int i = 0; i < dataset_info_count(); i++) {
        const DatasetInfo *in = dataset_info_at(i);
        ck_assert_ptr_eq(dataset_info(in->name), in);
        ck_assert_ptr_nonnull(strstr(in->source, "://"));
        ck_assert_ptr_nonnull(strstr(in->layout, "ROOT/"));
        if (i) strcat(names, "|");
        strcat(names, in->name);
    }
    ck_assert_str_eq(names, DATASET_NAMES);
    ck_assert_str_eq(dataset_names(), DATASET_NAMES);
    ck_assert_str_eq(dataset_names_text(), "cub, cars, aircraft or synthetic");
}
END_TEST

// The two commands, through the binary.
START_TEST(cli) {
    const char *r = test_tmpdir("ds_cli");
    char cmd[1400], out[8192];
    snprintf(cmd, sizeof cmd, "make-synthetic --out %s/s --classes 3 --per-class 2 --test-per-class 1 --img 24", r);
    ck_assert_int_eq(run_dcal(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "dataset check --dataset synthetic --data-root %s/s", r);
    ck_assert_int_eq(run_dcal(cmd, out, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, "classes:     3"));
    ck_assert_ptr_nonnull(strstr(out, "train:       6"));
    ck_assert_ptr_nonnull(strstr(out, "fingerprint: "));
    // Same set, wrong name: CUB's official counts do not match.
    snprintf(cmd, sizeof cmd, "dataset check --dataset cub --data-root %s/s", r);
    ck_assert_int_eq(run_dcal(cmd, out, sizeof out), 1);
    ck_assert_ptr_nonnull(strstr(out, "5994"));
    // A corrupt image is named.
    snprintf(cmd, sizeof cmd, "%s/s/images/002.plus_red/plus_red_00004.png", r);
    write_text(cmd, "not a png");
    snprintf(cmd, sizeof cmd, "dataset check --dataset synthetic --data-root %s/s", r);
    ck_assert_int_eq(run_dcal(cmd, out, sizeof out), 1);
    ck_assert_ptr_nonnull(strstr(out, "plus_red_00004.png"));
    ck_assert_int_eq(run_dcal("make-synthetic --out x --frobnicate 3", out, sizeof out), 2);
    ck_assert_ptr_nonnull(strstr(out, "--frobnicate"));
    ck_assert_ptr_nonnull(strstr(out, "usage:"));
    ck_assert_int_eq(run_dcal("make-synthetic --classes 3", out, sizeof out), 2);
    ck_assert_int_eq(run_dcal("make-synthetic --out x --img abc", out, sizeof out), 2);
    ck_assert_int_eq(run_dcal("make-synthetic --help", out, sizeof out), 0);
    ck_assert_int_eq(run_dcal("dataset check --dataset cub", out, sizeof out), 2);
    ck_assert_int_eq(run_dcal("dataset --help", out, sizeof out), 0);
}
END_TEST

// Files that crash or trip UB in Debian's stb_image 2.27 (found by tests/fuzz)
// are refused before decoding, with a reason; a valid image still passes.
START_TEST(stb_guards) {
    static const struct { const char *file, *want; } cases[] = {
        {"tests/fuzz/findings/stb_jpeg_dht_over_256.jpg", "corrupt JPEG (a Huffman table with more than 256 codes"},
        {"tests/fuzz/findings/stb_jpeg_huff_values_index_oob.jpg",
         "corrupt JPEG (a scan using a Huffman table the file never defines"},
        {"tests/fuzz/findings/stb_png_empty_idat_null_offset.png", "corrupt PNG (an empty IDAT chunk"},
        {"tests/fuzz/findings/stb_png_idat_past_end_2gib_alloc.png",
         "corrupt PNG (an IDAT chunk longer than the rest of the file"},
    };
    char path[1200], why[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", src_dir(), cases[i].file);
        why[0] = 0;
        ck_assert_int_eq(image_probe(path, 0, why, sizeof why), 0);
        ck_assert_msg(strstr(why, cases[i].want), "%s: %s", cases[i].file, why);
    }
    snprintf(path, sizeof path, "%s/tests/fuzz/corpus/image", src_dir());
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    int good = 0;
    for (struct dirent *e; (e = readdir(d));) {
        char p[1600];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        good += e->d_name[0] != '.' && image_probe(p, 0, why, sizeof why);
    }
    closedir(d);
    ck_assert_int_gt(good, 0);   // the guards do not refuse the valid seeds
    snprintf(path, sizeof path, "%s/g.txt", test_tmpdir("guard"));
    FILE *f = fopen(path, "w");
    fputs("GIF89a not an image dcal reads", f);
    fclose(f);
    ck_assert_int_eq(image_probe(path, 0, why, sizeof why), 0);
    ck_assert_msg(strstr(why, "not a JPEG or PNG file"), "%s", why);
}
END_TEST

int main(void) {
    Suite *s = suite_create("dataset");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, open_counts_labels);
    tcase_add_test(tc, fingerprint);
    tcase_add_test(tc, image_augment);
    tcase_add_test(tc, loader_workers);
    tcase_add_test(tc, missing_files);
    tcase_add_test(tc, bad_images);
    tcase_add_test(tc, cars_aircraft);
    tcase_add_test(tc, registry);
    tcase_add_test(tc, cli);
    tcase_add_test(tc, skip_bad_train_only);
    tcase_add_test(tc, listed_paths_stay_inside);
    tcase_add_test(tc, cars_csv_strict);
    tcase_add_test(tc, cub_numbers_bounded);
    tcase_add_test(tc, stb_guards);
    suite_add_tcase(s, tc);
    // Tests that hung before their fix get a short timeout of their own.
    TCase *th = tcase_create("no_hang");
    tcase_set_timeout(th, 20);
    tcase_add_test(th, not_regular_files);
    tcase_add_test(th, stop_with_stuck_worker);
    suite_add_tcase(s, th);
    return run_suite(s);
}

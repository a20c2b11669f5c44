// unit_dataset.c: dataset readers (CUB/synthetic, Cars CSV, Aircraft), the
// fingerprint, image_load augmentation and normalisation, the loader's
// determinism across worker counts, and the bad-file errors (MODEL.md §5, §7).
#include <string.h>
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
    // skip_bad: replaced by the next image in order, counted, same with any worker count.
    cfg.skip_bad = true;
    int sk0, sk3, la[64], ia[64];
    cfg.workers = 0;
    cap_begin();
    int ra = run_epoch(&d, cfg, false, 4, 0, 0, x, la, ia, &sk0);
    cfg.workers = 3;
    int rb = run_epoch(&d, cfg, false, 4, 0, 0, y, lab, ids, &sk3);
    cap_end();
    ck_assert_int_eq(ra, 12);
    ck_assert_int_eq(rb, 12);
    ck_assert_int_eq(sk0, 1);
    ck_assert_int_eq(sk3, 1);
    ck_assert_int_eq(ia[4], 5);
    ck_assert_int_eq(ia[5], 5);
    ck_assert_int_eq(memcmp(x, y, per * 12 * 4), 0);
    ck_assert_int_eq(memcmp(ia, ids, sizeof(int) * 12), 0);
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
    suite_add_tcase(s, tc);
    return run_suite(s);
}

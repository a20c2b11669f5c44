// fuzz_dataset.c: one dataset's list readers through dataset_open. Built once
// per dataset (FUZZ_DATASET = "cub", "cars" or "aircraft"). The input is the
// dataset's index files joined by NUL bytes (which no index file may contain),
// in the order of FILES below; a part that is not given is a missing file.
// The root holds a few tiny image files, so listed paths may exist or not.
#include <string.h>
#include "config/config.h"
#include "datasets/dataset.h"
#include "fuzz_util.h"

#ifndef FUZZ_DATASET
#error "build with -DFUZZ_DATASET=\"cub\" (or cars, aircraft)"
#endif

static const char *const cub_files[] = {"classes.txt", "images.txt", "image_class_labels.txt",
                                        "train_test_split.txt", NULL};
static const char *const cars_files[] = {"class_names.txt", "cars_train.csv", "cars_test.csv", NULL};
static const char *const aircraft_files[] = {"data/variants.txt", "data/images_variant_trainval.txt",
                                             "data/images_variant_test.txt", NULL};
// Image files the seeds name (their contents are never decoded by dataset_open).
static const char *const images[] = {"images/001.a/a.jpg", "images/002.b/b.jpg", "cars_train/1.jpg",
                                     "cars_test/2.jpg", "data/images/1001.jpg", "data/images/1002.jpg", NULL};

static const char *const *files(void) {
    if (!strcmp(FUZZ_DATASET, "cars")) return cars_files;
    if (!strcmp(FUZZ_DATASET, "aircraft")) return aircraft_files;
    return cub_files;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    const char *dirs[] = {"images", "images/001.a", "images/002.b", "cars_train", "cars_test", "data",
                          "data/images"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) fuzz_mkdir(dirs[i]);
    for (int i = 0; images[i]; i++) {
        char p[700];
        fuzz_path(p, sizeof p, images[i]);
        fuzz_write(p, (const uint8_t *)"x", 1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 65536) return -1;   // index lines are short; longer inputs only slow the search
    const char *const *fl = files();
    size_t at = 0;
    int more = 1;   // is there a part left (an empty input is one empty part)
    for (int i = 0; fl[i]; i++) {   // part i → file i, or no file once the input ran out
        char path[700];
        fuzz_path(path, sizeof path, fl[i]);
        if (!more) { unlink(path); continue; }
        const uint8_t *nul = memchr(data + at, 0, size - at);
        size_t stop = nul ? (size_t)(nul - data) : size;
        fuzz_write(path, data + at, stop - at);
        more = nul != NULL;
        at = nul ? stop + 1 : size;
    }
    static DcalConfig c;
    config_defaults(&c);
    snprintf(c.data.dataset, sizeof c.data.dataset, "%s", FUZZ_DATASET);
    snprintf(c.data.root, sizeof c.data.root, "%s", fuzz_scratch());
    c.data.skip_bad = true;   // missing images are skipped: the whole list is read either way
    static Dataset d;
    if (dataset_open(&d, &c.data)) {
        for (int i = 0; i < d.n_train; i++)
            if (d.train[i].label < 0 || d.train[i].label >= d.num_classes) abort();
        for (int i = 0; i < d.n_test; i++)
            if (d.test[i].label < 0 || d.test[i].label >= d.num_classes) abort();
        dataset_free(&d);
    }
    return 0;
}

// dataset.h: dataset indexes (CUB, Cars, Aircraft, synthetic) and the batch
// loader (decode → augment → batch, MODEL.md §5). Knows nothing about models.
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "config/config.h"

typedef struct {
    char *path;                // absolute or root-relative image path
    int label;                 // 0-based class id
} DatasetItem;

typedef struct {
    char name[32];
    char root[DCAL_PATH_MAX];
    int num_classes;
    char **class_names;        // [num_classes]
    DatasetItem *train, *test;
    int n_train, n_test;
    char fingerprint[65];      // hex sha256 of the index files and the sorted (path, size) list
} Dataset;

// Open by cfg->dataset / cfg->root. 0 after a one-line error naming the missing
// file and the expected layout.
int dataset_open(Dataset *d, const DataConfig *cfg);
void dataset_free(Dataset *d);

// Decode + augment one image into out [3, crop, crop], normalised.
// train: resize → random crop → flip, keyed by (seed, epoch, sample); test: resize → centre crop.
// 0 after an error line naming the file.
int image_load(const char *path, const DataConfig *cfg, bool train, uint64_t seed, int epoch,
               int sample, float *out);

typedef struct Loader Loader;
// train: shuffled (keyed by seed, epoch), last partial batch dropped; test: in order, last kept.
Loader *loader_create(const Dataset *d, const DataConfig *cfg, bool train, int batch, uint64_t seed);
int loader_num_batches(const Loader *l);
// Begin an epoch at batch index `start` (resume). Prefetching starts here.
void loader_start(Loader *l, int epoch, int start);
// Next batch: images [batch, 3, crop, crop], labels [batch], ids [batch] (sample ids).
// Returns rows filled (0 at epoch end), or -1 after an error line.
int loader_next(Loader *l, float *images, int *labels, int *ids);
int loader_skipped(const Loader *l);   // bad images skipped so far (data.skip_bad)
void loader_destroy(Loader *l);

// Synthetic fine-grained set in CUB layout (MODEL.md §7). 0 after an error line.
int synthetic_write(const char *dir, int classes, int per_class, int test_per_class, int img, uint64_t seed);

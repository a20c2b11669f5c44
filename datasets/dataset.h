// dataset.h: dataset indexes (CUB, Cars, Aircraft, synthetic) and the batch
// loader (decode → augment → batch, MODEL.md §5). Knows nothing about models.
#pragma once
#include <signal.h>
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
    DatasetItem *val;          // held out of train by dataset_hold_out_val (else NULL, 0)
    int n_val;
    char val_sha256[65];       // sha256 of the val items' "relpath\tlabel\n" in order ("" when none)
} Dataset;

// Open by cfg->dataset / cfg->root. 0 after a one-line error naming the missing
// file and the expected layout, or a listed image that is missing or not a
// regular file (a training image is tolerated with cfg->skip_bad; a test image
// never is: skipping it would change the reported accuracy).
int dataset_open(Dataset *d, const DataConfig *cfg);
// The same, tolerating missing and not-regular images of both splits (their
// size in the fingerprint is -1): for tools that check each image themselves
// (`dcal dataset check`, `dcal audit`). cfg->skip_bad is ignored.
int dataset_open_lenient(Dataset *d, const DataConfig *cfg);
void dataset_free(Dataset *d);
// data.val_fraction f > 0: move round(f * n_c) training images of each class c
// (at least one stays) to d->val, picked by a permutation keyed by (seed, c);
// the rest of d->train keeps its order. f = 0 changes nothing. 0 after an error
// line when the split would leave no validation image.
int dataset_hold_out_val(Dataset *d, double fraction, uint64_t seed);
// d with its val images as the test split (shares d's memory; never freed):
// for evaluating on the held-out images with the test-time pipeline.
Dataset dataset_val_view(const Dataset *d);

// Decode + augment one image into out [3, crop, crop], normalised.
// train: resize → random crop → flip, keyed by (seed, epoch, sample); test: resize → centre crop.
// 0 after an error line naming the file.
int image_load(const char *path, const DataConfig *cfg, bool train, uint64_t seed, int epoch,
               int sample, float *out);
// The same without the error line: 0 with the reason in why[n] (the loader adds its hint).
int image_load_why(const char *path, const DataConfig *cfg, bool train, uint64_t seed, int epoch, int sample,
                   float *out, char *why, size_t n);

// Check that path is a regular file that decodes as JPEG/PNG, taller than
// banner_px (dataset check: no error line; the reason goes to why[n]). 1 if good.
int image_probe(const char *path, int banner_px, char *why, size_t n);

typedef struct Loader Loader;
#define LOADER_INTERRUPTED (-2)   // loader_next: gave up on a blocked worker after a stop request
// train: shuffled (keyed by seed, epoch), last partial batch dropped; test: in order, last kept.
Loader *loader_create(const Dataset *d, const DataConfig *cfg, bool train, int batch, uint64_t seed);
int loader_num_batches(const Loader *l);
// Host memory a loader of this batch holds, for memory plans: with workers its RING batches in
// flight and, per worker, one image being decoded (its file, pixels and resized RGB, counted as
// a source about data.resize wide: an estimate, a larger photo takes more while it decodes);
// without workers that one image.
size_t loader_plan_bytes(const DataConfig *cfg, int batch);
// Data parallelism: this process (rank of world) takes blocks of `group`
// consecutive batches, block i*world + rank of the split (a step's micro-batches
// on rank r are the global micro-batches step*group*world + r*group + k), so the
// ranks together see exactly the batches one process sees. Training keeps whole
// steps only; test batches are dealt out all. Call before loader_start, whose
// `start` then counts this process's batches; loader_num_batches counts them too.
void loader_set_shard(Loader *l, int rank, int world, int group);
// Begin an epoch at batch index `start` (resume). Prefetching starts here.
void loader_start(Loader *l, int epoch, int start);
// Next batch: images [batch, 3, crop, crop], labels [batch], ids [batch] (sample ids).
// Returns rows filled (0 at epoch end), -1 after an error line (a bad image: a test
// image always, a training one unless data.skip_bad), or LOADER_INTERRUPTED.
int loader_next(Loader *l, float *images, int *labels, int *ids);
int loader_skipped(const Loader *l);   // bad training images skipped so far (data.skip_bad)
void loader_set_skipped(Loader *l, int n);   // a resumed run's count so far (its checkpoint's)
// The trainer's SIGINT/SIGTERM flag. Once *flag is non-zero, a wait for the
// workers lasts at most ~2 s more; then loader_next returns LOADER_INTERRUPTED
// after an error line (a worker hangs in a read) and every later call fails.
// Healthy workers deliver within that time, so a stop still ends a whole step.
void loader_set_stop_flag(Loader *l, const volatile sig_atomic_t *flag);
// Stops the workers; returns within ~3 s even if one is blocked in a read (that
// one is left behind, and l is then not freed: the process is ending).
void loader_destroy(Loader *l);
// Tests only: decode with fn instead of image_load_why (NULL restores it).
typedef int (*ImageLoadFn)(const char *path, const DataConfig *cfg, bool train, uint64_t seed, int epoch, int sample,
                           float *out, char *why, size_t n);
void loader_set_image_fn(Loader *l, ImageLoadFn fn);

// Synthetic fine-grained set in CUB layout (MODEL.md §7). 0 after an error line.
int synthetic_write(const char *dir, int classes, int per_class, int test_per_class, int img, uint64_t seed);

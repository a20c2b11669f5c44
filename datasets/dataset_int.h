// dataset_int.h: helpers shared by the dataset readers (not part of the public API).
#pragma once
#include <stdbool.h>
#include "dataset.h"
#include "sha256.h"

// Index file as lines; the bytes also feed the fingerprint.
typedef struct {
    char path[DCAL_PATH_MAX];
    char *text;                // owned, NUL-terminated, lines split in place
    char **line;               // n line starts (no '\n'; '\r' stripped)
    int n;
} TextFile;

// Read path into tf and hash its bytes into h. Missing → one line naming the file,
// the layout `layout` and where the dataset comes from (`source`).
int tf_read(TextFile *tf, const char *path, Sha256 *h, const char *layout, const char *source);
void tf_free(TextFile *tf);
bool tf_blank(const char *line);   // empty or a '#' comment

// Append an item (path = root/rel) to a growable list.
void ds_push(DatasetItem **v, int *n, int *cap, const char *root, const char *rel, int label);
// Stat every image and finish the fingerprint: the sorted "relpath\tsize\n" list.
// A missing image is an error unless skip_bad (then its size is -1).
int ds_finish(Dataset *d, Sha256 *h, bool skip_bad);

int cub_open(Dataset *d, const DataConfig *cfg, Sha256 *h);
int cars_open(Dataset *d, const DataConfig *cfg, Sha256 *h);
int aircraft_open(Dataset *d, const DataConfig *cfg, Sha256 *h);

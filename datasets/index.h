// index.h: what the readers (cub.c, cars.c, aircraft.c) build an index with —
// index files as lines, the growable item lists, the fingerprint. Private to
// datasets/. Depends on nothing in datasets/ but dataset.h's types.
#pragma once
#include <stdbool.h>
#include "datasets/dataset.h"
#include "core/sha256.h"

// One index being read: the dataset to fill (name and root set, lists empty),
// the fingerprint every index file's bytes go into, and the registry row's
// layout and source, which a "file missing" error names.
typedef struct {
    Dataset *d;
    Sha256 *h;
    const char *layout, *source;
} IndexBuild;

// A reader fills b->d's class names and train/test lists. 0 after an error line.
typedef int (*IndexReader)(IndexBuild *b);

// Index file as lines; the bytes also feed the fingerprint.
typedef struct {
    char path[DCAL_PATH_MAX + 64];
    char *text;                // owned, NUL-terminated, lines split in place
    char **line;               // n line starts (no '\n'; '\r' stripped)
    int n;
} TextFile;

// Read root/rel into tf and hash its bytes. Missing → one line naming the file,
// the layout and where the dataset comes from.
int tf_read(TextFile *tf, const IndexBuild *b, const char *rel);
void tf_free(TextFile *tf);
bool tf_blank(const char *line);   // empty or a '#' comment

// d->class_names from root/rel: one name per non-blank line, in class-id order.
int ds_read_class_names(IndexBuild *b, const char *rel);
// Append an item (path = root/rel) to a growable list.
void ds_push(DatasetItem **v, int *n, int *cap, const char *root, const char *rel, int label);
// Stat every image and finish the fingerprint: the sorted "relpath\tsize\n" list.
// A missing image is an error unless skip_bad (then its size is -1).
int ds_finish(Dataset *d, Sha256 *h, bool skip_bad);

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
// A path listed in an index file must stay inside its root (`within` names it for
// the message): relative and without a ".." component. Otherwise one line
// "file:line: path 'rel' ..." and 0. Symbolic links are not followed (users link
// data folders into the root); forbidding ".." outright, not just a lexical
// escape, is what keeps "link/../x" from leaving through such a link.
int ds_check_rel(const char *file, int line, const char *rel, const char *within);
// "a FIFO", "a directory", "a device" or "a special file": what a listed image is instead of a regular file.
const char *ds_file_kind(unsigned mode);
// Parse a whole decimal integer in [lo, hi]: digits only (no sign, no spaces,
// no trailing text). 0 if s is anything else.
int ds_parse_int(const char *s, long lo, long hi, long *out);

// What ds_finish tolerates (a missing or not-regular image file): nothing; training
// images only (data.skip_bad: the loader skips them; test images never, since
// skipping one would change the reported accuracy); or every image (tools that
// check each image themselves: dataset check, audit). A tolerated file's size is -1.
typedef enum { DS_TOLERATE_NONE, DS_TOLERATE_TRAIN, DS_TOLERATE_ALL } DsTolerate;
// Stat every image and finish the fingerprint: the sorted "relpath\tsize\n" list.
int ds_finish(Dataset *d, Sha256 *h, DsTolerate tol);

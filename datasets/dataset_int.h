// dataset_int.h: helpers shared by the dataset readers (not part of the public API).
#pragma once
#include <stdbool.h>
#include "datasets/dataset.h"
#include "core/sha256.h"

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

// d->class_names from root/rel: one name per non-blank line, in class-id order.
int ds_read_class_names(Dataset *d, const char *rel, Sha256 *h, const char *layout, const char *source);
// Append an item (path = root/rel) to a growable list.
void ds_push(DatasetItem **v, int *n, int *cap, const char *root, const char *rel, int label);
// Stat every image and finish the fingerprint: the sorted "relpath\tsize\n" list.
// A missing image is an error unless skip_bad (then its size is -1).
int ds_finish(Dataset *d, Sha256 *h, bool skip_bad);

int cub_open(Dataset *d, const DataConfig *cfg, Sha256 *h);
int cars_open(Dataset *d, const DataConfig *cfg, Sha256 *h);
int aircraft_open(Dataset *d, const DataConfig *cfg, Sha256 *h);

// Where each dataset comes from and the layout dcal reads (datasets/README.md).
#define CUB_LAYOUT "ROOT/{classes.txt, images.txt, image_class_labels.txt, train_test_split.txt, images/}"
#define CUB_SOURCE "https://data.caltech.edu/records/65de6-vp158 (CUB_200_2011.tgz; synthetic: 'dcal make-synthetic --out DIR')"
#define CARS_LAYOUT "ROOT/{class_names.txt, cars_train.csv, cars_test.csv} with lines 'relpath,class_id' (1-based), see datasets/README.md"
#define CARS_SOURCE "https://ai.stanford.edu/~jkrause/cars/car_dataset.html (or a mirror of cars_train/, cars_test/ and the devkit)"
#define AIR_LAYOUT "ROOT/data/{variants.txt, images_variant_trainval.txt, images_variant_test.txt, images/*.jpg} (fgvc-aircraft-2013b)"
#define AIR_SOURCE "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ (fgvc-aircraft-2013b.tar.gz)"

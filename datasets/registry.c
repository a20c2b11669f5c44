// registry.c: the dataset table. Adding a dataset is one row here plus a
// reader (datasets/README.md); config, compliance, `dataset check` and
// dataset_open all read their facts from this table.
#include <stdio.h>
#include <string.h>
#include "datasets/readers.h"
#include "datasets/registry_int.h"

// The synthetic set is written in CUB's layout (MODEL.md §7), so the two rows share it.
#define CUB_LAYOUT "ROOT/{classes.txt, images.txt, image_class_labels.txt, train_test_split.txt, images/}"
#define CUB_SOURCE "https://data.caltech.edu/records/65de6-vp158 (CUB_200_2011.tgz; synthetic: 'dcal make-synthetic --out DIR')"

typedef struct {
    DatasetInfo info;
    IndexReader read;
} Row;

static const Row rows[] = {
    {{"cub", "CUB-200-2011", 200, 5994, 5794, 0, CUB_LAYOUT, CUB_SOURCE}, cub_read},
    {{"cars", "Stanford Cars", 196, 8144, 8041, 0,
      "ROOT/{class_names.txt, cars_train.csv, cars_test.csv} with lines 'relpath,class_id' (1-based), see datasets/README.md",
      "https://ai.stanford.edu/~jkrause/cars/car_dataset.html (or a mirror of cars_train/, cars_test/ and the devkit)"},
     cars_read},
    {{"aircraft", "FGVC-Aircraft 2013b (variants)", 100, 6667, 3333, 20,
      "ROOT/data/{variants.txt, images_variant_trainval.txt, images_variant_test.txt, images/*.jpg} (fgvc-aircraft-2013b)",
      "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ (fgvc-aircraft-2013b.tar.gz)"},
     aircraft_read},
    {{"synthetic", "synthetic fine-grained set (MODEL.md §7)", 0, 0, 0, 0, CUB_LAYOUT, CUB_SOURCE}, cub_read},
};
enum { NROWS = (int)(sizeof rows / sizeof rows[0]) };

const DatasetInfo *dataset_info(const char *name) {
    for (int i = 0; name && i < NROWS; i++)
        if (!strcmp(name, rows[i].info.name)) return &rows[i].info;
    return NULL;
}

int dataset_info_count(void) { return NROWS; }

const DatasetInfo *dataset_info_at(int i) { return i >= 0 && i < NROWS ? &rows[i].info : NULL; }

const char *dataset_names(void) { return DATASET_NAMES; }

const char *dataset_names_text(void) {
    // Built per call: error paths only, and thread-local so no caller sees another's half-written text.
    static _Thread_local char buf[256];
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < NROWS && len < sizeof buf; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", i == 0 ? "" : i == NROWS - 1 ? " or " : ", ",
                                rows[i].info.name);
    return buf;
}

IndexReader dataset_reader(const DatasetInfo *info) {
    for (int i = 0; i < NROWS; i++)
        if (info == &rows[i].info) return rows[i].read;
    return NULL;
}

// registry.h: every fact about each dataset dcal knows — name, class count,
// official split sizes, banner, on-disk layout, source — in one table
// (registry.c). A leaf header (it includes nothing), so config/ and
// compliance/ can ask for these facts without seeing the readers.
#pragma once

// The names, '|'-separated, in table order, for static tables that cannot call
// dataset_names() (config's field table). unit_dataset checks it against the rows.
#define DATASET_NAMES "cub|cars|aircraft|synthetic"

typedef struct DatasetInfo {
    const char *name;          // --dataset NAME / data.dataset
    const char *title;         // for people
    int num_classes;           // official class count; 0 = from the generator (synthetic)
    int n_train, n_test;       // official split sizes; 0 = any
    int banner_px;             // bottom rows to drop before the resize (MODEL.md §5: aircraft 20)
    const char *layout;        // the files dcal reads under --data-root (datasets/README.md)
    const char *source;        // where to get the data
} DatasetInfo;

const DatasetInfo *dataset_info(const char *name);   // NULL if unknown
int dataset_info_count(void);
const DatasetInfo *dataset_info_at(int i);           // 0 <= i < count; row 0 (cub) is the default
const char *dataset_names(void);                     // DATASET_NAMES: "cub|cars|aircraft|synthetic"
const char *dataset_names_text(void);                // "cub, cars, aircraft or synthetic"

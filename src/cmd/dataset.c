// dataset.c: `dcal dataset check` — open a dataset, check the official
// split sizes, and decode every image once, before a long run finds a bad one.
// Names, official sizes and the banner come from the registry (datasets/registry.h).
#include <stdio.h>
#include <string.h>
#include "cmd/cmd.h"
#include "core/common.h"
#include "config/config.h"
#include "datasets/dataset.h"
#include "datasets/registry.h"
#include "stb_image.h"   // declarations only; image.c holds the implementation

static void usage(FILE *f) {
    fprintf(f, "usage: dcal dataset check --dataset %s --data-root DIR\n\n"
               "Open the dataset index, check the official split sizes, decode every image, and print a\n"
               "summary with the fingerprint. Exit 1 on any problem (one line per problem).\n"
               "Official train/test/classes:",
            dataset_names());
    const char *sep = " ";
    for (int i = 0; i < dataset_info_count(); i++) {
        const DatasetInfo *in = dataset_info_at(i);
        if (!in->n_train) continue;   // no official split (synthetic)
        fprintf(f, "%s%s %d/%d/%d", sep, in->name, in->n_train, in->n_test, in->num_classes);
        sep = ", ";
    }
    fprintf(f, ".\n");
}

// --dataset and --data-root of `dataset check` (args from argv[2]). -1 when both
// are set and the name is in the registry; else the exit code, after a message.
static int parse_check(int argc, char **argv, const char **name, const char **root) {
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return DCAL_EXIT_OK; }
        const char **dst = !strcmp(a, "--dataset") ? name : !strcmp(a, "--data-root") ? root : NULL;
        if (!dst) { dcal_err("dataset check: unknown option '%s'", a); usage(stderr); return DCAL_EXIT_USAGE; }
        if (i + 1 >= argc) { dcal_err("dataset check: %s needs a value", a); usage(stderr); return DCAL_EXIT_USAGE; }
        *dst = argv[++i];
    }
    if (!*name || !*root) { dcal_err("dataset check: --dataset and --data-root are required"); usage(stderr); return DCAL_EXIT_USAGE; }
    if (!dataset_info(*name)) {
        dcal_err("dataset check: unknown dataset '%s' (%s)", *name, dataset_names_text());
        return DCAL_EXIT_USAGE;
    }
    return -1;
}

// 1 after an error line if d's sizes differ from the registry's official ones (0 = any).
static int check_official(const Dataset *d, const DatasetInfo *in) {
    if ((!in->n_train || d->n_train == in->n_train) && (!in->n_test || d->n_test == in->n_test) &&
        (!in->num_classes || d->num_classes == in->num_classes))
        return 0;
    dcal_err("%s: %s should have %d train / %d test images and %d classes, found %d / %d / %d (incomplete copy?)",
             d->root, in->name, in->n_train, in->n_test, in->num_classes, d->n_train, d->n_test, d->num_classes);
    return 1;
}

// Decode every image; one error line per bad one (the first 20, then a count). Returns the bad count.
static int check_images(const Dataset *d, int banner_px) {
    int n = d->n_train + d->n_test;
    char (*why)[160] = xcalloc((size_t)n, sizeof *why);   // per image: empty = fine
    // Decode in parallel; report in index order so the output does not depend on threads.
    #pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < n; i++) {
        const char *p = i < d->n_train ? d->train[i].path : d->test[i - d->n_train].path;
        image_probe(p, banner_px, why[i], sizeof why[i]);   // regular files only, the same checks as training
    }
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (why[i][0]) {
            if (bad < 20) dcal_err("%s: %s", i < d->n_train ? d->train[i].path : d->test[i - d->n_train].path, why[i]);
            bad++;
        }
    if (bad > 20) dcal_err("%s: ... and %d more bad images (%d in all)", d->root, bad - 20, bad);
    free(why);
    return bad;
}

int cmd_dataset(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        if (argc < 2) { usage(stderr); return DCAL_EXIT_USAGE; }
        usage(stdout);
        return DCAL_EXIT_OK;
    }
    if (strcmp(argv[1], "check")) {
        dcal_err("dataset: unknown subcommand '%s' (only 'check')", argv[1]);
        usage(stderr);
        return DCAL_EXIT_USAGE;
    }
    const char *name = NULL, *root = NULL;
    int rc = parse_check(argc, argv, &name, &root);
    if (rc >= 0) return rc;
    const DatasetInfo *info = dataset_info(name);
    DcalConfig cfg;
    config_defaults(&cfg);
    DataConfig *dc = &cfg.data;
    snprintf(dc->dataset, sizeof dc->dataset, "%s", name);
    snprintf(dc->root, sizeof dc->root, "%s", root);
    dc->banner_px = info->banner_px;   // MODEL.md §5; configs/fgvc/aircraft.yaml says the same
    Dataset d;
    if (!dataset_open_lenient(&d, dc)) return DCAL_EXIT_FAIL;   // bad images pass; check_images reports each
    int fail = check_official(&d, info);
    int bad = check_images(&d, dc->banner_px);
    printf("dataset:     %s\nroot:        %s\nclasses:     %d\ntrain:       %d\ntest:        %d\nfingerprint: %s\n"
           "images:      %d checked, %d bad\n", d.name, d.root, d.num_classes, d.n_train, d.n_test, d.fingerprint,
           d.n_train + d.n_test, bad);
    dataset_free(&d);
    return fail || bad ? DCAL_EXIT_FAIL : DCAL_EXIT_OK;
}

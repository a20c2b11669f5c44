// dataset.c: `dcal dataset check` — open a dataset, check the official
// split sizes, and decode every image once, before a long run finds a bad one.
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "cmd/cmd.h"
#include "core/common.h"
#include "config/config.h"
#include "datasets/dataset.h"
#include "stb_image.h"   // declarations only; image.c holds the implementation

static void usage(FILE *f) {
    fprintf(f, "usage: dcal dataset check --dataset cub|cars|aircraft|synthetic --data-root DIR\n\n"
               "Open the dataset index, check the official split sizes (CUB 5994/5794/200, Cars 8144/8041/196,\n"
               "Aircraft 6667/3333/100), decode every image, and print a summary with the fingerprint.\n"
               "Exit 1 on any problem (one line per problem).\n");
}

// Official split sizes; synthetic has none.
static const struct { const char *name; int train, test, classes; } official[] = {
    {"cub", 5994, 5794, 200}, {"cars", 8144, 8041, 196}, {"aircraft", 6667, 3333, 100},
};

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
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return DCAL_EXIT_OK; }
        const char **dst = !strcmp(a, "--dataset") ? &name : !strcmp(a, "--data-root") ? &root : NULL;
        if (!dst) { dcal_err("dataset check: unknown option '%s'", a); usage(stderr); return DCAL_EXIT_USAGE; }
        if (i + 1 >= argc) { dcal_err("dataset check: %s needs a value", a); usage(stderr); return DCAL_EXIT_USAGE; }
        *dst = argv[++i];
    }
    if (!name || !root) { dcal_err("dataset check: --dataset and --data-root are required"); usage(stderr); return DCAL_EXIT_USAGE; }
    if (strcmp(name, "cub") && strcmp(name, "cars") && strcmp(name, "aircraft") && strcmp(name, "synthetic")) {
        dcal_err("dataset check: unknown dataset '%s' (cub, cars, aircraft or synthetic)", name);
        return DCAL_EXIT_USAGE;
    }
    DcalConfig cfg;
    config_defaults(&cfg);
    DataConfig *dc = &cfg.data;
    snprintf(dc->dataset, sizeof dc->dataset, "%s", name);
    snprintf(dc->root, sizeof dc->root, "%s", root);
    if (!strcmp(name, "aircraft")) dc->banner_px = 20;   // SPEC §5; configs/fgvc/aircraft.yaml says the same
    dc->skip_bad = true;   // let open pass missing images; the loop below reports each one
    Dataset d;
    if (!dataset_open(&d, dc)) return DCAL_EXIT_FAIL;
    int fail = 0;
    for (size_t k = 0; k < sizeof official / sizeof official[0]; k++)
        if (!strcmp(name, official[k].name) &&
            (d.n_train != official[k].train || d.n_test != official[k].test || d.num_classes != official[k].classes)) {
            dcal_err("%s: %s should have %d train / %d test images and %d classes, found %d / %d / %d (incomplete copy?)",
                     d.root, name, official[k].train, official[k].test, official[k].classes, d.n_train, d.n_test,
                     d.num_classes);
            fail = 1;
        }
    int n = d.n_train + d.n_test;
    char (*why)[160] = xcalloc((size_t)n, sizeof *why);   // per image: empty = fine
    // Decode in parallel; report in index order so the output does not depend on threads.
    #pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < n; i++) {
        const char *p = i < d.n_train ? d.train[i].path : d.test[i - d.n_train].path;
        struct stat sb;
        int w, h, c;
        if (stat(p, &sb) != 0) { snprintf(why[i], sizeof why[i], "missing"); continue; }
        if (!stbi_info(p, &w, &h, &c)) { snprintf(why[i], sizeof why[i], "not a JPEG/PNG (%s)", stbi_failure_reason()); continue; }
        if (w > 8192 || h > 8192) { snprintf(why[i], sizeof why[i], "%dx%d is too large (max side 8192)", w, h); continue; }
        unsigned char *px = stbi_load(p, &w, &h, &c, 3);
        if (!px) { snprintf(why[i], sizeof why[i], "cannot decode (%s)", stbi_failure_reason()); continue; }
        stbi_image_free(px);
        if (h <= dc->banner_px) snprintf(why[i], sizeof why[i], "only %d px tall (banner %d px)", h, dc->banner_px);
    }
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (why[i][0]) {
            if (bad < 20) dcal_err("%s: %s", i < d.n_train ? d.train[i].path : d.test[i - d.n_train].path, why[i]);
            bad++;
        }
    if (bad > 20) dcal_err("%s: ... and %d more bad images (%d in all)", d.root, bad - 20, bad);
    free(why);
    printf("dataset:     %s\nroot:        %s\nclasses:     %d\ntrain:       %d\ntest:        %d\nfingerprint: %s\n"
           "images:      %d checked, %d bad\n", d.name, d.root, d.num_classes, d.n_train, d.n_test, d.fingerprint, n, bad);
    dataset_free(&d);
    return fail || bad ? DCAL_EXIT_FAIL : DCAL_EXIT_OK;
}

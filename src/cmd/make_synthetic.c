// make_synthetic.c: `dcal make-synthetic` — write the synthetic
// fine-grained set (MODEL.md §7) in CUB layout, readable with --dataset synthetic.
#include <stdio.h>
#include <string.h>
#include "cmd/cli.h"
#include "cmd/cmd.h"
#include "core/common.h"
#include "datasets/dataset.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dcal make-synthetic --out DIR [--classes C] [--per-class N] [--test-per-class M] [--img S] [--seed K]\n\n"
               "Write a synthetic fine-grained dataset in CUB layout (MODEL.md §7): classes differ only in the\n"
               "shape and colour of one small mark on a cluttered background.\n\n"
               "  --out DIR             output directory (created)\n"
               "  --classes C           number of classes, 2..32 (default 10)\n"
               "  --per-class N         train images per class (default 30)\n"
               "  --test-per-class M    test images per class (default 10)\n"
               "  --img S               image side in pixels (default 64)\n"
               "  --seed K              generator seed (default 0)\n"
               "  --help                this text\n");
}

static int parse_ll(const char *flag, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) {
        dcal_err("make-synthetic: %s expects an integer in [%lld, %lld], got '%s'", flag, lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

// The command that trains on what was just written: --dataset synthetic, plus
// only what differs from configs/fgvc/synthetic.yaml (its root, its classes).
static void print_train_hint(const char *out, long long classes) {
    DcalConfig sc;
    config_defaults(&sc);
    const char *yaml = cli_dataset_config("synthetic");
    bool known = yaml && config_load(&sc, yaml);
    char root[DCAL_PATH_MAX + 16] = "", cls[64] = "";
    size_t ol = strlen(out);
    while (ol > 1 && out[ol - 1] == '/') ol--;
    if (!known || strlen(sc.data.root) != ol || strncmp(sc.data.root, out, ol))
        snprintf(root, sizeof root, " --data-root %.*s", (int)ol, out);
    if (!known || sc.model.num_classes != classes) snprintf(cls, sizeof cls, " --set model.num_classes=%lld", classes);
    printf("train on it with: dcal train --dataset synthetic%s%s\n", root, cls);
}

int cmd_make_synthetic(int argc, char **argv) {
    const char *out = NULL;
    long long classes = 10, per = 30, test = 10, img = 64, seed = 0;
    static const struct { const char *flag; long long lo, hi; } lim[] = {
        {"--classes", 2, 32}, {"--per-class", 1, 1000000}, {"--test-per-class", 1, 1000000},
        {"--img", 16, 4096}, {"--seed", 0, (long long)INT64_MAX},
    };
    long long *dst[] = {&classes, &per, &test, &img, &seed};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return DCAL_EXIT_OK; }
        char flag[64];
        const char *eq = strchr(a, '=');
        size_t fl = eq ? (size_t)(eq - a) : strlen(a);
        snprintf(flag, sizeof flag, "%.*s", (int)fl, a);
        int k = -1;
        for (int j = 0; j < 5; j++)
            if (!strcmp(flag, lim[j].flag)) k = j;
        if (k < 0 && strcmp(flag, "--out")) {
            dcal_err("make-synthetic: unknown option '%s'", a);
            usage(stderr);
            return DCAL_EXIT_USAGE;
        }
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else {
            dcal_err("make-synthetic: %s needs a value", flag);
            usage(stderr);
            return DCAL_EXIT_USAGE;
        }
        if (k < 0) out = val;
        else if (!parse_ll(flag, val, lim[k].lo, lim[k].hi, dst[k])) return DCAL_EXIT_USAGE;
    }
    if (!out || !*out) {
        dcal_err("make-synthetic: --out DIR is required");
        usage(stderr);
        return DCAL_EXIT_USAGE;
    }
    double t0 = now_seconds();
    if (!synthetic_write(out, (int)classes, (int)per, (int)test, (int)img, (uint64_t)seed)) return DCAL_EXIT_FAIL;
    printf("wrote %s: %lld classes, %lld train + %lld test images of %lldx%lld (seed %lld) in %.1f s\n", out, classes,
           classes * per, classes * test, img, img, seed, now_seconds() - t0);
    print_train_hint(out, classes);
    return DCAL_EXIT_OK;
}

// report.c: `dcal report RUN_DIR` — report.html from a run directory's files
// (src/run/report.c). `dcal train` writes it too when a run finishes.
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "cmd/cli.h"
#include "cmd/cmd.h"
#include "core/common.h"
#include "run/report.h"

static const char help[] =
    "usage: dcal report RUN_DIR\n\n"
    "Write RUN_DIR/report.html: one self-contained page (inline SVG, no script, no network) with the\n"
    "loss and learning-rate curves, SA / GLCA / SA+GLCA test accuracy per epoch, throughput and\n"
    "memory, the attention overlays (RUN_DIR/overlay_*.png, from 'dcal explain'), the compliance\n"
    "table and the manifest. Works on a run still going or stopped. A bare NAME means runs/NAME.\n";

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int cmd_report(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(help, stdout); return DCAL_EXIT_OK; }
        if (argv[i][0] == '-' && argv[i][1]) { dcal_err("report: unknown option '%s' (see 'dcal report --help')", argv[i]); return DCAL_EXIT_USAGE; }
        if (dir) { dcal_err("report: one run directory expected, got '%s' and '%s'", dir, argv[i]); return DCAL_EXIT_USAGE; }
        dir = argv[i];
    }
    if (!dir) { dcal_err("report: usage: dcal report RUN_DIR (e.g. runs/synthetic)"); return DCAL_EXIT_USAGE; }
    char runs[DCAL_PATH_MAX];
    if (!is_dir(dir) && !strchr(dir, '/') && snprintf(runs, sizeof runs, "runs/%s", dir) < (int)sizeof runs && is_dir(runs))
        dir = runs;
    if (!is_dir(dir)) { dcal_err("report: %s: no such run directory (give runs/NAME)", dir); return DCAL_EXIT_FAIL; }
    char out[DCAL_PATH_MAX + 32];
    if (!report_write(dir, out, sizeof out)) return DCAL_EXIT_FAIL;
    printf("dcal: wrote %s\n", out);
    return DCAL_EXIT_OK;
}

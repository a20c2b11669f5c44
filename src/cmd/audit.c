// audit.c: `dcal audit RUN_DIR` — argument parsing; the checks are in src/run/audit.c.
#include <stdio.h>
#include <string.h>
#include "cmd/cmd.h"
#include "core/common.h"
#include "run/audit.h"
#include "train/checkpoint.h"

int cmd_audit(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: dcal audit RUN_DIR\n\n"
                   "Re-check a run directory: manifest.json parses; config.yaml loads and matches the manifest's\n"
                   "sha256; the compliance report regenerates identically with no undeclared FAIL; every\n"
                   "*.safetensors checkpoint matches the model of config.yaml (every tensor's name, shape, dtype),\n"
                   "its params_sha256 and adam_sha256 and holds sane metadata; pretrained/init files still\n"
                   "hash as recorded (WARN if gone); metrics.jsonl lines are JSON objects with increasing steps.\n"
                   "Prints one line per check; exits 1 if any check FAILs.\n");
            return DCAL_EXIT_OK;
        }
        if (argv[i][0] == '-' && argv[i][1]) { dcal_err("audit: unknown option '%s' (see 'dcal audit --help')", argv[i]); return DCAL_EXIT_USAGE; }
        if (dir) { dcal_err("audit: one run directory expected, got '%s' and '%s'", dir, argv[i]); return DCAL_EXIT_USAGE; }
        dir = argv[i];
    }
    if (!dir) { dcal_err("audit: usage: dcal audit RUN_DIR"); return DCAL_EXIT_USAGE; }
    return run_audit(dir, checkpoint_verify) ? DCAL_EXIT_FAIL : DCAL_EXIT_OK;
}

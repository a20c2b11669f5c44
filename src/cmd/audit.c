// audit.c: `dcal audit [--replay K [--data-root DIR]] RUN_DIR` — argument
// parsing; the checks are in src/run/audit.c, the replay in src/train/replay.c.
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "cmd/cli.h"
#include "cmd/cmd.h"
#include "core/common.h"
#include "run/audit.h"
#include "train/checkpoint.h"
#include "train/train.h"

static const char help[] =
    "usage: dcal audit RUN_DIR   (or a run name: runs/NAME)\n"
    "       dcal audit --replay K [--data-root DIR] RUN_DIR\n\n"
    "Re-check a run directory: manifest.json parses; config.yaml loads and matches the manifest's\n"
    "sha256; the compliance report regenerates identically with no undeclared FAIL; every\n"
    "*.safetensors checkpoint matches the model of config.yaml (every tensor's name, shape, dtype),\n"
    "its params_sha256 and adam_sha256 and holds sane metadata; pretrained/init files still\n"
    "hash as recorded (WARN if gone); metrics.jsonl lines are JSON objects with increasing steps;\n"
    "steps.tsv is well-formed and agrees with metrics.jsonl.\n"
    "Prints one line per check; exits 1 if any check FAILs.\n\n"
    "  --replay K       then re-execute the run's first K optimizer steps from its recorded config,\n"
    "                   seed, starting weights and dataset (nothing is written into RUN_DIR) and\n"
    "                   compare every value with RUN_DIR/steps.tsv bit for bit; the first step that\n"
    "                   differs fails the audit. Bitwise equality holds on the run's machine kind\n"
    "                   (the manifest's backend_describe: CPU model, OpenMP threads, OpenBLAS; GPU\n"
    "                   model and libraries); elsewhere it reports the largest relative difference\n"
    "                   and gives no verdict (exit 0).\n"
    "  --data-root DIR  the run's dataset is here now (its fingerprint must still match)\n";

typedef struct {
    const char *dir, *data_root;
    long long replay;   // 0: no replay
} AuditArgs;

// A step count: decimal, 1 .. 10^12.
static int parse_steps(const char *s, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < 1 || v > 1000000000000LL || s[0] == '+' || s[0] == ' ') return 0;
    *out = v;
    return 1;
}

// DCAL_EXIT_OK, CLI_HELP or DCAL_EXIT_USAGE (after the message).
static int parse_args(int argc, char **argv, AuditArgs *a) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) { fputs(help, stdout); return CLI_HELP; }
        if (!strcmp(arg, "--replay") || !strcmp(arg, "--data-root")) {
            if (i + 1 == argc) { dcal_err("audit: %s needs a value (see 'dcal audit --help')", arg); return DCAL_EXIT_USAGE; }
            const char *v = argv[++i];
            if (arg[2] == 'd') a->data_root = v;
            else if (!parse_steps(v, &a->replay)) {
                dcal_err("audit: --replay '%s': expected a number of optimizer steps (1 or more)", v);
                return DCAL_EXIT_USAGE;
            }
            continue;
        }
        if (arg[0] == '-' && arg[1]) { dcal_err("audit: unknown option '%s' (see 'dcal audit --help')", arg); return DCAL_EXIT_USAGE; }
        if (a->dir) { dcal_err("audit: one run directory expected, got '%s' and '%s'", a->dir, arg); return DCAL_EXIT_USAGE; }
        a->dir = arg;
    }
    if (!a->dir) { dcal_err("audit: usage: dcal audit [--replay K [--data-root DIR]] RUN_DIR"); return DCAL_EXIT_USAGE; }
    if (a->data_root && !a->replay) { dcal_err("audit: --data-root is for --replay"); return DCAL_EXIT_USAGE; }
    return DCAL_EXIT_OK;
}

// The run's config as a resume would resolve it (its config.yaml; data.root may move), then the replay.
static int replay(const AuditArgs *a) {
    char set[DCAL_PATH_MAX + 16];
    const char *sets[1] = {set};
    snprintf(set, sizeof set, "data.root=%s", a->data_root ? a->data_root : "");
    ConfigRequest rq = {.who = "audit --replay", .resume_dir = a->dir, .sets = sets, .n_sets = a->data_root ? 1 : 0,
                        .device_facts = cli_device_facts, .training = true};
    static ResolvedConfig r;   // large; see cmd/train.c
    if (!config_resolve(&rq, &r)) return DCAL_EXIT_FAIL;
    return train_replay(&r.cfg, r.run_dir, a->replay);
}

// RUN as given when it is a directory; a plain name also finds runs/NAME (as
// 'dcal train --resume' does). 0 after one line when neither exists.
static int find_run_dir(AuditArgs *a, char *buf, size_t cap) {
    struct stat sb;
    if (stat(a->dir, &sb) == 0 && S_ISDIR(sb.st_mode)) return 1;
    DcalConfig d;
    config_defaults(&d);   // train.out_dir's default: where runs go
    snprintf(buf, cap, "%s/%s", d.train.out_dir, a->dir);
    if (!strchr(a->dir, '/') && stat(buf, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        a->dir = buf;
        return 1;
    }
    if (strchr(a->dir, '/')) dcal_err("audit: %s: no such run directory", a->dir);
    else dcal_err("audit: %s: no such run (neither ./%s nor %s is a directory)", a->dir, a->dir, buf);
    return 0;
}

int cmd_audit(int argc, char **argv) {
    AuditArgs a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc == CLI_HELP) return DCAL_EXIT_OK;
    if (rc != DCAL_EXIT_OK) return rc;
    char dir[DCAL_PATH_MAX + 16];
    if (!find_run_dir(&a, dir, sizeof dir)) return DCAL_EXIT_FAIL;
    int fails = run_audit(a.dir, checkpoint_verify);
    if (!a.replay) return fails ? DCAL_EXIT_FAIL : DCAL_EXIT_OK;
    rc = replay(&a);
    return rc == DCAL_EXIT_OK && fails ? DCAL_EXIT_FAIL : rc;
}

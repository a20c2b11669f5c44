// train.c: `dcal train` — resolve the config, gate on the paper's rules,
// then run the trainer (src/train/).
#include <string.h>
#include <unistd.h>
#include "cmd/cli.h"
#include "cmd/cmd.h"
#include "compliance/compliance.h"
#include "train/train.h"

// Keys that may change on --resume without changing what is computed.
static const char *resume_keys[] = {"train.max_steps=", "data.root=", "data.workers=", "train.threads=",
                                    "train.eval_every=", NULL};

static int reload_for_resume(CliCommon *cli, const char *run, char *dir, size_t cap) {
    DcalConfig *c = &cli->cfg;
    char path[2 * DCAL_PATH_MAX + 32];
    snprintf(dir, cap, "%s", run);
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    if (access(path, R_OK) != 0) {   // a bare run name: look under train.out_dir
        snprintf(dir, cap, "%s/%s", c->train.out_dir, run);
        snprintf(path, sizeof path, "%s/config.yaml", dir);
        if (access(path, R_OK) != 0) {
            dcal_err("--resume %s: no run there (expected %s/config.yaml or %s/config.yaml)", run, run, dir);
            return 0;
        }
    }
    char sets[DCAL_MAX_OVERRIDES][256];
    int n = c->n_overrides;
    memcpy(sets, c->overrides, sizeof sets);
    config_defaults(c);
    if (!config_load(c, path)) return 0;
    for (int i = 0; i < n; i++) {
        int ok = 0;
        for (const char **k = resume_keys; *k; k++) ok |= !strncmp(sets[i], *k, strlen(*k));
        if (!ok) {
            dcal_err("--resume: --set %s would change the run; only train.max_steps, data.root, data.workers, "
                     "train.threads and train.eval_every may change on resume", sets[i]);
            return 0;
        }
        if (!config_set(c, sets[i])) return 0;
    }
    return config_finalize(c);
}

int cmd_train(int argc, char **argv) {
    const char *resume = NULL, *init = NULL, *dump = NULL, *pretrained = NULL, *max_memory = NULL;
    const CliOpt extra[] = {
        {"--resume", "RUN", "continue a stopped run (a run directory or a name under train.out_dir)", &resume, NULL},
        {"--init", "FILE", "start from these exact weights (safetensors, SPEC §6 names)", &init, NULL},
        {"--pretrained", "FILE", "timm ViT/DeiT weights (same as --set train.pretrained=FILE)", &pretrained, NULL},
        {"--dump-step", "FILE", "write the first optimizer step (inputs, pairing, selection, logits, losses, "
                                "gradients) to FILE and exit", &dump, NULL},
        {"--max-memory", "SIZE", "pick the largest micro-batch whose memory plan fits SIZE (e.g. 8G); accumulation "
                                 "keeps the effective batch", &max_memory, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    CliCommon cli;
    cli.raw = 0;
    for (int i = 1; i < argc; i++)   // on --resume the run's own config.yaml is the config
        cli.raw |= !strcmp(argv[i], "--resume") || !strncmp(argv[i], "--resume=", 9);
    int rc = cli_parse(argc, argv,
                       "Train DCAL. The paper's rules are checked first (see 'dcal verify-config'); a failing rule\n"
                       "stops the run unless the config declares it under 'deviations:' or --allow-deviation names it.\n"
                       "SIGINT/SIGTERM finish the current step, save a checkpoint and exit 0.",
                       extra, &cli);
    if (rc == CLI_HELP) return DCAL_EXIT_OK;
    if (rc != CLI_OK) return rc;
    DcalConfig *c = &cli.cfg;
    char run_dir[2 * DCAL_PATH_MAX + 2];
    if (resume && (init || dump || pretrained)) {
        dcal_err("train: --resume continues a run as it was; it cannot be combined with --init, --pretrained or --dump-step");
        return DCAL_EXIT_USAGE;
    }
    if (init && pretrained) {
        dcal_err("train: give --init or --pretrained, not both");
        return DCAL_EXIT_USAGE;
    }
    if (resume && !reload_for_resume(&cli, resume, run_dir, sizeof run_dir)) return DCAL_EXIT_FAIL;
    if (pretrained) {
        char a[DCAL_PATH_MAX + 32];
        snprintf(a, sizeof a, "train.pretrained=%s", pretrained);
        if (!config_set(c, a)) return DCAL_EXIT_FAIL;
    }
    if (!compliance_gate(c, cli.allowed, cli.n_allowed, NULL)) {
        dcal_err("train: refusing to start: the config deviates from the paper (see above; 'dcal verify-config' "
                 "shows the full table)");
        return DCAL_EXIT_FAIL;
    }
    TrainOptions o = {.resume_dir = resume ? run_dir : NULL, .init_path = init, .dump_path = dump,
                      .max_memory = max_memory, .argc = argc, .argv = argv, .n_allowed = cli.n_allowed,
                      .allowed = cli.allowed};
    return train_main(c, &o);
}

// eval.c: `dcal eval --checkpoint F` — SA, GLCA and combined top-1 on the
// test split. The model's shape and, by default, the data come from the run's
// config.yaml beside the checkpoint; --dataset/--config/--data-root choose other data. Both configs go
// through config_resolve (no gate: evaluating a deviating run is allowed).
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "train/checkpoint.h"
#include "cmd/cli.h"
#include "cmd/cmd.h"
#include "train/train.h"

// The run's config: the one the checkpoint was trained with.
static int resolve_run_config(const char *ckpt, const char *run_config, ResolvedConfig *out) {
    char path[DCAL_PATH_MAX + 64], tmp[DCAL_PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s", ckpt);
    if (run_config) snprintf(path, sizeof path, "%s", run_config);
    else snprintf(path, sizeof path, "%s/config.yaml", dirname(tmp));
    if (access(path, R_OK) != 0) {
        dcal_err("%s: no config.yaml beside the checkpoint (pass --run-config FILE)", path);
        return 0;
    }
    ConfigRequest rq = {.who = "eval", .config_path = path};
    return config_resolve(&rq, out);
}

// Build the model as trained, load the checkpoint, evaluate on the test split, print.
static int evaluate_checkpoint(const char *ckpt, const DcalConfig *run, const Backend *be, int B) {
    Dataset ds;
    if (!dataset_open(&ds, &run->data)) return DCAL_EXIT_FAIL;
    int rc = DCAL_EXIT_FAIL;
    Model m;
    if (ds.num_classes != run->model.num_classes) {
        dcal_err("%s: dataset has %d classes, the checkpoint's model %d", ds.root, ds.num_classes, run->model.num_classes);
        dataset_free(&ds);
        return rc;
    }
    if (!model_build(&m, &run->model, be)) { dataset_free(&ds); return rc; }
    EvalResult er;
    if (checkpoint_load(ckpt, &m, NULL, NULL, NULL) && model_alloc_activations(&m, B, false, false) &&
        evaluate(&m, &ds, run, &er)) {
        printf("%s on %s test split (%s, %d images):\n", ckpt, ds.name, ds.root, er.n);
        printf("  top-1 SA       %.2f%%\n  top-1 GLCA     %.2f%%\n  top-1 SA+GLCA  %.2f%%\n  mean per-class %.2f%%\n",
               100 * er.acc_sa, 100 * er.acc_glca, 100 * er.acc_combined, 100 * er.mean_class_acc);
        rc = DCAL_EXIT_OK;
    }
    model_free(&m);
    dataset_free(&ds);
    return rc;
}

// The checkpoint file: FILE as given, or a run directory's checkpoint.safetensors.
// 0 after "FILE: no such file" (before any config or dataset is opened).
static int find_checkpoint(const char *arg, char *path, size_t cap) {
    struct stat sb;
    snprintf(path, cap, "%s", arg);
    if (stat(arg, &sb) == 0 && S_ISDIR(sb.st_mode)) snprintf(path, cap, "%s/checkpoint.safetensors", arg);
    if (access(path, F_OK) == 0) return 1;
    dcal_err("%s: no such file (give a run's checkpoint, e.g. --checkpoint runs/NAME/checkpoint.safetensors)", path);
    return 0;
}

// Did the command line choose the data? --dataset, --config, --data-root or a --set data.* key.
static bool data_asked(const CliArgs *cli, int argc, char **argv, bool *root_only) {
    bool file = cli->dataset != NULL, root = false;
    for (int i = 1; i < argc; i++) file |= !strncmp(argv[i], "--config", 8);
    for (int i = 0; i < cli->n_sets; i++) {
        bool is_root = !strncmp(cli->sets[i], "data.root=", 10);
        root |= is_root;
        file |= !is_root && !strncmp(cli->sets[i], "data.", 5);
    }
    *root_only = root && !file;
    return file || root;
}

// Model and preprocessing as trained; the data as asked, else the run's own dataset.
static void choose_data(DcalConfig *run, const DcalConfig *asked, bool asked_data, bool root_only) {
    if (asked_data && !root_only) snprintf(run->data.dataset, sizeof run->data.dataset, "%s", asked->data.dataset);
    if (asked_data) snprintf(run->data.root, sizeof run->data.root, "%s", asked->data.root);
    run->data.workers = asked->data.workers;
    run->data.skip_bad = asked->data.skip_bad;
}

int cmd_eval(int argc, char **argv) {
    const char *ckpt_arg = NULL, *run_config = NULL, *batch = NULL;
    const CliOpt extra[] = {
        {"--checkpoint", "FILE", "checkpoint to evaluate (a run's checkpoint.safetensors or best.safetensors, or the "
                                 "run directory)", &ckpt_arg, NULL, NULL},
        {"--run-config", "FILE", "the config the checkpoint was trained with (default: config.yaml beside it)",
         &run_config, NULL, NULL},
        {"--batch", "B", "images per forward pass (default: the run's micro-batch)", &batch, NULL, NULL},
        {0},
    };
    CliArgs cli;
    int rc = cli_parse(argc, argv,
                       "Evaluate a checkpoint on the test split: top-1 of SA, GLCA and SA+GLCA (softmax sum, MODEL.md §3)\n"
                       "and the mean per-class accuracy. PWCA is off at inference. The data is the run's own\n"
                       "(its config.yaml) unless --dataset, --config, --data-root or --set data.* name another.",
                       extra, &cli);
    if (rc == CLI_HELP) return DCAL_EXIT_OK;
    if (rc != CLI_OK) return rc;
    if (!ckpt_arg) {
        dcal_err("eval: --checkpoint FILE is required");
        return DCAL_EXIT_USAGE;
    }
    char ckpt[DCAL_PATH_MAX + 32];
    if (!find_checkpoint(ckpt_arg, ckpt, sizeof ckpt)) return DCAL_EXIT_FAIL;
    ConfigRequest rq = cli_request(&cli);
    rq.device_facts = cli_device_facts;   // train.precision=auto → the backend's best
    static ResolvedConfig asked, trained;
    if (!config_resolve(&rq, &asked)) return DCAL_EXIT_FAIL;
    if (!resolve_run_config(ckpt, run_config, &trained)) return DCAL_EXIT_FAIL;
    const DcalConfig *c = &asked.cfg;
    static DcalConfig run;
    run = trained.cfg;
    bool root_only, asked_data = data_asked(&cli, argc, argv, &root_only);
    choose_data(&run, c, asked_data, root_only);
    config_use_precision(&run, c->train.precision);   // the trained model, at the precision asked now
    int B = batch ? atoi(batch) : run.train.micro_batch;
    if (B < 1) { dcal_err("eval: --batch must be a positive integer"); return DCAL_EXIT_USAGE; }
    const Backend *be = backend_get(c->train.device);
    if (!be || !be->set_precision(c->train.precision)) return DCAL_EXIT_FAIL;   // resolve checked the precision
    if (!backend_set_attention(be, c->train.attention)) return DCAL_EXIT_FAIL;
    return evaluate_checkpoint(ckpt, &run, be, B);
}

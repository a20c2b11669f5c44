// eval.c: `dcal eval --checkpoint F` — SA, GLCA and combined top-1 on the
// test split. The model's shape comes from the run's config.yaml beside the
// checkpoint; --dataset/--config/--data-root choose the data. Both configs go
// through config_resolve (no gate: evaluating a deviating run is allowed).
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "train/checkpoint.h"
#include "cmd/cli.h"
#include "cmd/cmd.h"
#include "train/train.h"

// The run's config: the one the checkpoint was trained with.
static int resolve_run_config(const char *ckpt, const char *run_config, ResolvedConfig *out) {
    char path[DCAL_PATH_MAX + 32], tmp[DCAL_PATH_MAX];
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
        printf("%s on %s test split (%d images):\n", ckpt, ds.name, er.n);
        printf("  top-1 SA       %.2f%%\n  top-1 GLCA     %.2f%%\n  top-1 SA+GLCA  %.2f%%\n  mean per-class %.2f%%\n",
               100 * er.acc_sa, 100 * er.acc_glca, 100 * er.acc_combined, 100 * er.mean_class_acc);
        rc = DCAL_EXIT_OK;
    }
    model_free(&m);
    dataset_free(&ds);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *run_config = NULL, *batch = NULL;
    const CliOpt extra[] = {
        {"--checkpoint", "FILE", "checkpoint to evaluate (a run's checkpoint.safetensors)", &ckpt, NULL, NULL},
        {"--run-config", "FILE", "the config the checkpoint was trained with (default: config.yaml beside it)",
         &run_config, NULL, NULL},
        {"--batch", "B", "images per forward pass (default: the run's micro-batch)", &batch, NULL, NULL},
        {0},
    };
    CliArgs cli;
    int rc = cli_parse(argc, argv,
                       "Evaluate a checkpoint on the test split: top-1 of SA, GLCA and SA+GLCA (softmax sum, MODEL.md §3)\n"
                       "and the mean per-class accuracy. PWCA is off at inference.",
                       extra, &cli);
    if (rc == CLI_HELP) return DCAL_EXIT_OK;
    if (rc != CLI_OK) return rc;
    ConfigRequest rq = cli_request(&cli);
    rq.device_facts = cli_device_facts;   // train.precision=auto → the backend's best
    static ResolvedConfig asked, trained;
    if (!config_resolve(&rq, &asked)) return DCAL_EXIT_FAIL;
    if (!ckpt) {
        dcal_err("eval: --checkpoint FILE is required");
        return DCAL_EXIT_USAGE;
    }
    if (!resolve_run_config(ckpt, run_config, &trained)) return DCAL_EXIT_FAIL;
    // Model and preprocessing as trained; data location as asked.
    const DcalConfig *c = &asked.cfg;
    static DcalConfig run;
    run = trained.cfg;
    snprintf(run.data.dataset, sizeof run.data.dataset, "%s", c->data.dataset);
    snprintf(run.data.root, sizeof run.data.root, "%s", c->data.root);
    run.data.workers = c->data.workers;
    run.data.skip_bad = c->data.skip_bad;
    int B = batch ? atoi(batch) : run.train.micro_batch;
    if (B < 1) { dcal_err("eval: --batch must be a positive integer"); return DCAL_EXIT_USAGE; }
    const Backend *be = backend_get(c->train.device);
    if (!be || !be->set_precision(c->train.precision)) return DCAL_EXIT_FAIL;   // resolve checked the precision
    return evaluate_checkpoint(ckpt, &run, be, B);
}

// eval.c: `dcal eval --checkpoint F` — SA, GLCA and combined top-1 on the
// test split. The model's shape comes from the run's config.yaml beside the
// checkpoint; --dataset/--config/--data-root choose the data.
#include <libgen.h>
#include <string.h>
#include <unistd.h>
#include "train/checkpoint.h"
#include "cmd/cli.h"
#include "cmd/cmd.h"
#include "train/train.h"

int cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *run_config = NULL, *batch = NULL;
    const CliOpt extra[] = {
        {"--checkpoint", "FILE", "checkpoint to evaluate (a run's checkpoint.safetensors)", &ckpt, NULL},
        {"--run-config", "FILE", "the config the checkpoint was trained with (default: config.yaml beside it)",
         &run_config, NULL},
        {"--batch", "B", "images per forward pass (default: the run's micro-batch)", &batch, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    CliCommon cli = {0};
    int rc = cli_parse(argc, argv,
                       "Evaluate a checkpoint on the test split: top-1 of SA, GLCA and SA+GLCA (softmax sum, SPEC §3)\n"
                       "and the mean per-class accuracy. PWCA is off at inference.",
                       extra, &cli);
    if (rc == CLI_HELP) return DCAL_EXIT_OK;
    if (rc != CLI_OK) return rc;
    if (!ckpt) {
        dcal_err("eval: --checkpoint FILE is required");
        return DCAL_EXIT_USAGE;
    }
    char path[DCAL_PATH_MAX + 32], tmp[DCAL_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", ckpt);
    if (run_config) snprintf(path, sizeof path, "%s", run_config);
    else snprintf(path, sizeof path, "%s/config.yaml", dirname(tmp));
    DcalConfig run;
    config_defaults(&run);
    if (access(path, R_OK) != 0) {
        dcal_err("%s: no config.yaml beside the checkpoint (pass --run-config FILE)", path);
        return DCAL_EXIT_FAIL;
    }
    if (!config_load(&run, path) || !config_finalize(&run)) return DCAL_EXIT_FAIL;
    // Model and preprocessing as trained; data location as asked.
    DcalConfig *c = &cli.cfg;
    DataConfig data = run.data;
    snprintf(data.dataset, sizeof data.dataset, "%s", c->data.dataset);
    snprintf(data.root, sizeof data.root, "%s", c->data.root);
    data.workers = c->data.workers;
    data.skip_bad = c->data.skip_bad;
    run.data = data;
    int B = batch ? atoi(batch) : run.train.micro_batch;
    if (B < 1) { dcal_err("eval: --batch must be a positive integer"); return DCAL_EXIT_USAGE; }
    const Backend *be = backend_get(c->train.device);
    if (!be) return DCAL_EXIT_FAIL;
    Dataset ds;
    if (!dataset_open(&ds, &run.data)) return DCAL_EXIT_FAIL;
    rc = DCAL_EXIT_FAIL;
    Model m;
    if (ds.num_classes != run.model.num_classes) {
        dcal_err("%s: dataset has %d classes, the checkpoint's model %d", ds.root, ds.num_classes, run.model.num_classes);
        dataset_free(&ds);
        return rc;
    }
    if (!model_build(&m, &run.model, be)) { dataset_free(&ds); return rc; }
    EvalResult er;
    if (checkpoint_load(ckpt, &m, NULL, NULL, NULL) && model_alloc_activations(&m, B, false, false) &&
        evaluate(&m, &ds, &run, &er)) {
        printf("%s on %s test split (%d images):\n", ckpt, ds.name, er.n);
        printf("  top-1 SA       %.2f%%\n  top-1 GLCA     %.2f%%\n  top-1 SA+GLCA  %.2f%%\n  mean per-class %.2f%%\n",
               100 * er.acc_sa, 100 * er.acc_glca, 100 * er.acc_combined, 100 * er.mean_class_acc);
        rc = DCAL_EXIT_OK;
    }
    model_free(&m);
    dataset_free(&ds);
    return rc;
}

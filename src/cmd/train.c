// train.c: `dcal train` — parse the options, resolve the config once
// (config_resolve: files, --set, resume, pretrained, memory plan, compliance
// gate), then run the trainer (src/train/) on that config.
#include <string.h>
#include "cmd/cli.h"
#include "cmd/cmd.h"
#include "dist/dist.h"
#include "model/plan.h"
#include "train/train.h"

static const char summary[] =
    "Train DCAL. The paper's rules are checked first (see 'dcal verify-config'); a failing rule\n"
    "stops the run unless the config declares it under 'deviations:' or --allow-deviation names it.\n"
    "SIGINT/SIGTERM finish the current step, save a checkpoint and exit 0.";

typedef struct {
    const char *resume, *init, *dump, *pretrained, *max_memory;
} TrainArgs;

// Options that cannot go together; DCAL_EXIT_OK when the combination is fine.
static int check_combination(const TrainArgs *t) {
    if (t->resume && (t->init || t->dump || t->pretrained)) {
        dcal_err("train: --resume continues a run as it was; it cannot be combined with --init, --pretrained or --dump-step");
        return DCAL_EXIT_USAGE;
    }
    if (t->init && t->pretrained) {
        dcal_err("train: give --init or --pretrained, not both");
        return DCAL_EXIT_USAGE;
    }
    return DCAL_EXIT_OK;
}

static int train_resolved(int argc, char **argv);

// Under a launcher (mpirun, srun) every process runs this; rank 0 alone prints
// and writes the run directory. A rank that ends in failure ends the whole job
// (MPI_Abort), so that no rank waits forever in a collective for it.
int cmd_train(int argc, char **argv) {
    if (!dist_init(NULL, NULL)) return DCAL_EXIT_FAIL;
    // One device per process, chosen before any backend touches one (the planner asks for free memory).
    for (int i = 0; dist_world() > 1 && i < backend_count(); i++)
        if (backend_at(i)->comm && !backend_at(i)->comm->select_device(dist_local_rank())) return DCAL_EXIT_FAIL;
    if (dist_rank() > 0 && !freopen("/dev/null", "w", stdout)) return DCAL_EXIT_FAIL;   // errors still reach stderr
    dcal_mute_warnings(dist_rank() > 0);   // rank 0 says each deviation once
    int rc = train_resolved(argc, argv);
    if (rc != DCAL_EXIT_OK) dist_abort(rc);
    dist_finalize();
    return rc;
}

static int train_resolved(int argc, char **argv) {
    TrainArgs t = {0};
    const CliOpt extra[] = {
        {"--resume", "RUN", "continue a stopped run (a run directory or a name under train.out_dir)", &t.resume, NULL,
         NULL},
        {"--init", "FILE", "start from these exact weights (safetensors, docs/MODEL.md §6 names)", &t.init, NULL, NULL},
        {"--pretrained", "FILE", "timm ViT/DeiT weights (same as --set train.pretrained=FILE)", &t.pretrained, NULL,
         NULL},
        {"--dump-step", "FILE", "write the first optimizer step (inputs, pairing, selection, logits, losses, "
                                "gradients) to FILE and exit", &t.dump, NULL, NULL},
        {"--max-memory", "SIZE", "pick the largest micro-batch whose memory plan fits SIZE (e.g. 8G); accumulation "
                                 "keeps the effective batch", &t.max_memory, NULL, NULL},
        {0},
    };
    CliArgs cli;
    int rc = cli_parse(argc, argv, summary, extra, &cli);
    if (rc == CLI_HELP) return DCAL_EXIT_OK;
    if (rc != CLI_OK) return rc;
    if ((rc = check_combination(&t)) != DCAL_EXIT_OK) return rc;
    ConfigRequest rq = cli_request(&cli);
    rq.resume_dir = t.resume;   // on --resume the run's own config.yaml is the config
    rq.pretrained = t.pretrained;
    rq.train_bytes = train_planned_bytes;
    rq.device_facts = cli_device_facts;
    rq.gate = rq.training = true;
    rq.world_size = dist_world();
    if (t.max_memory) {
        rq.budget_from = t.max_memory;
        if (!(rq.memory_budget = plan_parse_size(t.max_memory))) {
            dcal_err("--max-memory '%s': expected a size like 8G or 512M", t.max_memory);
            return DCAL_EXIT_USAGE;
        }
    }
    static ResolvedConfig r;   // ~60 KiB; rules[] point into it, so it stays put
    if (!config_resolve(&rq, &r)) return DCAL_EXIT_FAIL;
    TrainOptions o = {.resume_dir = t.resume ? r.run_dir : NULL, .init_path = t.init, .dump_path = t.dump,
                      .argc = argc, .argv = argv, .n_allowed = r.n_allowed, .allowed = r.allowed,
                      .rules = r.rules, .n_rules = r.n_rules};
    return train_main(&r.cfg, &o);
}

// plan.c: `dcal plan` — the exact memory table for a config (ARCHITECTURE.md §4),
// and with --max-memory the micro-batch / accumulation that train would pick.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend/backend.h"
#include "cmd/cli.h"
#include "cmd/cmd.h"
#include "dist/reduce.h"
#include "model/plan.h"
#include "train/train.h"

// c: the config with the model as it would run (mc below); the picks count what train's plan counts.
static void print_pick(const DcalConfig *c, int per_dev, int devices, bool ckpt, size_t budget) {
    int B = config_pick_micro_batch(c, per_dev, devices, ckpt, budget, train_planned_bytes);
    const char *what = ckpt ? "per-block checkpointing" : "no checkpointing";
    if (!B) {
        printf("%-24s: does not fit (micro-batch 2 needs %.1f MiB)\n", what,
               train_planned_bytes(c, 2, per_dev / 2, devices, ckpt) / 1048576.0);
        return;
    }
    printf("%-24s: micro-batch %d x accumulation %d x devices %d = %d, %.1f MiB\n", what, B, per_dev / B, devices,
           per_dev * devices, train_planned_bytes(c, B, per_dev / B, devices, ckpt) / 1048576.0);
}

// The fixed-order gradient sum (src/dist/reduce.h) on top of the table, for the
// config's accumulation and processes, and what each step moves between processes.
static void print_reduce(const DcalConfig *c) {
    MemPlan p;
    model_plan(&c->model, 2, false, true, &p);
    size_t n = p.weights / sizeof(float), extra = reduce_extra_bytes(n, c->train.accum_steps, c->train.devices);
    printf("gradient sum, accumulation %d x processes %d: +%.1f MiB (%zu bytes) per process beyond the table's one "
           "gradient\n", c->train.accum_steps, c->train.devices, extra / 1048576.0, extra);
    printf("all-reduce volume per optimizer step: %zu floats = %.1f MB fp32, %.1f MB bf16\n", n, n * 4 / 1e6,
           n * 2 / 1e6);
}

// The backend and precision a run of this config would use here, resolved as
// config_resolve resolves them for train (auto = the first available backend,
// its best precision); a backend this machine lacks is named, not an error:
// planning for a GPU on a laptop is what the plan is for. The precision found
// goes to prec (cap bytes; "" when unknown): it sets how the Act tensors count. Returns the
// backend's name (the named device when this dcal lacks it), or NULL when auto found none.
static const char *print_backend(const TrainConfig *t, char *prec, size_t cap) {
    const Backend *be = NULL;
    char why[256] = "not built into this dcal";
    bool auto_dev = !strcmp(t->device, "auto"), auto_prec = !strcmp(t->precision, "auto"), here = false;
    for (int i = 0; i < backend_count() && !here; i++) {
        const Backend *b = backend_at(i);
        if (!auto_dev && strcmp(t->device, b->name)) continue;
        here = b->available(why, sizeof why);
        if (here || !auto_dev) be = b;   // a named backend's precisions are known without its device
    }
    snprintf(prec, cap, "%s", auto_prec ? "" : t->precision);
    if (be && auto_prec) snprintf(prec, cap, "%.*s", (int)strcspn(be->precisions, " "), be->precisions);
    if (!be) {
        printf("backend: %s (not available here: %s), precision %s\n", t->device, why, t->precision);
        return auto_dev ? NULL : t->device;
    }
    size_t pl = strlen(prec);
    const char *hit = strstr(be->precisions, prec);
    bool supported = hit && (hit == be->precisions || hit[-1] == ' ') && (!hit[pl] || hit[pl] == ' ');
    const char *note = !supported && be->precision_note ? be->precision_note() : NULL;
    printf("backend: %s%s%s%s%s, precision %s%s%s%s%s\n", be->name, auto_dev ? " (train.device=auto)" : "",
           here ? "" : " (not available here: ", here ? "" : why, here ? "" : ")", prec,
           auto_prec ? " (train.precision=auto: the backend's best)"
           : supported ? "" : " (not supported by this backend here: train refuses it", note ? ": " : "",
           note ? note : "", !auto_prec && !supported ? ")" : "");
    return be->name;
}

// The CUDA backend's own allocations, which the table does not hold (cuda_scratch_rule.h).
static void print_cuda_extra(const ModelConfig *m, int B) {
    size_t s = plan_cuda_scratch(m, B), extra = plan_cuda_extra(m, B);
    printf("CUDA backend beyond the table: scratch %.1f MiB (largest request %zu bytes: %s) + cuBLASLt workspace "
           "%.1f MiB; with them %.1f MiB without checkpointing, %.1f MiB with\n",
           (extra - CUDA_LT_WORKSPACE_BYTES) / 1048576.0, s,
           s ? "bf16 copies of the largest linear layer's weight and dout" : "no operand copies at fp32",
           CUDA_LT_WORKSPACE_BYTES / 1048576.0, (plan_train_bytes(m, B, false) + extra) / 1048576.0,
           (plan_train_bytes(m, B, true) + extra) / 1048576.0);
}

// The CPU backend's (cpu_scratch_rule.h): at precision bf16 its GEMMs' operand copies, and the
// attention or rollout scratch of one call.
static void print_cpu_extra(const DcalConfig *cfg, const ModelConfig *m, int B) {
    size_t copies = plan_cpu_copies(m, B), ops = plan_cpu_op_scratch(m), extra = copies + ops;
    char c[96] = "";
    size_t w = m->act_bytes == 2 ? cpu_weight_copies(m->patch, m->dim, m->mlp_dim, m->depth, m->glca_blocks,
                                                     m->num_classes) : 0;
    if (copies)
        snprintf(c, sizeof c, "bf16 GEMM operand copies %.1f MiB (%.1f of them the weights'), ", copies / 1048576.0,
                 w / 1048576.0);
    printf("CPU backend beyond the table: %sattention or rollout scratch %.1f MiB (%d threads); with them %.1f MiB without "
           "checkpointing, %.1f MiB with\n", c, ops / 1048576.0, m->cpu_threads,
           (plan_train_bytes(m, B, false) + extra) / 1048576.0, (plan_train_bytes(m, B, true) + extra) / 1048576.0);
    // What peak RSS counts besides: this binary's own resident pages, read before main (a train
    // process of the same binary starts the same).
    size_t base = process_rss_at_start(), host = train_host_bytes(cfg, B);
    printf("CPU host data: loaders (data.workers %d), the micro-batch buffers, an evaluation's batch and a checkpoint's "
           "largest tensor: %.1f MiB\n", cfg->data.workers, host / 1048576.0);
    if (base)
        printf("CPU process itself (code, libraries and their data; resident in this dcal at start): %.1f MiB; peak RSS "
               "expected %.1f MiB without checkpointing, %.1f MiB with\n", base / 1048576.0,
               (plan_train_bytes(m, B, false) + extra + host + base) / 1048576.0,
               (plan_train_bytes(m, B, true) + extra + host + base) / 1048576.0);
}

int cmd_plan(int argc, char **argv) {
    const char *mb = NULL, *maxmem = NULL;
    const CliOpt extra[] = {
        {"--micro-batch", "B", "micro-batch for the table (default: the config's train.micro_batch)", &mb, NULL, NULL},
        {"--max-memory", "SIZE", "also show the micro-batch/accumulation train would pick under SIZE (e.g. 8G, 512M)",
         &maxmem, NULL, NULL},
        {0},
    };
    CliArgs cli;
    int rc = cli_parse(argc, argv,
                       "Print the exact training memory plan (weights, gradients, AdamW state, activations,\n"
                       "workspace) with and without per-block checkpointing. Nothing is allocated.",
                       extra, &cli);
    if (rc == CLI_HELP) return DCAL_EXIT_OK;
    if (rc != CLI_OK) return rc;
    ConfigRequest rq = cli_request(&cli);   // no gate, no budget: plan shows the picks without applying one
    static ResolvedConfig r;
    if (!config_resolve(&rq, &r)) return DCAL_EXIT_FAIL;
    const DcalConfig *c = &r.cfg;
    int B = c->train.micro_batch;
    if (mb) {
        char *end;
        long v = strtol(mb, &end, 10);
        if (*end || end == mb || v < 1 || v > 65536) {
            dcal_err("plan: --micro-batch '%s': expected an integer in [1, 65536]", mb);
            return DCAL_EXIT_USAGE;
        }
        B = (int)v;
    }
    size_t budget = 0;
    if (maxmem && !(budget = plan_parse_size(maxmem))) {
        dcal_err("plan: --max-memory '%s': expected a size like 8G or 512M", maxmem);
        return DCAL_EXIT_USAGE;
    }
    printf("config: %s\n", c->source);
    char prec[16];
    const char *be = print_backend(&c->train, prec, sizeof prec);
    ModelConfig mc = c->model;   // the Act tensors count at the precision that would run
    mc.act_bytes = prec[0] ? config_act_bytes(prec) : 0;
    config_model_backend(&mc, be, c->train.threads);   // --max-memory's picks count the backend's own bytes too
    plan_print(stdout, &mc, B);
    if (be && !strcmp(be, "cuda")) print_cuda_extra(&mc, B);
    if (be && !strcmp(be, "cpu")) print_cpu_extra(c, &mc, B);
    print_reduce(c);
    if (maxmem) {
        int eff = config_effective_batch(c), dev = c->train.devices > 0 ? c->train.devices : 1;
        printf("\nbudget %s (%zu bytes), effective batch %d (%d per device):\n", maxmem, budget, eff, eff / dev);
        DcalConfig run = *c;
        run.model = mc;
        print_pick(&run, eff / dev, dev, false, budget);
        print_pick(&run, eff / dev, dev, true, budget);
    }
    return DCAL_EXIT_OK;
}

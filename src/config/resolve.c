// resolve.c: config_resolve, the single place a command's options become the
// final configuration (see resolve.h for the order). Everything that may
// change a value — files, --set, resume, pretrained, the memory planner's
// micro-batch, the backend's precision — happens here, before the compliance
// table is made, so the gate judges exactly what will run.
#include "config/resolve.h"
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include "core/json.h"

// Keys that may change on --resume without changing what is computed.
static const char *const resume_keys[] = {"train.max_steps=", "data.root=", "data.workers=", "train.threads=",
                                          "train.eval_every=", "train.update_in_backward=", NULL};

static int copy_allowed(const ConfigRequest *rq, ResolvedConfig *out) {
    if (rq->n_allowed > CONFIG_MAX_ALLOWED) {
        dcal_err("%s: more than %d --allow-deviation ids", rq->who ? rq->who : "config", CONFIG_MAX_ALLOWED);
        return 0;
    }
    for (int i = 0; i < rq->n_allowed; i++) {
        if (strlen(rq->allowed[i]) >= sizeof out->allowed[0] ||
            !compliance_check_allowed(rq->who ? rq->who : "config", rq->allowed[i]))
            return 0;
        strcpy(out->allowed[out->n_allowed++], rq->allowed[i]);
    }
    return 1;
}

// The run directory: RUN itself when it holds config.yaml — exactly that
// directory, so a moved or copied run resumes where it is — else, for a plain
// name only, RUN under the default train.out_dir.
static int find_run(const char *run, const DcalConfig *defaults, char *dir, size_t cap, char *path, size_t pcap) {
    snprintf(dir, cap, "%s", run);
    snprintf(path, pcap, "%s/config.yaml", dir);
    if (access(path, R_OK) == 0) return 1;
    if (strchr(run, '/')) {   // a path, not a run name
        dcal_err("--resume %s: no run there (expected %s)", run, path);
        return 0;
    }
    snprintf(dir, cap, "%s/%s", defaults->train.out_dir, run);
    snprintf(path, pcap, "%s/config.yaml", dir);
    if (access(path, R_OK) == 0) return 1;
    dcal_err("--resume %s: no run there (expected %s/config.yaml or %s/config.yaml)", run, run, dir);
    return 0;
}

// --resume: the deviations the run was started with --allow-deviation stay
// allowed (manifest.json "allow_deviation"), so the gate passes the same config
// it passed at the start without the user repeating them.
static int resume_allowed(const char *dir, ResolvedConfig *out) {
    char path[2 * DCAL_PATH_MAX + 32];
    size_t len;
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    char *text = read_file(path, &len);
    Json man;
    if (!text || !json_parse(text, len, 0, &man, NULL)) {
        free(text);
        return 1;   // no manifest yet (stopped before it): nothing was allowed; the run's own checks say more
    }
    const Json *al = json_get(&man, "allow_deviation");
    int ok = 1;
    for (int i = 0; ok && json_at(al, i); i++) {
        const Json *v = json_at(al, i);
        bool have = v->type != JSON_STRING;
        for (int j = 0; !have && j < out->n_allowed; j++) have = !strcmp(out->allowed[j], v->s);
        if (have) continue;
        ok = out->n_allowed < CONFIG_MAX_ALLOWED && strlen(v->s) < sizeof out->allowed[0] &&
             compliance_check_allowed("--resume", v->s);
        if (ok) strcpy(out->allowed[out->n_allowed++], v->s);
        else if (out->n_allowed >= CONFIG_MAX_ALLOWED) dcal_err("%s: more than %d allowed deviations", path, CONFIG_MAX_ALLOWED);
    }
    json_free(&man);
    free(text);
    return ok;
}

// --resume: the run's config.yaml as it was, plus only resume-safe --set keys.
static int load_resume(const ConfigRequest *rq, ResolvedConfig *out) {
    DcalConfig *c = &out->cfg;
    char path[2 * DCAL_PATH_MAX + 32];
    if (!find_run(rq->resume_dir, c, out->run_dir, sizeof out->run_dir, path, sizeof path)) return 0;
    if (!config_load(c, path) || !resume_allowed(out->run_dir, out)) return 0;
    for (int i = 0; i < rq->n_sets; i++) {
        int ok = 0;
        for (const char *const *k = resume_keys; *k; k++) ok |= !strncmp(rq->sets[i], *k, strlen(*k));
        if (!ok) {
            dcal_err("--resume: --set %s would change the run; only train.max_steps, data.root, data.workers, "
                     "train.threads, train.eval_every and train.update_in_backward may change on resume", rq->sets[i]);
            return 0;
        }
        if (!config_set(c, rq->sets[i])) return 0;
    }
    return 1;
}

static int load_fresh(const ConfigRequest *rq, DcalConfig *c) {
    if (rq->config_path && !config_load(c, rq->config_path)) return 0;
    for (int i = 0; i < rq->n_sets; i++)
        if (!config_set(c, rq->sets[i])) return 0;
    return 1;
}

static int set_pretrained(DcalConfig *c, const char *file) {
    char a[DCAL_PATH_MAX + 32];
    snprintf(a, sizeof a, "train.pretrained=%s", file);
    return config_set(c, a);
}

// ARCHITECTURE.md §4: the largest micro-batch B >= 2 (PWCA pairs images within a
// micro-batch) that divides the per-device batch and whose plan fits the
// budget; accumulation keeps the effective batch exact.
static int pick_micro_batch(const ConfigRequest *rq, size_t budget, const char *from, DcalConfig *c) {
    TrainConfig *t = &c->train;
    int eff = config_effective_batch(c), per_dev = eff / t->devices;
    if (!rq->train_bytes) { dcal_err("internal: a memory budget needs the planner (train_bytes)"); return 0; }
    int mb = config_pick_micro_batch(c, per_dev, t->devices, t->checkpoint_blocks, budget, rq->train_bytes);
    double budget_mib = budget / 1048576.0;
    if (!mb) {
        size_t need = rq->train_bytes(c, 2, per_dev / 2, t->devices, t->checkpoint_blocks);
        dcal_err("%s (%.1f MiB): even micro-batch 2 needs %.1f MiB, %zu bytes (try --set train.checkpoint_blocks=true, "
                 "or a larger --max-memory if the device has it; train.accum_steps keeps the batch at any micro-batch)",
                 from, budget_mib, need / 1048576.0, need);
        return 0;
    }
    t->micro_batch = mb;
    t->accum_steps = per_dev / mb;
    printf("memory plan: micro-batch %d x accumulation %d x devices %d = %d (%.1f MiB of %.1f MiB %s)\n", mb,
           t->accum_steps, t->devices, eff,
           rq->train_bytes(c, mb, t->accum_steps, t->devices, t->checkpoint_blocks) / 1048576.0,
           budget_mib, from);
    return 1;
}

// The n-th (0-based) space-separated word of list into buf; 0 when there is none.
static int word(const char *list, int n, char *buf, size_t cap) {
    for (const char *p = list;;) {
        while (*p == ' ') p++;
        if (!*p) return 0;
        size_t len = strcspn(p, " ");
        if (n-- == 0) {
            snprintf(buf, cap, "%.*s", (int)len, p);
            return 1;
        }
        p += len;
    }
}

// train.precision=auto → the backend's best; an explicit one must be supported.
static int resolve_precision(const char *supported, const char *note, TrainConfig *t) {
    char w[sizeof t->precision];
    if (!strcmp(t->precision, "auto")) {
        if (!word(supported, 0, w, sizeof w)) { dcal_err("internal: the backend lists no precision"); return 0; }
        strcpy(t->precision, w);
        return 1;
    }
    for (int i = 0; word(supported, i, w, sizeof w); i++)
        if (!strcmp(w, t->precision)) return 1;
    dcal_err("train.precision=%s: this backend supports %s (or auto) here%s%s", t->precision, supported,
             note ? ": " : "", note ? note : "");
    return 0;
}

// The table, then (train) the gate and the micro-batch PWCA needs.
static int judge(const ConfigRequest *rq, ResolvedConfig *out) {
    const DcalConfig *c = &out->cfg;
    out->n_rules = compliance_check(c, out->allowed, out->n_allowed, out->rules);
    if (rq->gate && !compliance_gate(out->rules, out->n_rules)) {
        dcal_err("%s: refusing to start: the config deviates from the paper (see above; 'dcal verify-config' "
                 "shows the full table)", rq->who ? rq->who : "config");
        return 0;
    }
    if (rq->training && c->model.pwca_blocks > 0 && c->train.micro_batch < 2) {
        dcal_err("train.micro_batch=1: PWCA pairs each image with another image of the same micro-batch (MODEL.md §2), so "
                 "the micro-batch must be at least 2");
        return 0;
    }
    return 1;
}

int config_resolve(const ConfigRequest *rq, ResolvedConfig *out) {
    memset(out, 0, sizeof *out);
    DcalConfig *c = &out->cfg;
    config_defaults(c);
    if (!copy_allowed(rq, out)) return 0;
    if (rq->resume_dir ? !load_resume(rq, out) : !load_fresh(rq, c)) return 0;
    if (rq->pretrained && !set_pretrained(c, rq->pretrained)) return 0;
    int world = rq->world_size > 0 ? rq->world_size : c->train.devices > 0 ? c->train.devices : 1;
    if (!config_apply_world(c, world, rq->resume_dir != NULL)) return 0;
    if (!config_finalize(c) || !compliance_check_deviations(c)) return 0;
    size_t budget = rq->memory_budget;
    if (budget && rq->resume_dir) {
        dcal_err("--resume: a memory budget (%s) cannot change a resumed run's micro-batch",
                 rq->budget_from ? rq->budget_from : "memory budget");
        return 0;
    }
    const char *from = rq->budget_from ? rq->budget_from : "memory budget", *precisions = rq->backend_precisions,
               *note = NULL;
    const char *facts_backend = NULL;
    if (rq->device_facts) {   // ARCHITECTURE.md §4: fit the micro-batch to the device, never OOM mid-run
        size_t free_bytes = 0;
        const char *backend = NULL;
        if (!rq->device_facts(c->train.device, &free_bytes, &precisions, &backend, &note)) return 0;
        facts_backend = backend;
        // A training plan only: eval keeps its batch, and a resumed run its micro-batch
        // (the checkpoint's position counts micro-batches).
        if (rq->training && !rq->resume_dir && !budget && free_bytes) {
            budget = free_bytes / 100 * 95;   // 5% for library workspaces and the runtime's growth
            from = "free device memory";
        }
    }
    // The precision first: it sets how the planner counts the Act tensors (bf16: 2 bytes).
    if (precisions && !resolve_precision(precisions, note, &c->train)) return 0;
    if (strcmp(c->train.precision, "auto")) c->model.act_bytes = config_act_bytes(c->train.precision);
    if (rq->device_facts) config_model_backend(&c->model, facts_backend, c->train.threads);   // after act_bytes
    // The update in backward keeps one block's gradient when the picker's accumulation is 1
    // (cli_step_bytes asks for each candidate); then it is settled for the accumulation chosen.
    c->model.grads_per_block = config_update_in_backward(&c->train, 1, c->train.devices);
    if (budget && !pick_micro_batch(rq, budget, from, c)) return 0;
    c->model.grads_per_block = config_update_in_backward(&c->train, c->train.accum_steps, c->train.devices);
    return judge(rq, out);
}

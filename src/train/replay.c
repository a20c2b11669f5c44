// replay.c: `dcal audit --replay K RUN` (ARCHITECTURE.md §6). The trainer
// re-executes the run's first K optimizer steps from its recorded start — the
// config.yaml, seed, starting weights (--init or --pretrained file, hashed as
// the manifest says, or the seed's init) and dataset (its fingerprint) — in
// replay mode: no run directory, no eval, no checkpoint, so nothing is
// written into RUN. Every value of every step is then compared with
// RUN/steps.tsv bit for bit. Bitwise equality is promised on the same machine
// kind only (CPU model, OpenMP threads, OpenBLAS build; GPU model and library
// versions), which the backend's describe() line names: when it differs from
// the manifest's, the replay reports the largest relative difference instead.
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include "core/json.h"
#include "core/sha256.h"
#include "train/trainer.h"

// What the run recorded, and what the replay computed.
typedef struct {
    const char *dir;
    Json man;
    StepRecord *logged, *replayed;
    int64_t n_logged, k;
    char init_path[DCAL_PATH_MAX];
    char describe[1024];   // this machine's, after setup set the thread count
} Replay;

static int load_manifest(Replay *r) {
    char path[DCAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/manifest.json", r->dir);
    size_t len;
    char *text = read_file(path, &len);
    int ok = text && json_parse(text, len, 0, &r->man, NULL);
    if (ok && r->man.type != JSON_OBJECT) { json_free(&r->man); ok = 0; }
    if (!ok) { memset(&r->man, 0, sizeof r->man); dcal_err("%s: missing or not a JSON object (see 'dcal audit %s')", path, r->dir); }
    free(text);
    return ok;
}

// A starting-weights file the manifest names ("init" or "pretrained"): it must
// be there and hash as recorded. *path gets it ("" when none was used).
static int check_start_file(const Replay *r, const char *what, const char **path) {
    const Json *o = json_get(&r->man, what);
    const char *want = json_str(o, "sha256");
    char hex[65];
    *path = json_str(o, "path");
    if (!*path || !**path) { *path = ""; return 1; }
    if (!want || strlen(want) != 64) {
        dcal_err("%s/manifest.json: %s.sha256 is missing for %s (a replay needs the exact starting weights)", r->dir,
                 what, *path);
        return 0;
    }
    if (access(*path, R_OK) != 0) {
        dcal_err("%s: the run's %s weights are missing (a replay needs the exact starting weights)", *path, what);
        return 0;
    }
    if (!sha256_file(*path, hex)) return 0;
    if (strcmp(hex, want)) {
        dcal_err("%s: sha256 %s differs from the manifest's %s (not the run's %s weights)", *path, hex, want, what);
        return 0;
    }
    return 1;
}

// The seed and the starting weights the manifest records against the config.
static int check_start(Replay *r, const DcalConfig *c) {
    const Json *seed = json_get(&r->man, "seed");
    char want[32];
    snprintf(want, sizeof want, "%" PRIu64, (uint64_t)c->train.seed);
    if (!seed || seed->type != JSON_NUMBER || !seed->raw || strcmp(seed->raw, want)) {
        dcal_err("%s/manifest.json: seed %s differs from config.yaml's %s", r->dir,
                 seed && seed->raw ? seed->raw : "(none)", want);
        return 0;
    }
    const char *init, *pre;
    if (!check_start_file(r, "init", &init) || !check_start_file(r, "pretrained", &pre)) return 0;
    if (strcmp(pre, c->train.pretrained)) {
        dcal_err("%s: config.yaml's train.pretrained '%s' is not the manifest's '%s'", r->dir, c->train.pretrained, pre);
        return 0;
    }
    snprintf(r->init_path, sizeof r->init_path, "%s", init);
    return 1;
}

// Set up the trainer as the run started, check its dataset, run K steps.
static int replay_steps(Replay *r, const DcalConfig *c) {
    TrainOptions o = {.init_path = r->init_path[0] ? r->init_path : NULL, .replay_steps = r->k};
    Trainer t = {.c = c, .o = &o, .replayed = r->replayed};
    int rc = DCAL_EXIT_FAIL;
    const char *want = json_str(json_get(&r->man, "dataset"), "fingerprint");
    if (trainer_setup(&t)) {
        t.be->describe(r->describe, sizeof r->describe);
        if (!want || strcmp(t.ds.fingerprint, want))
            dcal_err("%s: dataset fingerprint %s is not the run's %s (give the run's data with --data-root)",
                     t.ds.root, t.ds.fingerprint, want ? want : "(none recorded)");
        else if ((rc = trainer_run(&t)) == DCAL_EXIT_OK && t.pos.step < r->k) {
            dcal_err("%s: the replay ended after %lld of %lld steps", r->dir, (long long)t.pos.step, (long long)r->k);
            rc = DCAL_EXIT_FAIL;
        }
    }
    trainer_teardown(&t);
    return rc;
}

static void print_value(const char *who, double v) { printf("%s %a (%.17g)", who, v, v); }

// The first field, in step order, whose bits differ; 0 when all match.
static int first_difference(const Replay *r, int64_t *step, int *field) {
    for (int64_t s = 0; s < r->k; s++)
        for (int f = 0; f < STEPLOG_FIELDS; f++) {
            double a = steplog_field(&r->logged[s], f), b = steplog_field(&r->replayed[s], f);
            if (memcmp(&a, &b, sizeof a)) { *step = s; *field = f; return 1; }
        }
    return 0;
}

// Same machine kind: a verdict.
static int verdict(const Replay *r) {
    int64_t s;
    int f;
    if (!first_difference(r, &s, &f)) {
        printf("OK   replay: steps 1..%" PRId64 " match %s/" STEPLOG_FILE " bit for bit (%d values each)\n", r->k, r->dir,
               STEPLOG_FIELDS);
        printf("%s: replay of %" PRId64 " steps matched bit for bit\n", r->dir, r->k);
        return DCAL_EXIT_OK;
    }
    printf("FAIL replay: step %" PRId64 ": %s differs: ", s + 1, steplog_field_name(f));
    print_value("logged", steplog_field(&r->logged[s], f));
    print_value(", replayed", steplog_field(&r->replayed[s], f));
    printf("\n%s: replay FAILED at step %" PRId64 " (%s)\n", r->dir, s + 1, steplog_field_name(f));
    return DCAL_EXIT_FAIL;
}

// Another machine kind: the largest relative difference, no verdict.
static int no_verdict(const Replay *r, const char *recorded) {
    double worst = 0;
    int64_t ws = 0;
    int wf = 2;
    for (int64_t s = 0; s < r->k; s++)
        for (int f = 0; f < STEPLOG_FIELDS; f++) {
            double a = steplog_field(&r->logged[s], f), b = steplog_field(&r->replayed[s], f);
            double m = fmax(fabs(a), fabs(b)), d = a == b ? 0 : fabs(a - b) / m;
            if (d > worst) { worst = d; ws = s; wf = f; }
        }
    printf("WARN replay: this machine is not the run's kind, so bitwise equality is not expected and there is no "
           "verdict\n     run:  %s\n     here: %s\n", recorded, r->describe);
    printf("OK   replay: largest relative difference over steps 1..%" PRId64 ": %.3g (step %" PRId64 ", %s: ", r->k,
           worst, ws + 1, steplog_field_name(wf));
    print_value("logged", steplog_field(&r->logged[ws], wf));
    print_value(", replayed", steplog_field(&r->replayed[ws], wf));
    printf(")\n%s: replay of %" PRId64 " steps on another machine kind: no verdict (largest relative difference "
           "%.3g)\n", r->dir, r->k, worst);
    return DCAL_EXIT_OK;
}

int train_replay(const DcalConfig *c, const char *run_dir, int64_t steps) {
    Replay r = {.dir = run_dir, .k = steps};
    if (!steplog_read(run_dir, &r.logged, &r.n_logged)) return DCAL_EXIT_FAIL;
    if (steps < 1 || steps > r.n_logged) {
        dcal_err("audit --replay %" PRId64 ": %s/" STEPLOG_FILE " holds %" PRId64 " steps (give 1..%" PRId64 ")", steps,
                 run_dir, r.n_logged, r.n_logged);
        free(r.logged);
        return DCAL_EXIT_USAGE;
    }
    int rc = DCAL_EXIT_FAIL;
    r.replayed = xcalloc((size_t)steps, sizeof *r.replayed);
    if (load_manifest(&r) && check_start(&r, c)) {
        printf("replay: re-running steps 1..%" PRId64 " of %s (nothing is written there)\n", steps, run_dir);
        fflush(stdout);
        rc = replay_steps(&r, c);
    }
    if (rc == DCAL_EXIT_OK) {
        const char *recorded = json_str(&r.man, "backend_describe");
        rc = recorded && !strcmp(recorded, r.describe) ? verdict(&r) : no_verdict(&r, recorded ? recorded : "(none)");
    }
    json_free(&r.man);
    free(r.logged);
    free(r.replayed);
    return rc;
}

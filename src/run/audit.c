// audit.c: re-check a run directory (ARCHITECTURE.md §6): manifest, config hash,
// compliance, checkpoints' parameter hashes, weight-file hashes, dataset
// fingerprint, metrics. One line per check (OK/WARN/FAIL).
//
// Checkpoints are verified by the caller's function (checkpoint_verify: the
// model's tensor table, both hashes, the metadata), since the model sits above
// this layer.
#include "run/audit.h"
#include "core/safetensors.h"
#include "run/rundir.h"
#include "run/steplog.h"
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include "compliance/compliance.h"
#include "config/config.h"
#include "core/common.h"
#include "core/json.h"
#include "core/sha256.h"
#include "datasets/dataset.h"

typedef struct { int n_fail; } Audit;

static void report(Audit *a, const char *status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void report(Audit *a, const char *status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%-4s ", status);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
    if (!strcmp(status, "FAIL")) a->n_fail++;
    fflush(stdout);   // so a check's stderr detail lands right before its FAIL line
}

// A whole text as one JSON object; 0 (and *v empty) otherwise.
static int parse_object(const char *text, Json *v) {
    if (!json_parse(text, strlen(text), 0, v, NULL)) return 0;
    if (v->type == JSON_OBJECT) return 1;
    json_free(v);
    return 0;
}

static int check_manifest(Audit *a, const char *dir, Json *man) {
    char path[DCAL_PATH_MAX + 32];
    size_t len;
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    char *text = read_file(path, &len);
    int ok = 0;
    if (!text) report(a, "FAIL", "%s: missing or unreadable", path);
    else if (!parse_object(text, man)) report(a, "FAIL", "%s: not a JSON object", path);
    else {
        const char *ver = json_str(man, "dcal_version"), *commit = json_str(man, "git_commit");
        report(a, "OK", "%s: parses (%d fields, dcal %s, commit %s)", path, man->len, ver ? ver : "?", commit ? commit : "?");
        ok = 1;
    }
    free(text);
    return ok;
}

// config.yaml loads, and is the file the manifest hashed.
static int check_config(Audit *a, const char *dir, const Json *man, int have_man, DcalConfig *cfg) {
    char path[DCAL_PATH_MAX + 32], hex[65];
    config_defaults(cfg);
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    int have_cfg = config_load(cfg, path) && config_finalize(cfg);
    if (!have_cfg) report(a, "FAIL", "%s: does not load (see the error above)", path);
    else report(a, "OK", "%s: loads", path);
    const char *want = json_str(man, "config_sha256");
    if (!have_man) return have_cfg;
    if (!want) report(a, "FAIL", "%s: manifest has no config_sha256", path);
    else if (!sha256_file(path, hex)) report(a, "FAIL", "%s: cannot be hashed", path);
    else if (strcmp(hex, want))
        report(a, "FAIL", "%s: sha256 %s differs from the manifest's %s (config.yaml changed after the run started)", path,
               hex, want);
    else report(a, "OK", "%s: sha256 matches the manifest", path);
    return have_cfg;
}

// The processes the run started with: the manifest's world_size is config.yaml's
// train.devices, so the effective batch the compliance table checks counts them.
static void check_world(Audit *a, const Json *man, const DcalConfig *cfg) {
    const Json *w = json_get(man, "world_size");
    int devices = cfg->train.devices > 0 ? cfg->train.devices : 1;
    if (!w) report(a, "WARN", "manifest.json: no world_size (a run from an older dcal: one process)");
    else if (w->type != JSON_NUMBER || w->num != devices)
        report(a, "FAIL", "manifest.json: world_size %s differs from config.yaml's train.devices %d", w->raw ? w->raw : "?",
               devices);
    else report(a, "OK", "manifest.json: world_size %d, effective batch %d = micro-batch %d x accumulation %d x %d",
                devices, config_effective_batch(cfg), cfg->train.micro_batch, cfg->train.accum_steps, devices);
}

// compliance: re-run with the run's --allow-deviation ids; compliance.txt must regenerate identically.
static void check_compliance(Audit *a, const char *dir, const Json *man, const DcalConfig *cfg) {
    char allowed[COMPLIANCE_MAX_RULES][48], path[DCAL_PATH_MAX + 32];
    int na = 0;
    const Json *al = json_get(man, "allow_deviation");
    for (int i = 0; json_at(al, i) && na < COMPLIANCE_MAX_RULES; i++)
        if (al->items[i].type == JSON_STRING) snprintf(allowed[na++], 48, "%s", al->items[i].s);
    RuleResult rr[COMPLIANCE_MAX_RULES];
    int n = compliance_check(cfg, allowed, na, rr), fails = 0;
    for (int i = 0; i < n; i++)
        if (rr[i].status == RULE_FAIL) {
            report(a, "FAIL", "compliance: rule '%s' fails without a declared deviation: expected %s, got %s", rr[i].id,
                   rr[i].expected, rr[i].actual);
            fails++;
        }
    if (!fails) report(a, "OK", "compliance: no undeclared FAIL (%d rules)", n);
    char *fresh = NULL;
    size_t flen = 0, len;
    FILE *f = open_memstream(&fresh, &flen);
    if (!f) dcal_die("out of host memory");
    compliance_print(f, rr, n);
    fclose(f);
    snprintf(path, sizeof path, "%s/compliance.txt", dir);
    char *old = read_file(path, &len);
    if (!old) report(a, "FAIL", "%s: missing or unreadable", path);
    else if (len != flen || memcmp(old, fresh, len)) report(a, "FAIL", "%s: differs from the report regenerated from config.yaml", path);
    else report(a, "OK", "%s: identical to a regenerated report", path);
    free(old);
    free(fresh);
}

static void check_weight_file(Audit *a, const Json *man, const char *what) {
    const Json *o = json_get(man, what);
    const char *path = json_str(o, "path"), *want = json_str(o, "sha256");
    if (!path || !*path) { report(a, "OK", "%s: none used", what); return; }
    if (!want || !*want) { report(a, "WARN", "%s: %s: manifest records no sha256", what, path); return; }
    if (access(path, R_OK) != 0) { report(a, "WARN", "%s: %s: file no longer exists, hash not re-checked", what, path); return; }
    char hex[65];
    if (!sha256_file(path, hex)) report(a, "FAIL", "%s: %s: cannot be read", what, path);
    else if (strcmp(hex, want)) report(a, "FAIL", "%s: %s: sha256 %s differs from the manifest's %s", what, path, hex, want);
    else report(a, "OK", "%s: %s: sha256 matches", what, path);
}

// The data the run trained on: recompute the fingerprint when the data is still there.
static void check_dataset(Audit *a, const Json *man, const DcalConfig *cfg) {
    const char *want = json_str(json_get(man, "dataset"), "fingerprint");
    if (!want || !*want) { report(a, "FAIL", "dataset: manifest records no fingerprint"); return; }
    if (access(cfg->data.root, R_OK) != 0) {
        report(a, "WARN", "dataset: %s no longer exists here, fingerprint not re-checked", cfg->data.root);
        return;
    }
    Dataset d;
    DataConfig dc = cfg->data;
    // A missing or bad file should change the fingerprint, not stop the audit.
    if (!dataset_open_lenient(&d, &dc)) { report(a, "FAIL", "dataset: %s does not open (see the error above)", dc.root); return; }
    if (strcmp(d.fingerprint, want))
        report(a, "FAIL", "dataset: %s fingerprints to %s, the run trained on %s", dc.root, d.fingerprint, want);
    else
        report(a, "OK", "dataset: %s fingerprint matches (%d train / %d test)", dc.root, d.n_train, d.n_test);
    dataset_free(&d);
}

static void check_checkpoint(Audit *a, const char *path, const DcalConfig *cfg, AuditCheckpointFn verify) {
    char summary[512];
    if (!cfg) report(a, "FAIL", "%s: not verified: config.yaml does not load, so the model's tensors are unknown", path);
    else if (verify(path, cfg, summary, sizeof summary)) report(a, "OK", "%s: %s", path, summary);
    else report(a, "FAIL", "%s: does not verify against the model of config.yaml (the line above says why)", path);
}

static void check_checkpoints(Audit *a, const char *dir, const DcalConfig *cfg, AuditCheckpointFn verify) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t len = strlen(e->d_name), sl = strlen(".safetensors");
        if (len <= sl || strcmp(e->d_name + len - sl, ".safetensors")) continue;
        char path[DCAL_PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        check_checkpoint(a, path, cfg, verify);
        n++;
    }
    if (d) closedir(d);
    if (!n) report(a, "WARN", "%s: no checkpoint (*.safetensors) in the run directory", dir);
}

// Steps seen so far in metrics.jsonl: overall, and per "kind".
typedef struct {
    char kinds[16][32];
    double last_kind[16], last;
    int nk;
} StepLog;

// One metrics line; 0 after a FAIL line.
static int metrics_line(Audit *a, StepLog *sl, const char *path, int line, const char *text) {
    Json v;
    if (!parse_object(text, &v)) { report(a, "FAIL", "%s:%d: not a JSON object", path, line); return 0; }
    const Json *st = json_get(&v, "step");
    const char *kind = json_str(&v, "kind");
    int ok = 1;
    if (!st || st->type != JSON_NUMBER) { report(a, "FAIL", "%s:%d: no numeric \"step\"", path, line); ok = 0; }
    else if (st->num < sl->last) { report(a, "FAIL", "%s:%d: step %.0f goes back from %.0f", path, line, st->num, sl->last); ok = 0; }
    else {
        int k = 0;
        while (k < sl->nk && strcmp(sl->kinds[k], kind ? kind : "")) k++;
        if (k < sl->nk && st->num <= sl->last_kind[k]) {
            report(a, "FAIL", "%s:%d: step %.0f repeats for kind '%s'", path, line, st->num, sl->kinds[k]);
            ok = 0;
        } else if (k == sl->nk && sl->nk < 16) snprintf(sl->kinds[sl->nk++], 32, "%s", kind ? kind : "");
        if (k < 16) sl->last_kind[k] = st->num;
        sl->last = st->num;
    }
    json_free(&v);
    return ok;
}

// Every line a JSON object with a numeric "step"; steps never go back, and
// within one "kind" (train / eval / final) they strictly increase.
static void check_metrics(Audit *a, const char *dir) {
    char path[DCAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    size_t len;
    char *text = read_file(path, &len);
    if (!text) { report(a, "FAIL", "%s: missing or unreadable", path); return; }
    StepLog sl = {.last = -INFINITY};
    int line = 0, ok = 1;
    for (char *s = text, *nl; *s && ok; s = nl + 1) {
        nl = strchr(s, '\n');
        if (nl) *nl = 0;
        ok = metrics_line(a, &sl, path, ++line, s);
        if (!nl) break;
    }
    if (ok) report(a, "OK", "%s: %d lines, steps increasing", path, line);
    free(text);
}

// The last row of kind `kind` of metrics.jsonl at `step`: its params hash into p
// and (when m) its adam hash into m; 0 when none. *rows counts that kind's rows.
typedef struct {
    long long step;
    char *p, *m;
    int *rows, found;
} LedgerRow;

static void ledger_match(const Json *v, void *ctx) {
    LedgerRow *r = ctx;
    const char *hp = json_str(v, "params_sha256"), *hm = json_str(v, "adam_sha256");
    const Json *st = json_get(v, "step");
    ++*r->rows;
    if (st && st->type == JSON_NUMBER && st->num == r->step && hp && strlen(hp) == 64 &&
        (!r->m || (hm && strlen(hm) == 64))) {
        memcpy(r->p, hp, 65);
        if (r->m) memcpy(r->m, hm, 65);
        r->found = 1;
    }
}

static int ledger_row(const char *dir, const char *want_kind, long long step, char p[65], char *m, int *rows) {
    LedgerRow r = {step, p, m, rows, 0};
    rundir_each_row(dir, want_kind, ledger_match, &r);
    return r.found;
}

// One file against the run's ledger: the trainer records each checkpoint's
// hashes in metrics.jsonl as it writes it ("checkpoint" rows; "best" rows for
// best.safetensors, params only), so a file swapped for another (one that
// verifies by itself) no longer matches what the run wrote.
static void check_ledger_file(Audit *a, const char *dir, const char *name, const char *kind) {
    char ck[DCAL_PATH_MAX + 300], metrics[DCAL_PATH_MAX + 32], p[65], m[65];
    snprintf(ck, sizeof ck, "%s/%s", dir, name);
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
    SafeTensors st;
    if (access(ck, F_OK) != 0 || !st_load(&st, ck)) return;   // check_checkpoints has said why
    bool adam = !strcmp(kind, "checkpoint");
    const char *step = st_meta(&st, "step"), *hp = st_meta(&st, "params_sha256"), *hm = st_meta(&st, "adam_sha256");
    int rows = 0;
    if (!step || !hp || (adam && !hm)) report(a, "FAIL", "%s: metadata lacks step or hashes", ck);
    else if (!ledger_row(dir, kind, atoll(step), p, adam ? m : NULL, &rows))
        report(a, rows || !adam ? "FAIL" : "WARN", "%s: step %s has no \"%s\" row in %s%s", ck, step, kind, metrics,
               rows || !adam ? "" : " (a run from an older dcal)");
    else if (strcmp(p, hp) || (adam && strcmp(m, hm)))
        report(a, "FAIL", "%s: hashes differ from the run's record of step %s in %s (params %.12s… vs %.12s…)", ck,
               step, metrics, hp, p);
    else report(a, "OK", "%s: matches the run's record of step %s in metrics.jsonl", ck, step);
    st_free(&st);
}

// best.safetensors is chosen on the validation split: a run without one
// (data.val_fraction 0) cannot have chosen it honestly.
static void check_best_origin(Audit *a, const char *dir, const DcalConfig *cfg) {
    char path[DCAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/best.safetensors", dir);
    if (!cfg || access(path, F_OK) != 0) return;
    SafeTensors st;
    if (!st_load(&st, path)) return;
    const char *on = st_meta(&st, "selected_on");
    if (cfg->data.val_fraction <= 0 || !on || strcmp(on, "val"))
        report(a, "FAIL", "%s: not chosen on a validation split (selected_on %s, data.val_fraction %g)", path,
               on ? on : "missing", cfg->data.val_fraction);
    else report(a, "OK", "%s: chosen on the validation split (data.val_fraction %g)", path, cfg->data.val_fraction);
    st_free(&st);
}

// best.safetensors is the trainer's choice: the first highest validation accuracy among the
// run's "val" rows (ties keep the earlier epoch). A file from another epoch, or rows edited
// after the fact, no longer agree.
static void check_best_choice(Audit *a, const char *dir, const DcalConfig *cfg) {
    char path[DCAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/best.safetensors", dir);
    if (!cfg || cfg->data.val_fraction <= 0 || access(path, F_OK) != 0) return;
    SafeTensors st;
    if (!st_load(&st, path)) return;
    const char *s = st_meta(&st, "step");
    long long step = s ? atoll(s) : -1;
    st_free(&st);
    if (step < 0) return;   // check_ledger_file has said why
    RowBest b = {.kind = "val", .key = cfg->model.glca_blocks > 0 ? "acc_combined" : "acc_sa", .upto = INT64_MAX};
    rundir_best_of(dir, &b);
    if (b.acc < 0) report(a, "WARN", "%s: no \"val\" rows in metrics.jsonl to check its choice against", path);
    else if (b.step != step)
        report(a, "FAIL", "%s: step %lld, but the first highest validation accuracy in metrics.jsonl (%.2f%%, "
               "epoch %d) is at step %lld", path, step, 100 * b.acc, b.epoch, (long long)b.step);
    else report(a, "OK", "%s: the first highest validation accuracy in metrics.jsonl (%.2f%%, epoch %d)", path,
                100 * b.acc, b.epoch);
}

// checkpoint.safetensors, the kept checkpoint-step<S> files and best.safetensors.
static void check_ledger(Audit *a, const char *dir, const DcalConfig *cfg) {
    check_ledger_file(a, dir, "checkpoint.safetensors", "checkpoint");
    DIR *d = opendir(dir);
    size_t pl = strlen("checkpoint-step"), sl = strlen(".safetensors");
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n > pl + sl && !strncmp(e->d_name, "checkpoint-step", pl) && !strcmp(e->d_name + n - sl, ".safetensors"))
            check_ledger_file(a, dir, e->d_name, "checkpoint");
    }
    if (d) closedir(d);
    check_ledger_file(a, dir, "best.safetensors", "best");
    check_best_origin(a, dir, cfg);
    check_best_choice(a, dir, cfg);
}

int run_audit(const char *dir, AuditCheckpointFn verify_checkpoint) {
    Audit a = {0};
    Json man = {0};
    DcalConfig cfg;
    int have_man = check_manifest(&a, dir, &man);
    int have_cfg = check_config(&a, dir, &man, have_man, &cfg);
    if (have_cfg) check_compliance(&a, dir, &man, &cfg);
    if (have_cfg && have_man) check_world(&a, &man, &cfg);
    check_checkpoints(&a, dir, have_cfg ? &cfg : NULL, verify_checkpoint);
    if (have_man && have_cfg) check_dataset(&a, &man, &cfg);
    if (have_man) {
        check_weight_file(&a, &man, "pretrained");
        check_weight_file(&a, &man, "init");
    }
    check_metrics(&a, dir);
    check_ledger(&a, dir, have_cfg ? &cfg : NULL);
    a.n_fail += steplog_audit(dir);   // steps.tsv: well-formed, agrees with metrics.jsonl
    json_free(&man);
    printf("%s: %s\n", dir, a.n_fail ? "audit FAILED" : "audit passed");
    return a.n_fail;
}

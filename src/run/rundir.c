// rundir.c: the run directory (ARCHITECTURE.md §6). Everything needed to say what a run
// was is written before the first step: resolved config, compliance report,
// manifest (who/what/where, hashes). `dcal audit` (src/run/audit.c) re-checks it.
// A run holds an flock on <dir>/.lock while it runs; --resume opens exactly the
// directory given and first trims metrics.jsonl back to its checkpoint.
#include "run/rundir.h"
#include <dirent.h>
#include <math.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>
#include "compliance/compliance.h"
#include "core/json.h"
#include "git_commit.h"
#include "core/sha256.h"

char *openblas_get_config(void);   // OpenBLAS; declared here to avoid depending on its header's location

static int exists(const char *path) { return access(path, F_OK) == 0; }

// config.yaml as bytes, so the manifest can hash exactly what is on disk.
static char *config_yaml_bytes(const DcalConfig *c, size_t *len) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f) return NULL;
    int ok = config_write_yaml(c, f);
    fclose(f);
    if (!ok) { free(buf); return NULL; }
    return buf;
}

// ---- the lock ------------------------------------------------------------------

#define LOCK_NAME ".lock"

// The pid a lock holder wrote into the lock file, as " (pid N)", or "".
static void holder_pid(int fd, char *out, size_t cap) {
    char buf[24];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    out[0] = 0;
    if (n <= 0) return;
    buf[n] = 0;
    long pid = strtol(buf, NULL, 10);
    if (pid > 0) snprintf(out, cap, " (pid %ld)", pid);
}

// flock(LOCK_EX) on <dir>/.lock, kept open until rundir_close: the kernel
// drops it when the process ends, kill -9 included, so a lock never goes stale.
// The file itself stays (removing it would let two processes lock two files).
static int lock_run(RunDir *r) {
    char path[DCAL_PATH_MAX + 16], who[40];
    snprintf(path, sizeof path, "%s/" LOCK_NAME, r->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) { dcal_err("%s: cannot create the run's lock file: %s", path, strerror(errno)); return 0; }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int busy = errno == EWOULDBLOCK;
        if (busy) {
            holder_pid(fd, who, sizeof who);
            dcal_err("%s: in use by another dcal process%s holding %s (wait for it to finish or stop it)", r->dir,
                     who, path);
        } else {
            dcal_err("%s: cannot lock: %s", path, strerror(errno));
        }
        close(fd);
        return 0;
    }
    char pid[24];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());   // for the message above; informative only
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) { /* the lock holds regardless */ }
    r->lock_fd = fd;
    r->locked = true;
    return 1;
}

// ---- opening a run -------------------------------------------------------------

// Names dcal writes into a run directory before its manifest exists (a start
// that failed or was killed): a new run may take such a directory over.
static int dcal_leftover(const char *name) {
    static const char *const own[] = {".", "..", LOCK_NAME, "config.yaml", "compliance.txt", "metrics.jsonl",
                                     "metrics.csv", NULL};
    for (const char *const *o = own; *o; o++)
        if (!strcmp(name, *o)) return 1;
    // write_file_atomic's temp file; the TensorBoard events file (metrics_views.c)
    return strstr(name, ".tmp.") != NULL || !strncmp(name, "events.out.tfevents.", 20);
}

// A new run never writes into a directory holding someone else's files: 1 when
// dir is absent, holds a dcal run (manifest.json: judged under the lock) or
// only dcal's leftovers; else 0 after an error line naming one foreign entry.
static int check_not_foreign(const char *dir) {
    char path[DCAL_PATH_MAX + 32], name[256] = "";
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    if (exists(path)) return 1;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 1;
        dcal_err("%s: cannot use as a run directory: %s", dir, strerror(errno));
        return 0;
    }
    for (struct dirent *e; !name[0] && (e = readdir(d));)
        if (!dcal_leftover(e->d_name)) snprintf(name, sizeof name, "%s", e->d_name);
    closedir(d);
    if (!name[0]) return 1;
    dcal_err("%s: not empty and not a dcal run (it holds '%s' but no manifest.json); refusing to write into it "
             "(choose another train.run_name or train.out_dir)", dir, name);
    return 0;
}

// --resume: exactly the directory given (a moved or copied run stays where it is).
static int open_existing(RunDir *r, const char *dir) {
    strcpy(r->dir, dir);   // rundir_open checked the length
    char path[DCAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/manifest.json", r->dir);
    if (!exists(path)) {   // checked before the lock: no .lock is created in a directory that is not a run
        dcal_err("%s: no run to resume here (manifest.json missing: a start that stopped before its first step "
                 "leaves this; start it again with the same command)", r->dir);
        return 0;
    }
    return lock_run(r);
}

// A config's own run name (the quickstart's "synthetic") that already holds a
// run: the next free NAME-2, NAME-3, ..., said aloud, so the same command runs
// twice without touching the first run. A name given with --set stays exact.
static void next_free_name(const DcalConfig *c, DcalConfig *cc) {
    const char *key = "train.run_name=";
    for (int i = 0; i < c->n_overrides; i++)
        if (!strncmp(c->overrides[i], key, strlen(key))) return;
    char path[DCAL_PATH_MAX + 192], name[sizeof cc->train.run_name];
    const char *out = c->train.out_dir[0] ? c->train.out_dir : ".";
    snprintf(path, sizeof path, "%s/%s/manifest.json", out, c->train.run_name);
    if (!exists(path)) return;
    for (int k = 2; k < 1000; k++) {
        snprintf(name, sizeof name, "%.100s-%d", c->train.run_name, k);
        snprintf(path, sizeof path, "%s/%s", out, name);
        if (exists(path)) continue;
        printf("dcal: %s/%s holds an earlier run (continue it with 'dcal train --resume %s/%s'); this run is %s\n",
               out, c->train.run_name, out, c->train.run_name, path);
        snprintf(cc->train.run_name, sizeof cc->train.run_name, "%s", name);
        return;
    }
}

static int open_new(RunDir *r, const DcalConfig *c) {
    DcalConfig cc = *c;   // the copy written to config.yaml carries the chosen run name, so --resume finds it
    if (!cc.train.run_name[0]) {
        char ts[32];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tm);
        snprintf(cc.train.run_name, sizeof cc.train.run_name, "%s-%s", c->data.dataset, ts);
    } else {
        next_free_name(c, &cc);
    }
    int n = snprintf(r->dir, sizeof r->dir, "%s/%s", c->train.out_dir[0] ? c->train.out_dir : ".", cc.train.run_name);
    if (n >= (int)sizeof r->dir) { dcal_err("run directory path too long: %s", r->dir); return 0; }
    if (!check_not_foreign(r->dir)) return 0;
    if (mkdir_p(r->dir) != 0) { dcal_err("%s: cannot create run directory: %s", r->dir, strerror(errno)); return 0; }
    if (!lock_run(r)) return 0;
    char path[DCAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/manifest.json", r->dir);
    if (exists(path)) {
        dcal_err("%s: a run already exists here (manifest.json); continue it with --resume %s or start a new one "
                 "with --set train.run_name=NAME", r->dir, r->dir);
        return 0;
    }
    size_t len;
    char *yaml = config_yaml_bytes(&cc, &len);
    if (!yaml) { dcal_err("%s: cannot render config.yaml", r->dir); return 0; }
    snprintf(path, sizeof path, "%s/config.yaml", r->dir);
    int ok = write_file_atomic(path, yaml, len);
    free(yaml);
    return ok;
}

int rundir_open(RunDir *r, const DcalConfig *c, const char *resume_dir) {
    char dir[sizeof r->dir];   // resume_dir may be r->dir itself (reopening a closed run)
    if (resume_dir && strlen(resume_dir) >= sizeof dir) { dcal_err("%s: run directory path too long", resume_dir); return 0; }
    if (resume_dir) resume_dir = strcpy(dir, resume_dir);
    memset(r, 0, sizeof *r);
    int ok = resume_dir ? open_existing(r, resume_dir) : open_new(r, c);
    if (!ok) rundir_close(r);   // releases the lock if it was taken
    return ok;
}

// ---- metrics.jsonl on resume ----------------------------------------------------

// Whether a complete metrics line survives a resume from a checkpoint at step.
// A line that does not parse is kept: it is not ours to destroy, and the audit names it.
static int keep_row(const char *line, size_t len, int64_t step) {
    Json v;
    JsonError e;
    if (!json_parse(line, len, 0, &v, &e)) return 1;
    const Json *st = json_get(&v, "step");
    const char *kind = json_str(&v, "kind");
    int keep = !(kind && !strcmp(kind, "final")) && !(st && st->type == JSON_NUMBER && st->num > (double)step);
    json_free(&v);
    return keep;
}

// Rows written after the checkpoint (a kill -9 between a log line and the next
// save) would repeat their steps once the resumed run writes them again. The
// rewrite is atomic (temp, fsync, rename): killed during it, the old file stays.
static int truncate_metrics(const char *path, int64_t step) {
    if (access(path, F_OK) != 0) return 1;   // nothing logged yet
    size_t len;
    char *text = read_file(path, &len);
    if (!text) { dcal_err("%s: cannot read: %s", path, strerror(errno)); return 0; }
    char *out = xmalloc(len + 1);
    size_t n = 0;
    int dropped = 0;
    for (char *s = text; s < text + len;) {
        char *nl = memchr(s, '\n', (size_t)(text + len - s));
        if (!nl) { dropped++; break; }   // a torn last line: the stop cut it mid-write
        size_t l = (size_t)(nl - s) + 1;
        if (keep_row(s, l - 1, step)) { memcpy(out + n, s, l); n += l; }
        else dropped++;
        s = nl + 1;
    }
    int ok = !dropped || write_file_atomic(path, out, n);
    if (dropped && ok)
        printf("dcal: %s: dropped %d row(s) written after the checkpoint at step %lld\n", path, dropped,
               (long long)step);
    free(out);
    free(text);
    return ok;
}

int rundir_open_metrics(RunDir *r, bool resume, int64_t resume_step) {
    char path[DCAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->dir);
    if (resume && resume_step < 0) {   // would drop every row
        dcal_err("%s: checkpoint step %lld is negative; metrics.jsonl left as it is", r->dir, (long long)resume_step);
        return 0;
    }
    if (resume && !truncate_metrics(path, resume_step)) return 0;
    r->metrics = fopen(path, resume ? "a" : "w");   // a new run: no leftover rows of a failed start
    if (!r->metrics) { dcal_err("%s: cannot open for appending: %s", path, strerror(errno)); return 0; }
    setvbuf(r->metrics, NULL, _IOLBF, 0);   // a crash loses at most the line being written
    return views_open(&r->views, r->dir);
}

void rundir_each_row(const char *dir, const char *kind, RunRowFn fn, void *ctx) {
    char path[DCAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    size_t len;
    char *text = read_file(path, &len);
    for (char *s = text, *nl; s && s < text + len; s = nl + 1) {
        if (!(nl = memchr(s, '\n', (size_t)(text + len - s)))) break;   // a torn last line is no row
        Json v;
        JsonError e;
        if (!json_parse(s, (size_t)(nl - s), 0, &v, &e)) continue;
        const char *k = json_str(&v, "kind");
        if (k && !strcmp(k, kind)) fn(&v, ctx);
        json_free(&v);
    }
    free(text);
}

static void row_best(const Json *row, void *ctx) {
    RowBest *b = ctx;
    double a;
    int64_t st;
    int ep;
    if (rundir_row_acc(row, b->key, &a, &st, &ep) && st <= b->upto && a > b->acc) b->acc = a, b->step = st, b->epoch = ep;
}

typedef struct {
    int64_t step;
    bool found;
} LedgerFind;

static void ledger_step(const Json *row, void *ctx) {
    LedgerFind *f = ctx;
    const Json *st = json_get(row, "step");
    if (st && st->type == JSON_NUMBER && st->num == (double)f->step) f->found = true;
}

bool rundir_ledger_has(const RunDir *r, const char *kind, int64_t step) {
    LedgerFind f = {step, false};
    rundir_each_row(r->dir, kind, ledger_step, &f);
    return f.found;
}

bool rundir_row_acc(const Json *row, const char *key, double *acc, int64_t *step, int *epoch) {
    const Json *a = json_get(row, key), *n = json_get(row, "n"), *st = json_get(row, "step");
    const Json *ep = json_get(row, "epoch");
    if (!a || !n || !st || !ep || a->type != JSON_NUMBER || n->type != JSON_NUMBER || st->type != JSON_NUMBER ||
        ep->type != JSON_NUMBER || !(n->num >= 1) || n->num > 1e6)
        return false;
    *acc = (double)llround(a->num * n->num) / n->num;
    *step = (int64_t)st->num;
    *epoch = (int)ep->num;
    return true;
}

void rundir_best_of(const char *dir, RowBest *b) {
    b->acc = -1, b->step = -1, b->epoch = -1;
    rundir_each_row(dir, b->kind, row_best, b);
}

int rundir_check_dataset(const RunDir *r, const char *data_root, const char *fingerprint) {
    char path[DCAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/manifest.json", r->dir);
    size_t len;
    char *text = read_file(path, &len);
    Json man;
    JsonError e;
    if (!text || !json_parse(text, len, 0, &man, &e)) {
        dcal_err("%s: cannot read the run's manifest (%s)", path, text ? e.msg : strerror(errno));
        free(text);
        return 0;
    }
    free(text);
    const char *want = json_str(json_get(&man, "dataset"), "fingerprint");
    int ok = want && !strcmp(want, fingerprint);
    if (!want || !*want)
        dcal_err("%s: records no dataset fingerprint (\"dataset\": {\"fingerprint\"}), so --resume cannot check the "
                 "data", path);
    else if (!ok)
        dcal_err("%s: dataset fingerprint %s differs from the run's %s (%s); --resume needs the data the run "
                 "trained on (data.root may move, the files may not change)", data_root, fingerprint, want, path);
    json_free(&man);
    return ok;
}

// ---- manifest.json -------------------------------------------------------------

// "model name" of the first CPU in /proc/cpuinfo ("" when unreadable).
static void cpu_model(char *out, size_t cap) {
    out[0] = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *v = strchr(line, ':');
            if (!v) continue;
            v++;
            while (*v == ' ') v++;
            v[strcspn(v, "\n")] = 0;
            snprintf(out, cap, "%s", v);
            break;
        }
    fclose(f);
}

static void kv_array(JsonW *w, const char *key, int n, const char *(*item)(const void *, int), const void *ctx) {
    jw_key(w, key);
    jw_begin_array(w);
    for (int i = 0; i < n; i++) jw_string(w, item(ctx, i));
    jw_end_array(w);
}
static const char *argv_item(const void *ctx, int i) { return ((const ManifestInfo *)ctx)->argv[i]; }
static const char *allowed_item(const void *ctx, int i) { return ((const ManifestInfo *)ctx)->allowed[i]; }
static const char *override_item(const void *ctx, int i) { return ((const DcalConfig *)ctx)->overrides[i]; }

// Who ran what, where: version, host, time, backend, device, libraries.
static void manifest_origin(JsonW *w, const ManifestInfo *in) {
    char host[256] = "", ts[32], dev[256];
    gethostname(host, sizeof host - 1);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *backend = in->backend ? in->backend : "";
    snprintf(dev, sizeof dev, "%s", in->device_name ? in->device_name : "");
    if (!dev[0] && !strcmp(backend, "cpu")) cpu_model(dev, sizeof dev);
    jw_kv_string(w, "dcal_version", DCAL_VERSION);
    jw_kv_string(w, "git_commit", DCAL_GIT_COMMIT);
    jw_kv_string(w, "hostname", host);
    jw_kv_string(w, "start_time_utc", ts);
    jw_kv_string(w, "backend", backend);
    jw_kv_string(w, "device_name", dev);
    jw_kv_string(w, "backend_describe", in->backend_describe);
    // tests/e2e_bitwise.sh reads "openblas": "<config>" from here to name the CPU kind.
    jw_key(w, "libraries");
    jw_begin_object(w);
    jw_kv_string(w, "libyaml", yaml_get_version_string());
    jw_kv_string(w, "openblas", openblas_get_config());
    jw_kv_string(w, "openssl", OpenSSL_version(OPENSSL_VERSION));
    jw_kv_string(w, "stb", "libstb-dev");
    jw_end_object(w);
}

static void kv_file(JsonW *w, const char *key, const char *path, const char *sha) {
    jw_key(w, key);
    jw_begin_object(w);
    jw_kv_string(w, "path", path);
    jw_kv_string(w, "sha256", sha);
    jw_end_object(w);
}

// Deviations: the config's (with reasons) and --allow-deviation ids; audit re-runs compliance with the latter.
static void manifest_deviations(JsonW *w, const DcalConfig *c, const ManifestInfo *in) {
    jw_key(w, "deviations");
    jw_multiline_next(w);   // one deviation per line
    jw_begin_array(w);
    for (int i = 0; i < c->n_deviations + in->n_allowed; i++) {
        bool cfg = i < c->n_deviations;
        jw_begin_object(w);
        jw_kv_string(w, "rule", cfg ? c->deviations[i].rule : in->allowed[i - c->n_deviations]);
        jw_kv_string(w, "reason", cfg ? c->deviations[i].reason : "allowed by --allow-deviation");
        jw_kv_string(w, "declared_by", cfg ? "config" : "--allow-deviation");
        jw_end_object(w);
    }
    jw_end_array(w);
    kv_array(w, "allow_deviation", in->n_allowed, allowed_item, in);
}

// Whose attention kernels ran and whether their backward is deterministic (train.attention).
static void manifest_attention(JsonW *w, const DcalConfig *c) {
    int det = 0;
    const char *note = config_attention_note(c->train.attention, &det);
    jw_key(w, "attention");
    jw_begin_object(w);
    jw_kv_string(w, "impl", c->train.attention);
    jw_key(w, "backward_deterministic");
    jw_bool(w, det);
    jw_kv_string(w, "note", note ? note : "");
    jw_end_object(w);
}

// One key per line at the top level, nested values inline (", " and ": ").
static void write_manifest(JsonW *w, const DcalConfig *c, const ManifestInfo *in, const char *cfg_sha) {
    jw_begin_object(w);
    jw_kv_string(w, "format", "dcal-manifest-1");
    kv_array(w, "argv", in->argc, argv_item, in);
    manifest_origin(w, in);
    jw_key(w, "seed");
    jw_uint(w, c->train.seed);
    jw_kv_int(w, "world_size", c->train.devices > 0 ? c->train.devices : 1);   // processes (src/dist/)
    jw_key(w, "update_in_backward");   // in force: AdamW inside backward, one block's gradient held
    jw_bool(w, c->model.grads_per_block);
    manifest_attention(w, c);
    jw_key(w, "dataset");
    jw_begin_object(w);
    jw_kv_string(w, "name", c->data.dataset);
    jw_kv_string(w, "root", c->data.root);
    jw_kv_string(w, "fingerprint", in->dataset_fingerprint);
    if (in->val_n > 0) {   // which training images chose best.safetensors instead of training (data.val_fraction)
        jw_key(w, "val_split");
        jw_begin_object(w);
        jw_kv_double(w, "fraction", "%.17g", c->data.val_fraction);
        jw_kv_string(w, "per", "class");
        jw_key(w, "seed");
        jw_uint(w, c->train.seed);
        jw_kv_int(w, "n", in->val_n);
        jw_kv_string(w, "sha256", in->val_sha256);
        jw_end_object(w);
    }
    jw_end_object(w);
    kv_file(w, "pretrained", in->pretrained_path, in->pretrained_sha256);
    kv_file(w, "init", in->init_path, in->init_sha256);
    manifest_deviations(w, c, in);
    kv_array(w, "overrides", c->n_overrides, override_item, c);
    jw_kv_string(w, "config_source", c->source);
    jw_kv_string(w, "config_sha256", cfg_sha);
    jw_end_object(w);
    jw_append(w, "\n");
}

// compliance.txt: the gate's own table (config_resolve ran the gate once), never re-evaluated.
static int write_compliance(RunDir *r, const ManifestInfo *info) {
    const RuleResult *rr = info->rules;
    int n = info->n_rules;
    if (!rr) { dcal_err("internal: %s: no compliance table to record", r->dir); return 0; }
    char *buf = NULL, path[DCAL_PATH_MAX + 32];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) { dcal_err("%s: cannot render compliance.txt", r->dir); return 0; }
    compliance_print(f, rr, n);
    fclose(f);
    snprintf(path, sizeof path, "%s/compliance.txt", r->dir);
    int ok = write_file_atomic(path, buf, len);
    free(buf);
    return ok;
}

int rundir_write_manifest(RunDir *r, const DcalConfig *c, const ManifestInfo *info) {
    char path[DCAL_PATH_MAX + 32], sha[65];
    // compliance.txt here rather than in rundir_open: only the caller knows --allow-deviation.
    if (!write_compliance(r, info)) return 0;
    snprintf(path, sizeof path, "%s/config.yaml", r->dir);
    if (!sha256_file(path, sha)) return 0;
    JsonW w;
    jw_init(&w, true, 1);
    write_manifest(&w, c, info, sha);
    size_t len;
    const char *text = jw_text(&w, &len);
    snprintf(path, sizeof path, "%s/manifest.json", r->dir);
    int ok = write_file_atomic(path, text, len);
    jw_free(&w);
    return ok;
}

void rundir_metric(RunDir *r, const char *json_object) {
    if (!r->metrics) return;
    char *row = views_stamp(&r->views, json_object);
    fputs(row, r->metrics);
    fputc('\n', r->metrics);
    fflush(r->metrics);
    views_row(&r->views, row);
    free(row);
}

void rundir_metric_json(RunDir *r, const JsonW *w) { rundir_metric(r, jw_text(w, NULL)); }

void rundir_close(RunDir *r) {
    if (r->metrics) fclose(r->metrics);
    views_close(&r->views);
    r->metrics = NULL;
    if (r->locked) close(r->lock_fd);   // releases the flock
    r->locked = false;
}

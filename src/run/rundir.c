// rundir.c: the run directory (ARCHITECTURE.md §6). Everything needed to say what a run
// was is written before the first step: resolved config, compliance report,
// manifest (who/what/where, hashes). `dcal audit` (src/run/audit.c) re-checks it.
#include "run/rundir.h"
#include <errno.h>
#include <openssl/crypto.h>
#include <string.h>
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

int rundir_open(RunDir *r, const DcalConfig *c, int resume) {
    memset(r, 0, sizeof *r);
    DcalConfig cc = *c;   // the copy written to config.yaml carries the chosen run name, so --resume finds it
    if (!cc.train.run_name[0]) {
        char ts[32];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tm);
        snprintf(cc.train.run_name, sizeof cc.train.run_name, "%s-%s", c->data.dataset, ts);
    }
    int n = snprintf(r->dir, sizeof r->dir, "%s/%s", c->train.out_dir[0] ? c->train.out_dir : ".", cc.train.run_name);
    if (n >= (int)sizeof r->dir) { dcal_err("run directory path too long: %s", r->dir); return 0; }
    char path[DCAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/manifest.json", r->dir);
    if (resume) {
        if (!exists(path)) {
            dcal_err("%s: no run to resume here (manifest.json missing)", r->dir);
            return 0;
        }
    } else {
        if (exists(path)) {
            dcal_err("%s: a run already exists here (manifest.json); continue it with --resume %s or start a new one "
                     "with --set train.run_name=NAME", r->dir, r->dir);
            return 0;
        }
        if (mkdir_p(r->dir) != 0) { dcal_err("%s: cannot create run directory: %s", r->dir, strerror(errno)); return 0; }
        size_t len;
        char *yaml = config_yaml_bytes(&cc, &len);
        if (!yaml) { dcal_err("%s: cannot render config.yaml", r->dir); return 0; }
        snprintf(path, sizeof path, "%s/config.yaml", r->dir);
        int ok = write_file_atomic(path, yaml, len);
        free(yaml);
        if (!ok) return 0;
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->dir);
    r->metrics = fopen(path, "a");
    if (!r->metrics) { dcal_err("%s: cannot open for appending: %s", path, strerror(errno)); return 0; }
    setvbuf(r->metrics, NULL, _IOLBF, 0);   // a crash loses at most the line being written
    return 1;
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

// One key per line at the top level, nested values inline (", " and ": ").
static void write_manifest(JsonW *w, const DcalConfig *c, const ManifestInfo *in, const char *cfg_sha) {
    jw_begin_object(w);
    jw_kv_string(w, "format", "dcal-manifest-1");
    kv_array(w, "argv", in->argc, argv_item, in);
    manifest_origin(w, in);
    jw_key(w, "seed");
    jw_uint(w, c->train.seed);
    jw_key(w, "dataset");
    jw_begin_object(w);
    jw_kv_string(w, "name", c->data.dataset);
    jw_kv_string(w, "root", c->data.root);
    jw_kv_string(w, "fingerprint", in->dataset_fingerprint);
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
    fputs(json_object, r->metrics);
    fputc('\n', r->metrics);
    fflush(r->metrics);
}

void rundir_metric_json(RunDir *r, const JsonW *w) { rundir_metric(r, jw_text(w, NULL)); }

void rundir_close(RunDir *r) {
    if (r->metrics) fclose(r->metrics);
    r->metrics = NULL;
}

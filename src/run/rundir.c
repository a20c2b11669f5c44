// rundir.c: the run directory (DESIGN §6). Everything needed to say what a run
// was is written before the first step: resolved config, compliance report,
// manifest (who/what/where, hashes). `dcal audit` (src/cmd/audit.c) re-checks it.
#include "run/rundir.h"
#include <errno.h>
#include <openssl/crypto.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>
#include "compliance/compliance.h"
#include "git_commit.h"
#include "core/sha256.h"
#ifdef DCAL_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

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

// ---- JSON writing ------------------------------------------------------------

static void js_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p == '\r') fputs("\\r", f);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);   // UTF-8 passes through
    }
    fputc('"', f);
}
static void js_kv(FILE *f, const char *k, const char *v, const char *end) {
    fputs("  ", f);
    js_str(f, k);
    fputs(": ", f);
    js_str(f, v);
    fputs(end, f);
}

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

static void write_manifest(FILE *f, const DcalConfig *c, const ManifestInfo *in, const char *cfg_sha) {
    char host[256] = "", ts[32], dev[256];
    gethostname(host, sizeof host - 1);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(dev, sizeof dev, "%s", in->device_name ? in->device_name : "");
    const char *backend = in->backend ? in->backend : "";
    if (!dev[0] && !strcmp(backend, "cpu")) cpu_model(dev, sizeof dev);
#ifdef DCAL_HAVE_CUDA
    struct cudaDeviceProp prop;
    if (!dev[0] && !strcmp(backend, "cuda") && cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
        snprintf(dev, sizeof dev, "%s", prop.name);
#endif
    fputs("{\n  \"format\": \"dcal-manifest-1\",\n  \"argv\": [", f);
    for (int i = 0; i < in->argc; i++) {
        if (i) fputs(", ", f);
        js_str(f, in->argv[i]);
    }
    fputs("],\n", f);
    js_kv(f, "dcal_version", DCAL_VERSION, ",\n");
    js_kv(f, "git_commit", DCAL_GIT_COMMIT, ",\n");
    js_kv(f, "hostname", host, ",\n");
    js_kv(f, "start_time_utc", ts, ",\n");
    js_kv(f, "backend", backend, ",\n");
    js_kv(f, "device_name", dev, ",\n");
    fputs("  \"libraries\": {\"libyaml\": ", f);
    js_str(f, yaml_get_version_string());
    fputs(", \"openblas\": ", f);
    js_str(f, openblas_get_config());
    fputs(", \"openssl\": ", f);
    js_str(f, OpenSSL_version(OPENSSL_VERSION));
    fputs(", \"stb\": \"libstb-dev\"", f);
#ifdef DCAL_HAVE_CUDA
    int rt = 0;
    cudaRuntimeGetVersion(&rt);
    fprintf(f, ", \"cuda_runtime\": \"%d.%d\"", rt / 1000, rt % 1000 / 10);
#endif
    fputs("},\n", f);
    fprintf(f, "  \"seed\": %llu,\n", (unsigned long long)c->train.seed);
    fputs("  \"dataset\": {\"name\": ", f);
    js_str(f, c->data.dataset);
    fputs(", \"root\": ", f);
    js_str(f, c->data.root);
    fputs(", \"fingerprint\": ", f);
    js_str(f, in->dataset_fingerprint);
    fputs("},\n  \"pretrained\": {\"path\": ", f);
    js_str(f, in->pretrained_path);
    fputs(", \"sha256\": ", f);
    js_str(f, in->pretrained_sha256);
    fputs("},\n  \"init\": {\"path\": ", f);
    js_str(f, in->init_path);
    fputs(", \"sha256\": ", f);
    js_str(f, in->init_sha256);
    // Deviations: the config's (with reasons) and --allow-deviation ids; audit re-runs compliance with the latter.
    fputs("},\n  \"deviations\": [", f);
    for (int i = 0; i < c->n_deviations; i++) {
        fputs(i ? ",\n    {\"rule\": " : "\n    {\"rule\": ", f);
        js_str(f, c->deviations[i].rule);
        fputs(", \"reason\": ", f);
        js_str(f, c->deviations[i].reason);
        fputs(", \"declared_by\": \"config\"}", f);
    }
    for (int i = 0; i < in->n_allowed; i++) {
        fputs(i || c->n_deviations ? ",\n    {\"rule\": " : "\n    {\"rule\": ", f);
        js_str(f, in->allowed[i]);
        fputs(", \"reason\": \"allowed by --allow-deviation\", \"declared_by\": \"--allow-deviation\"}", f);
    }
    fputs("],\n  \"allow_deviation\": [", f);
    for (int i = 0; i < in->n_allowed; i++) {
        if (i) fputs(", ", f);
        js_str(f, in->allowed[i]);
    }
    fputs("],\n  \"overrides\": [", f);
    for (int i = 0; i < c->n_overrides; i++) {
        if (i) fputs(", ", f);
        js_str(f, c->overrides[i]);
    }
    fputs("],\n", f);
    js_kv(f, "config_source", c->source, ",\n");
    js_kv(f, "config_sha256", cfg_sha, "\n}\n");
}

int rundir_write_manifest(RunDir *r, const DcalConfig *c, const ManifestInfo *info) {
    char path[DCAL_PATH_MAX + 32], sha[65];
    // compliance.txt here rather than in rundir_open: only the caller knows --allow-deviation.
    RuleResult rr[COMPLIANCE_MAX_RULES];
    int n = compliance_check(c, info->allowed, info->n_allowed, rr);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    compliance_print(f, rr, n);
    fclose(f);
    snprintf(path, sizeof path, "%s/compliance.txt", r->dir);
    int ok = write_file_atomic(path, buf, len);
    free(buf);
    if (!ok) return 0;
    snprintf(path, sizeof path, "%s/config.yaml", r->dir);
    if (!sha256_file(path, sha)) return 0;
    buf = NULL;
    f = open_memstream(&buf, &len);
    write_manifest(f, c, info, sha);
    fclose(f);
    snprintf(path, sizeof path, "%s/manifest.json", r->dir);
    ok = write_file_atomic(path, buf, len);
    free(buf);
    return ok;
}

void rundir_metric(RunDir *r, const char *json_object) {
    if (!r->metrics) return;
    fputs(json_object, r->metrics);
    fputc('\n', r->metrics);
    fflush(r->metrics);
}

void rundir_close(RunDir *r) {
    if (r->metrics) fclose(r->metrics);
    r->metrics = NULL;
}

// audit.c: `dcal audit RUN_DIR` — re-check a run directory (DESIGN §6):
// manifest, config hash, compliance, checkpoints' parameter hashes, weight-file
// hashes, metrics. One line per check (OK/WARN/FAIL); exit 1 on any FAIL.
//
// Checkpoint hash (as written by checkpoint.c): params_sha256 = sha256 over the
// raw little-endian F32 bytes of the model tensors — every tensor whose name
// does not start with "adam." — concatenated in file order, which is the
// model's table order since checkpoints are written in table order.
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>
#include "cmd/cmd.h"
#include "compliance/compliance.h"
#include "config/config.h"
#include "datasets/dataset.h"
#include "core/safetensors.h"
#include "core/sha256.h"

// ---- a minimal JSON reader (objects, arrays, strings, numbers, literals) ----

typedef struct Jv {
    char type;                 // 'o' object, 'a' array, 's' string, 'n' number, 'b' bool, 'z' null
    char *s;                   // string value
    double n;                  // number / bool value
    int len;                   // members of an object / array
    char **keys;               // object keys [len]
    struct Jv *items;          // members [len]
} Jv;

static void jv_free(Jv *v) {
    for (int i = 0; i < v->len; i++) {
        jv_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items); free(v->keys); free(v->s);
    memset(v, 0, sizeof *v);
}

static void ws(const char **p) { while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r') (*p)++; }

static void put_utf8(char **o, unsigned cp) {
    if (cp < 0x80) *(*o)++ = (char)cp;
    else if (cp < 0x800) { *(*o)++ = (char)(0xC0 | cp >> 6); *(*o)++ = (char)(0x80 | (cp & 63)); }
    else if (cp < 0x10000) { *(*o)++ = (char)(0xE0 | cp >> 12); *(*o)++ = (char)(0x80 | (cp >> 6 & 63)); *(*o)++ = (char)(0x80 | (cp & 63)); }
    else { *(*o)++ = (char)(0xF0 | cp >> 18); *(*o)++ = (char)(0x80 | (cp >> 12 & 63)); *(*o)++ = (char)(0x80 | (cp >> 6 & 63)); *(*o)++ = (char)(0x80 | (cp & 63)); }
}
static int hex4(const char *p, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        *v = *v * 16 + (unsigned)d;
    }
    return 1;
}

static char *jstr(const char **p) {
    if (**p != '"') return NULL;
    const char *q = ++*p;
    while (*q && *q != '"') q += *q == '\\' && q[1] ? 2 : 1;
    if (!*q) return NULL;
    char *out = xmalloc((size_t)(q - *p) + 4), *o = out;   // escapes never expand
    while (**p != '"') {
        char c = *(*p)++;
        if ((unsigned char)c < 0x20) { free(out); return NULL; }
        if (c != '\\') { *o++ = c; continue; }
        c = *(*p)++;
        unsigned cp, lo;
        switch (c) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case '"': case '\\': case '/': *o++ = c; break;
        case 'u':
            if (!hex4(*p, &cp)) { free(out); return NULL; }
            *p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && (*p)[0] == '\\' && (*p)[1] == 'u' && hex4(*p + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                *p += 6;
            }
            put_utf8(&o, cp);
            break;
        default: free(out); return NULL;
        }
    }
    (*p)++;
    *o = 0;
    return out;
}

static int jparse(const char **p, Jv *v, int depth) {
    memset(v, 0, sizeof *v);
    ws(p);
    if (depth > 64) return 0;
    char c = **p;
    if (c == '{' || c == '[') {
        v->type = c == '{' ? 'o' : 'a';
        (*p)++;
        ws(p);
        if (**p == (c == '{' ? '}' : ']')) { (*p)++; return 1; }
        for (;;) {
            char *key = NULL;
            if (c == '{') {
                ws(p);
                if (!(key = jstr(p))) return 0;
                ws(p);
                if (**p != ':') { free(key); return 0; }
                (*p)++;
            }
            v->items = realloc(v->items, (size_t)(v->len + 1) * sizeof(Jv));
            if (c == '{') { v->keys = realloc(v->keys, (size_t)(v->len + 1) * sizeof(char *)); v->keys[v->len] = key; }
            int ok = jparse(p, &v->items[v->len], depth + 1);
            v->len++;   // counted even on failure so jv_free releases it
            if (!ok) return 0;
            ws(p);
            if (**p == ',') { (*p)++; continue; }
            if (**p == (c == '{' ? '}' : ']')) { (*p)++; return 1; }
            return 0;
        }
    }
    if (c == '"') { v->type = 's'; return (v->s = jstr(p)) != NULL; }
    if (!strncmp(*p, "true", 4)) { v->type = 'b'; v->n = 1; *p += 4; return 1; }
    if (!strncmp(*p, "false", 5)) { v->type = 'b'; *p += 5; return 1; }
    if (!strncmp(*p, "null", 4)) { v->type = 'z'; *p += 4; return 1; }
    char *end;
    v->type = 'n';
    v->n = strtod(*p, &end);
    if (end == *p) return 0;
    *p = end;
    return 1;
}

// Parse a whole text as one JSON value (nothing but whitespace after it).
static int jv_parse_text(const char *text, Jv *v) {
    const char *p = text;
    if (!jparse(&p, v, 0)) { jv_free(v); return 0; }
    ws(&p);
    if (*p) { jv_free(v); return 0; }
    return 1;
}

static const Jv *jget(const Jv *o, const char *key) {
    if (!o || o->type != 'o') return NULL;
    for (int i = 0; i < o->len; i++)
        if (!strcmp(o->keys[i], key)) return &o->items[i];
    return NULL;
}
static const char *jget_str(const Jv *o, const char *key) {
    const Jv *v = jget(o, key);
    return v && v->type == 's' ? v->s : NULL;
}

// ---- checks ----------------------------------------------------------------

static int n_fail;
static void report(const char *status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(const char *status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%-4s ", status);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
    if (!strcmp(status, "FAIL")) n_fail++;
}

static void check_weight_file(const Jv *man, const char *what) {
    const Jv *o = jget(man, what);
    const char *path = jget_str(o, "path"), *want = jget_str(o, "sha256");
    if (!path || !*path) { report("OK", "%s: none used", what); return; }
    if (!want || !*want) { report("WARN", "%s: %s: manifest records no sha256", what, path); return; }
    if (access(path, R_OK) != 0) { report("WARN", "%s: %s: file no longer exists, hash not re-checked", what, path); return; }
    char hex[65];
    if (!sha256_file(path, hex)) report("FAIL", "%s: %s: cannot be read", what, path);
    else if (strcmp(hex, want)) report("FAIL", "%s: %s: sha256 %s differs from the manifest's %s", what, path, hex, want);
    else report("OK", "%s: %s: sha256 matches", what, path);
}

// The data the run trained on: recompute the fingerprint when the data is still there.
static void check_dataset(const Jv *man, const DcalConfig *cfg) {
    const Jv *ds = jget(man, "dataset");
    const char *want = ds ? jget_str(ds, "fingerprint") : NULL;
    if (!want || !*want) { report("FAIL", "dataset: manifest records no fingerprint"); return; }
    if (access(cfg->data.root, R_OK) != 0) {
        report("WARN", "dataset: %s no longer exists here, fingerprint not re-checked", cfg->data.root);
        return;
    }
    Dataset d;
    DataConfig dc = cfg->data;
    dc.skip_bad = true;   // a missing file should change the fingerprint, not stop the audit
    if (!dataset_open(&d, &dc)) { report("FAIL", "dataset: %s does not open (see the error above)", dc.root); return; }
    if (strcmp(d.fingerprint, want))
        report("FAIL", "dataset: %s fingerprints to %s, the run trained on %s", dc.root, d.fingerprint, want);
    else
        report("OK", "dataset: %s fingerprint matches (%d train / %d test)", dc.root, d.n_train, d.n_test);
    dataset_free(&d);
}

static void check_checkpoint(const char *path) {
    SafeTensors st;
    if (!st_load(&st, path)) { report("FAIL", "%s: does not load (see the error above)", path); return; }
    const char *want = st_meta(&st, "params_sha256");
    if (!want) { report("OK", "%s: loads (%d tensors, no params_sha256 to check)", path, st.n); st_free(&st); return; }
    Sha256 *h = sha256_new();
    int bad = 0;
    for (int i = 0; i < st.n && !bad; i++) {
        const StTensor *t = &st.t[i];
        if (!strncmp(t->name, "adam.", 5)) continue;
        if (strcmp(t->dtype, "F32")) { report("FAIL", "%s: tensor '%s' is %s, checkpoints hold F32", path, t->name, t->dtype); bad = 1; }
        else sha256_update(h, st.data + t->begin, t->end - t->begin);
    }
    char hex[65];
    sha256_final(h, hex);
    if (!bad && strcmp(hex, want)) report("FAIL", "%s: parameters hash to %s, metadata params_sha256 says %s", path, hex, want);
    else if (!bad) report("OK", "%s: loads, params_sha256 matches (%d tensors)", path, st.n);
    st_free(&st);
}

static void check_checkpoints(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t len = strlen(e->d_name), sl = strlen(".safetensors");
        if (len <= sl || strcmp(e->d_name + len - sl, ".safetensors")) continue;
        char path[DCAL_PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        check_checkpoint(path);
        n++;
    }
    if (d) closedir(d);
    if (!n) report("WARN", "%s: no checkpoint (*.safetensors) in the run directory", dir);
}

// Every line a JSON object with a numeric "step"; steps never go back, and
// within one "kind" (train / eval / final) they strictly increase.
static void check_metrics(const char *dir) {
    char path[DCAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    size_t len;
    char *text = read_file(path, &len);
    if (!text) { report("FAIL", "%s: missing or unreadable", path); return; }
    char kinds[16][32];
    double last_kind[16], last = -INFINITY;
    int nk = 0, line = 0, bad = 0;
    for (char *s = text, *nl; *s && !bad; s = nl ? nl + 1 : s + strlen(s)) {
        nl = strchr(s, '\n');
        if (nl) *nl = 0;
        line++;
        Jv v;
        if (!jv_parse_text(s, &v) || v.type != 'o') {
            report("FAIL", "%s:%d: not a JSON object", path, line);
            jv_free(&v);
            bad = 1;
            break;
        }
        const Jv *st = jget(&v, "step");
        const char *kind = jget_str(&v, "kind");
        if (!st || st->type != 'n') { report("FAIL", "%s:%d: no numeric \"step\"", path, line); bad = 1; }
        else if (st->n < last) { report("FAIL", "%s:%d: step %.0f goes back from %.0f", path, line, st->n, last); bad = 1; }
        else {
            int k = 0;
            while (k < nk && strcmp(kinds[k], kind ? kind : "")) k++;
            if (k < nk && st->n <= last_kind[k]) {
                report("FAIL", "%s:%d: step %.0f repeats for kind '%s'", path, line, st->n, kinds[k]);
                bad = 1;
            } else if (k == nk && nk < 16) snprintf(kinds[nk++], 32, "%s", kind ? kind : "");
            if (k < 16) last_kind[k] = st->n;
            last = st->n;
        }
        jv_free(&v);
        if (!nl) break;
    }
    if (!bad) report("OK", "%s: %d lines, steps increasing", path, line);
    free(text);
}

int cmd_audit(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: dcal audit RUN_DIR\n\n"
                   "Re-check a run directory: manifest.json parses; config.yaml loads and matches the manifest's\n"
                   "sha256; the compliance report regenerates identically with no undeclared FAIL; every\n"
                   "*.safetensors checkpoint loads and matches its params_sha256; pretrained/init files still\n"
                   "hash as recorded (WARN if gone); metrics.jsonl lines are JSON objects with increasing steps.\n"
                   "Prints one line per check; exits 1 if any check FAILs.\n");
            return DCAL_EXIT_OK;
        }
        if (argv[i][0] == '-' && argv[i][1]) { dcal_err("audit: unknown option '%s' (see 'dcal audit --help')", argv[i]); return DCAL_EXIT_USAGE; }
        if (dir) { dcal_err("audit: one run directory expected, got '%s' and '%s'", dir, argv[i]); return DCAL_EXIT_USAGE; }
        dir = argv[i];
    }
    if (!dir) { dcal_err("audit: usage: dcal audit RUN_DIR"); return DCAL_EXIT_USAGE; }
    n_fail = 0;
    char path[DCAL_PATH_MAX + 32];
    size_t len;

    // manifest.json
    Jv man = {0};
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    char *text = read_file(path, &len);
    int have_man = 0;
    if (!text) report("FAIL", "%s: missing or unreadable", path);
    else if (!jv_parse_text(text, &man) || man.type != 'o') report("FAIL", "%s: not a JSON object", path);
    else { have_man = 1; report("OK", "%s: parses (%d fields, dcal %s, commit %s)", path, man.len,
                                jget_str(&man, "dcal_version") ? jget_str(&man, "dcal_version") : "?",
                                jget_str(&man, "git_commit") ? jget_str(&man, "git_commit") : "?"); }
    free(text);

    // config.yaml: loads, and is the file the manifest hashed
    DcalConfig cfg;
    config_defaults(&cfg);
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    int have_cfg = config_load(&cfg, path) && config_finalize(&cfg);
    if (!have_cfg) report("FAIL", "%s: does not load (see the error above)", path);
    else report("OK", "%s: loads", path);
    char hex[65];
    const char *want = jget_str(&man, "config_sha256");
    if (!have_man) ;
    else if (!want) report("FAIL", "%s: manifest has no config_sha256", path);
    else if (!sha256_file(path, hex)) report("FAIL", "%s: cannot be hashed", path);
    else if (strcmp(hex, want)) report("FAIL", "%s: sha256 %s differs from the manifest's %s (config.yaml changed after the run started)", path, hex, want);
    else report("OK", "%s: sha256 matches the manifest", path);

    // compliance: re-run with the run's --allow-deviation ids
    if (have_cfg) {
        char allowed[COMPLIANCE_MAX_RULES][48];
        int na = 0;
        const Jv *al = jget(&man, "allow_deviation");
        for (int i = 0; al && al->type == 'a' && i < al->len && na < COMPLIANCE_MAX_RULES; i++)
            if (al->items[i].type == 's') snprintf(allowed[na++], 48, "%s", al->items[i].s);
        RuleResult rr[COMPLIANCE_MAX_RULES];
        int n = compliance_check(&cfg, allowed, na, rr), fails = 0;
        for (int i = 0; i < n; i++)
            if (rr[i].status == RULE_FAIL) {
                report("FAIL", "compliance: rule '%s' fails without a declared deviation: expected %s, got %s", rr[i].id, rr[i].expected, rr[i].actual);
                fails++;
            }
        if (!fails) report("OK", "compliance: no undeclared FAIL (%d rules)", n);
        char *fresh = NULL;
        size_t flen = 0;
        FILE *f = open_memstream(&fresh, &flen);
        compliance_print(f, rr, n);
        fclose(f);
        snprintf(path, sizeof path, "%s/compliance.txt", dir);
        char *old = read_file(path, &len);
        if (!old) report("FAIL", "%s: missing or unreadable", path);
        else if (len != flen || memcmp(old, fresh, len)) report("FAIL", "%s: differs from the report regenerated from config.yaml", path);
        else report("OK", "%s: identical to a regenerated report", path);
        free(old);
        free(fresh);
    }

    check_checkpoints(dir);
    if (have_man && have_cfg) check_dataset(&man, &cfg);
    if (have_man) {
        check_weight_file(&man, "pretrained");
        check_weight_file(&man, "init");
    }
    check_metrics(dir);
    jv_free(&man);
    printf("%s: %s\n", dir, n_fail ? "audit FAILED" : "audit passed");
    return n_fail ? DCAL_EXIT_FAIL : DCAL_EXIT_OK;
}

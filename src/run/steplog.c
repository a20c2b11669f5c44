// steplog.c: RUN/steps.tsv (see steplog.h): written one flushed line per
// optimizer step by the trainer, cut back atomically on resume, read strictly
// by `dcal audit` and its --replay.
#include "run/steplog.h"
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include "core/json.h"

static const char header[] =
    "# dcal steps.tsv 1: step micro_step loss ce_sa ce_glca ce_pwca grad_sumsq lr (C99 hex floats, exact; loss and "
    "ce_* are means over the step's micro-batches)\n";
static const char *const field_names[STEPLOG_FIELDS] = {"step", "micro_step", "loss", "ce_sa",
                                                        "ce_glca", "ce_pwca", "grad_sumsq", "lr"};
enum { LINE_MAX_LEN = 512 };

const char *steplog_field_name(int i) { return i >= 0 && i < STEPLOG_FIELDS ? field_names[i] : "?"; }

double steplog_field(const StepRecord *r, int i) {
    switch (i) {
    case 0: return (double)r->step;
    case 1: return (double)r->micro_step;
    case 2: return r->loss;
    case 3: case 4: case 5: return r->ce[i - 3];
    case 6: return r->gsq;
    default: return r->lr;
    }
}

static int format_line(char *buf, size_t cap, const StepRecord *r) {
    return snprintf(buf, cap, "%" PRId64 "\t%" PRId64 "\t%a\t%a\t%a\t%a\t%a\t%a\n", r->step, r->micro_step, r->loss,
                    r->ce[0], r->ce[1], r->ce[2], r->gsq, r->lr);
}

// A field exactly as %a writes a finite double (so "1.5", " 0x1p+0", "inf" are refused).
static int parse_hex(const char *s, double *v) {
    char *end, again[64];
    errno = 0;
    *v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(*v)) return 0;
    snprintf(again, sizeof again, "%a", *v);
    return !strcmp(again, s);
}

// A decimal integer in [0, 2^62] without sign, spaces or leading zeros.
static int parse_count(const char *s, int64_t *v) {
    if (!*s || (s[0] == '0' && s[1]) || strspn(s, "0123456789") != strlen(s) || strlen(s) > 19) return 0;
    *v = strtoll(s, NULL, 10);
    return errno != ERANGE && *v <= (INT64_C(1) << 62);
}

// One line (no newline) into r; 0 with *why set.
static int parse_line(char *s, StepRecord *r, const char **why) {
    char *f[STEPLOG_FIELDS + 1];
    int n = 0;
    for (char *p = s; n <= STEPLOG_FIELDS; p++) {
        f[n++] = p;
        p = strchr(p, '\t');
        if (!p) break;
        *p = 0;
    }
    if (n != STEPLOG_FIELDS) { *why = "expected 8 tab-separated fields"; return 0; }
    errno = 0;
    if (!parse_count(f[0], &r->step) || !parse_count(f[1], &r->micro_step)) {
        *why = "step and micro_step must be plain decimal integers";
        return 0;
    }
    double *v[6] = {&r->loss, &r->ce[0], &r->ce[1], &r->ce[2], &r->gsq, &r->lr};
    for (int i = 0; i < 6; i++)
        if (!parse_hex(f[2 + i], v[i])) { *why = "a value is not a finite C99 hex float as %a writes it"; return 0; }
    return 1;
}

// Walks the lines of a steps.tsv text (NUL-terminated, modified in place).
typedef struct {
    char *next;
    int line;            // 1-based number of the line last returned
    int64_t n;           // records accepted
    StepRecord prev;
} Walk;

// The next record; 1 ok, 0 at the end (*why NULL) or on a bad line (*why set).
// *torn is set when the line has no newline (a crash while writing it).
static int walk_next(Walk *k, StepRecord *r, const char **why, int *torn) {
    *why = NULL;
    *torn = 0;
    if (!*k->next) return 0;
    char *s = k->next, *nl = strchr(s, '\n');
    k->line++;
    if (!nl) *torn = 1;
    else *nl = 0;
    k->next = nl ? nl + 1 : s + strlen(s);
    if (strlen(s) > LINE_MAX_LEN) { *why = "line too long"; return 0; }
    if (!parse_line(s, r, why)) return 0;
    if (r->step != k->n + 1) { *why = "steps must be 1, 2, 3, ... without gaps or repeats"; return 0; }
    if (k->n && r->micro_step <= k->prev.micro_step) { *why = "micro_step does not increase"; return 0; }
    k->prev = *r;
    k->n++;
    return 1;
}

// The header line; 0 when the text does not start with it.
static int walk_start(Walk *k, char *text) {
    size_t hl = strlen(header);
    memset(k, 0, sizeof *k);
    if (strncmp(text, header, hl)) return 0;
    k->next = text + hl;
    k->line = 1;
    return 1;
}

int steplog_read(const char *dir, StepRecord **out, int64_t *n) {
    char path[DCAL_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/" STEPLOG_FILE, dir);
    size_t len;
    char *text = read_file(path, &len);
    *out = NULL;
    *n = 0;
    if (!text) { dcal_err("%s: cannot read: %s (the run keeps no exact step log)", path, strerror(errno)); return 0; }
    Walk k;
    int ok = walk_start(&k, text) && strlen(text) == len;
    if (!ok) dcal_err("%s:1: not a dcal steps.tsv (header line or NUL bytes)", path);
    size_t cap = 0;
    StepRecord r;
    const char *why = NULL;
    int torn;
    while (ok && walk_next(&k, &r, &why, &torn)) {
        if (torn) { why = "the last line is incomplete (no newline)"; break; }
        if ((size_t)k.n > cap) *out = realloc(*out, (cap = cap ? 2 * cap : 64) * sizeof **out);
        if (!*out) dcal_die("out of host memory reading %s", path);
        (*out)[k.n - 1] = r;
    }
    if (ok && why) { dcal_err("%s:%d: %s", path, k.line, why); ok = 0; }
    free(text);
    if (!ok) { free(*out); *out = NULL; return 0; }
    *n = k.n;
    return 1;
}

// Resume: keep the header and the lines of steps 1..resume_step; cut the rest
// (steps past the checkpoint, a torn line) by rewriting the file atomically.
static int cut_back(const char *path, int64_t resume_step) {
    size_t len;
    char *orig = read_file(path, &len);
    if (!orig) { dcal_err("%s: cannot read: %s", path, strerror(errno)); return 0; }
    char *text = xmalloc(len + 1);   // the walk cuts its copy into lines
    memcpy(text, orig, len + 1);
    Walk k;
    if (!walk_start(&k, text) || strlen(text) != len) {
        dcal_err("%s:1: not a dcal steps.tsv (header line or NUL bytes); move it away to resume without it", path);
        free(text);
        free(orig);
        return 0;
    }
    size_t keep = strlen(header);
    int64_t kept = 0;
    StepRecord r;
    const char *why;
    int torn;
    while (kept < resume_step && walk_next(&k, &r, &why, &torn) && !torn) {
        keep = (size_t)(k.next - text);
        kept = k.n;
    }
    if (kept < resume_step)
        fprintf(stderr, "dcal: WARNING: %s ends at step %" PRId64 " but the checkpoint is at step %" PRId64
                ": 'dcal audit' will report the gap\n", path, kept, resume_step);
    int ok = keep == len || write_file_atomic(path, orig, keep);
    free(text);
    free(orig);
    return ok;
}

int steplog_open(StepLogW *w, const char *dir, int64_t resume_step) {
    memset(w, 0, sizeof *w);
    snprintf(w->path, sizeof w->path, "%s/" STEPLOG_FILE, dir);
    bool fresh = resume_step < 0 || access(w->path, F_OK) != 0;
    if (!fresh && !cut_back(w->path, resume_step)) return 0;
    if (fresh && resume_step > 0)
        fprintf(stderr, "dcal: WARNING: %s is missing: the log starts at step %" PRId64 " and 'dcal audit --replay' "
                "cannot replay this run\n", w->path, resume_step + 1);
    w->f = fopen(w->path, fresh ? "w" : "a");
    if (!w->f) { dcal_err("%s: cannot open for writing: %s", w->path, strerror(errno)); return 0; }
    if (fresh && (fputs(header, w->f) < 0 || fflush(w->f))) {
        dcal_err("%s: cannot write: %s", w->path, strerror(errno));
        steplog_close(w);
        return 0;
    }
    return 1;
}

int steplog_append(StepLogW *w, const StepRecord *r) {
    if (!w->f) return 1;
    char line[LINE_MAX_LEN];
    format_line(line, sizeof line, r);
    return fputs(line, w->f) >= 0 && fflush(w->f) == 0;
}

void steplog_close(StepLogW *w) {
    if (w->f) fclose(w->f);
    w->f = NULL;
}

// ---- the audit's check ------------------------------------------------------

// A metrics value printed with "%.6g" from the exact one: the same digits.
static int same_6g(double printed, double exact) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.6g", exact);
    return strtod(buf, NULL) == printed;
}

// One metrics.jsonl train row against the step log; 0 after a FAIL line.
static int audit_row(const char *mpath, int line, const Json *v, const StepRecord *rec, int64_t n) {
    const Json *st = json_get(v, "step"), *lr = json_get(v, "lr"), *gn = json_get(v, "grad_norm");
    if (!st || !st->is_int || st->i < 1) return 1;   // the metrics check itself reports malformed rows
    if (st->i > n) {
        printf("FAIL %s:%d: step %" PRId64 " is not in " STEPLOG_FILE " (%" PRId64 " steps)\n", mpath, line, st->i, n);
        return 0;
    }
    const StepRecord *r = &rec[st->i - 1];
    const char *bad = !lr || lr->type != JSON_NUMBER || !same_6g(lr->num, r->lr) ? "lr"
                      : !gn || gn->type != JSON_NUMBER || !same_6g(gn->num, sqrt(r->gsq)) ? "grad_norm" : NULL;
    if (bad) printf("FAIL %s:%d: %s of step %" PRId64 " is not the 6-digit rounding of " STEPLOG_FILE "'s %a\n", mpath,
                    line, bad, st->i, !strcmp(bad, "lr") ? r->lr : sqrt(r->gsq));
    return !bad;
}

static int audit_metrics(const char *dir, const StepRecord *rec, int64_t n) {
    char mpath[DCAL_PATH_MAX + 16];
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", dir);
    size_t len;
    char *text = read_file(mpath, &len);
    if (!text) return 0;   // the metrics check reports it
    int fails = 0, line = 0;
    for (char *s = text, *nl; *s && fails < 5; s = nl + 1) {
        nl = strchr(s, '\n');
        size_t l = nl ? (size_t)(nl - s) : strlen(s);
        Json v;
        line++;
        if (json_parse(s, l, 0, &v, NULL)) {
            const char *kind = v.type == JSON_OBJECT ? json_str(&v, "kind") : NULL;
            if (kind && !strcmp(kind, "train")) fails += !audit_row(mpath, line, &v, rec, n);
            json_free(&v);
        }
        if (!nl) break;
    }
    free(text);
    return fails;
}

int steplog_audit(const char *dir) {
    char path[DCAL_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/" STEPLOG_FILE, dir);
    if (access(path, F_OK) != 0) {
        printf("WARN %s: missing (a run from before dcal logged exact steps: 'dcal audit --replay' cannot check it)\n",
               path);
        return 0;
    }
    StepRecord *rec;
    int64_t n;
    if (!steplog_read(dir, &rec, &n)) {
        printf("FAIL %s: malformed (see the error above)\n", path);
        return 1;
    }
    int fails = audit_metrics(dir, rec, n);
    if (!fails)
        printf("OK   %s: %" PRId64 " steps, consecutive; metrics.jsonl's train rows agree (step, lr, grad_norm)\n",
               path, n);
    free(rec);
    return fails;
}

// metrics_views.c: metrics.csv and TensorBoard scalars, both derived from the
// rows of metrics.jsonl (metrics_views.h). metrics.jsonl stays the record;
// these are views of it, rebuilt whole when a run (re)opens its metrics.
#include "run/metrics_views.h"
#include <errno.h>
#include <string.h>
#include <time.h>
#include "core/json.h"

// metrics.csv's columns: a metrics key, or element `index` of an array key.
// Keys outside this table stay in metrics.jsonl only.
static const struct {
    const char *column, *key;
    int index;
} csv_columns[] = {
    {"time", "time", -1}, {"wall_s", "wall_s", -1}, {"kind", "kind", -1}, {"step", "step", -1},
    {"epoch", "epoch", -1}, {"loss", "loss", -1}, {"ce_sa", "ce_sa", -1}, {"ce_glca", "ce_glca", -1},
    {"ce_pwca", "ce_pwca", -1}, {"lr", "lr", -1}, {"grad_norm", "grad_norm", -1}, {"loss_w_sa", "loss_w", 0},
    {"loss_w_glca", "loss_w", 1}, {"loss_w_pwca", "loss_w", 2}, {"img_s", "img_s", -1},
    {"rss_mib", "rss_mib", -1}, {"skipped_images", "skipped_images", -1}, {"split", "split", -1},
    {"n", "n", -1}, {"acc_sa", "acc_sa", -1}, {"acc_glca", "acc_glca", -1},
    {"acc_combined", "acc_combined", -1}, {"mean_class_acc", "mean_class_acc", -1},
    {"best_epoch_on_test", "best_epoch_on_test", -1}, {"params_sha256", "params_sha256", -1},
    {"adam_sha256", "adam_sha256", -1},
};
#define N_CSV (int)(sizeof csv_columns / sizeof csv_columns[0])

// TensorBoard tags: "<train|split>/<name>" for these keys of train and eval rows.
static const struct {
    const char *kind, *key, *name;
} tb_keys[] = {
    {"train", "loss", "loss"}, {"train", "lr", "lr"}, {"train", "ce_sa", "ce_sa"},
    {"train", "ce_glca", "ce_glca"}, {"train", "ce_pwca", "ce_pwca"}, {"train", "grad_norm", "grad_norm"},
    {"train", "img_s", "img_s"}, {"train", "rss_mib", "rss_mib"},
    {"eval", "acc_sa", "acc_sa"}, {"eval", "acc_glca", "acc_glca"}, {"eval", "acc_combined", "acc_sa_glca"},
    {"eval", "mean_class_acc", "mean_class_acc"},
};
#define N_TB (int)(sizeof tb_keys / sizeof tb_keys[0])

static double realtime_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// "2026-12-01T10:20:30.123Z" -> seconds since the epoch; 0 when not that form.
static int iso_utc_parse(const char *s, double *out) {
    struct tm tm = {0};
    int ms = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec, &ms, &n) != 7 || s[n])
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (double)timegm(&tm) + ms / 1000.0;
    return 1;
}

char *views_stamp(const MetricViews *v, const char *json_object) {
    size_t len = strlen(json_object);
    while (len && (json_object[len - 1] == '\n' || json_object[len - 1] == ' ')) len--;
    if (len < 2 || json_object[0] != '{' || json_object[len - 1] != '}') return xstrdup(json_object);
    double now = realtime_now();
    time_t sec = (time_t)now;
    struct tm tm;
    gmtime_r(&sec, &tm);
    char ts[40];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    size_t cap = len + 96;
    char *out = xmalloc(cap);
    int empty = len == 2;   // "{}": no comma before the new members
    snprintf(out, cap, "%.*s%s\"time\":\"%s.%03dZ\",\"wall_s\":%.3f}", (int)(len - 1), json_object, empty ? "" : ",",
             ts, (int)((now - (double)sec) * 1000) % 1000, now_seconds() - v->t0);
    return out;
}

// One CSV field (RFC 4180: quoted when it holds a comma, quote or line break).
static void csv_field(FILE *f, const Json *x) {
    if (!x) return;
    if (x->type == JSON_NUMBER) fputs(x->raw, f);
    else if (x->type == JSON_BOOL) fputs(x->b ? "true" : "false", f);
    else if (x->type == JSON_STRING && !strpbrk(x->s, ",\"\r\n")) fputs(x->s, f);
    else if (x->type == JSON_STRING) {
        fputc('"', f);
        for (const char *c = x->s; *c; c++) {
            if (*c == '"') fputc('"', f);
            fputc(*c, f);
        }
        fputc('"', f);
    }
}

static void csv_header(FILE *f) {
    for (int i = 0; i < N_CSV; i++) fprintf(f, "%s%s", i ? "," : "", csv_columns[i].column);
    fputc('\n', f);
}

// The row as a CSV line; nothing for a line that is not a JSON object.
static void csv_row(FILE *f, const char *line, size_t len) {
    Json row;
    JsonError e;
    if (!json_parse(line, len, 0, &row, &e)) return;
    if (row.type == JSON_OBJECT) {
        for (int i = 0; i < N_CSV; i++) {
            const Json *x = json_get(&row, csv_columns[i].key);
            if (csv_columns[i].index >= 0) x = json_at(x, csv_columns[i].index);
            if (i) fputc(',', f);
            csv_field(f, x);
        }
        fputc('\n', f);
    }
    json_free(&row);
}

// Fills the scalars of a parsed row; see views_scalars.
static int row_scalars(const Json *row, TfScalar *v, TfTag *tags, int cap) {
    const char *kind = json_str(row, "kind"), *split = json_str(row, "split");
    if (!kind) return 0;
    const char *prefix = !strcmp(kind, "train") ? "train" : split && *split ? split : "test";
    int n = 0;
    for (int i = 0; i < N_TB && n < cap; i++) {
        const Json *x = json_get(row, tb_keys[i].key);
        if (strcmp(kind, tb_keys[i].kind) || !x || x->type != JSON_NUMBER) continue;
        snprintf(tags[n], sizeof tags[n], "%s/%s", prefix, tb_keys[i].name);
        v[n].tag = tags[n];
        v[n].value = (float)x->num;
        n++;
    }
    return n;
}

int views_scalars(const char *json_line, TfScalar *v, TfTag *tags, int cap, long long *step, double *wall_time) {
    Json row;
    JsonError e;
    if (!json_parse(json_line, strlen(json_line), 0, &row, &e)) return 0;
    const Json *st = json_get(&row, "step");
    const char *ts = json_str(&row, "time");
    int n = st && st->type == JSON_NUMBER ? row_scalars(&row, v, tags, cap) : 0;
    if (n) {
        *step = (long long)st->num;
        if (!ts || !iso_utc_parse(ts, wall_time)) *wall_time = realtime_now();
    }
    json_free(&row);
    return n;
}

// The row's scalars to the events file; 1 when there were none or they were written.
static int tb_row(TfEvents *tb, const char *line) {
    TfScalar s[N_TB];
    TfTag tags[N_TB];
    long long step = 0;
    double wall = 0;
    int n = views_scalars(line, s, tags, N_TB, &step, &wall);
    return !n || tfevents_scalars(tb, wall, step, s, n);
}

// "wall_s" of a row (0 when absent), to carry the run's clock across a resume.
static double row_wall_s(const char *line, size_t len) {
    Json row;
    JsonError e;
    double w = 0;
    if (!json_parse(line, len, 0, &row, &e)) return 0;
    const Json *x = json_get(&row, "wall_s");
    if (x && x->type == JSON_NUMBER) w = x->num;
    json_free(&row);
    return w;
}

// metrics.csv and the events file from metrics.jsonl's complete lines; *wall: the last wall_s.
static int rebuild(MetricViews *v, const char *text, size_t len, double *wall) {
    char *csv = NULL, path[DCAL_PATH_MAX + 32];
    size_t csv_len = 0;
    FILE *f = open_memstream(&csv, &csv_len);
    if (!f) { dcal_err("%s: cannot render metrics.csv", v->dir); return 0; }
    csv_header(f);
    int ok = tfevents_open(&v->tb, v->dir, realtime_now());
    *wall = 0;
    for (const char *s = text, *nl; ok && s < text + len && (nl = memchr(s, '\n', (size_t)(text + len - s))); s = nl + 1) {
        char *line = strndup(s, (size_t)(nl - s));
        csv_row(f, line, strlen(line));
        double w = row_wall_s(line, strlen(line));
        if (w > *wall) *wall = w;
        if (!tb_row(&v->tb, line)) { dcal_err("%s: cannot write: %s", v->tb.tmp, strerror(errno)); ok = 0; }
        free(line);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/metrics.csv", v->dir);
    ok = ok && write_file_atomic(path, csv, csv_len) && tfevents_publish(&v->tb, v->dir);
    free(csv);
    return ok;
}

int views_open(MetricViews *v, const char *dir) {
    memset(v, 0, sizeof *v);
    snprintf(v->dir, sizeof v->dir, "%s", dir);
    char path[DCAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    size_t len = 0;
    char *text = read_file(path, &len);   // absent: no rows yet
    double wall = 0;
    int ok = rebuild(v, text ? text : "", len, &wall);
    free(text);
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    if (ok && !(v->csv = fopen(path, "a"))) { dcal_err("%s: cannot open for appending: %s", path, strerror(errno)); ok = 0; }
    if (!ok) { views_close(v); return 0; }
    setvbuf(v->csv, NULL, _IOLBF, 0);
    v->t0 = now_seconds() - wall;
    return 1;
}

void views_row(MetricViews *v, const char *json_line) {
    if (!v->csv || v->failed) return;
    csv_row(v->csv, json_line, strlen(json_line));
    int ok = !ferror(v->csv) && fflush(v->csv) == 0 && tb_row(&v->tb, json_line);
    if (!ok) {
        v->failed = true;
        dcal_err("%s: cannot write metrics.csv or the TensorBoard events file: %s (metrics.jsonl keeps every row; "
                 "they are rebuilt from it on --resume)", v->dir, strerror(errno));
    }
}

void views_close(MetricViews *v) {
    if (v->csv) fclose(v->csv);
    v->csv = NULL;
    tfevents_close(&v->tb);
}

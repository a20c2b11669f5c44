// report.c: report.html (report.h). Everything comes from the run directory's
// files, so a report can be made for any run, finished or not, on any machine.
#include "run/report.h"
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <string.h>
#include "core/common.h"
#include "core/json.h"
#include "run/svgchart.h"

#define OVERLAY_MAX_BYTES (16 << 20)   // larger PNGs are listed, not embedded

// The curves, in the order of metrics.jsonl.
enum { S_LOSS, S_LR, S_IMG_S, S_RSS, S_ACC_SA, S_ACC_GLCA, S_ACC_COMB, N_SERIES };

typedef struct {
    Series s[N_SERIES];
    Json last_eval, final;       // the last test eval row and the "final" row (JSON_NULL when none)
    long long last_step;
    int rows, bad_rows;
} RunData;

static double num(const Json *row, const char *key) {
    const Json *x = json_get(row, key);
    return x && x->type == JSON_NUMBER ? x->num : NAN;
}

static void keep_row(Json *slot, Json *row) {
    json_free(slot);
    *slot = *row;
    memset(row, 0, sizeof *row);   // owned by slot now (json_free of a zeroed Json frees nothing)
}

// One metrics.jsonl row into the curves.
static void add_row(RunData *d, Json *row) {
    const char *kind = json_str(row, "kind"), *split = json_str(row, "split");
    double step = num(row, "step");
    if (!kind) return;
    if (isfinite(step) && step > d->last_step) d->last_step = (long long)step;
    if (!strcmp(kind, "train")) {
        series_push(&d->s[S_LOSS], step, num(row, "loss"));
        series_push(&d->s[S_LR], step, num(row, "lr"));
        series_push(&d->s[S_IMG_S], step, num(row, "img_s"));
        series_push(&d->s[S_RSS], step, num(row, "rss_mib"));
    } else if (!strcmp(kind, "eval") && (!split || !strcmp(split, "test"))) {
        double ep = num(row, "epoch");
        series_push(&d->s[S_ACC_SA], ep, 100 * num(row, "acc_sa"));
        series_push(&d->s[S_ACC_GLCA], ep, 100 * num(row, "acc_glca"));
        series_push(&d->s[S_ACC_COMB], ep, 100 * num(row, "acc_combined"));
        keep_row(&d->last_eval, row);
    } else if (!strcmp(kind, "final")) {
        keep_row(&d->final, row);
    }
}

static int load_metrics(const char *dir, RunData *d) {
    static const char *names[N_SERIES] = {"loss", "lr", "img/s", "peak RSS MiB", "SA", "GLCA", "SA+GLCA"};
    static const char *colors[N_SERIES] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#1f77b4", "#ff7f0e", "#d62728"};
    memset(d, 0, sizeof *d);
    d->last_eval.type = d->final.type = JSON_NULL;
    for (int i = 0; i < N_SERIES; i++) d->s[i] = (Series){.name = names[i], .color = colors[i]};
    char path[DCAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    size_t len;
    char *text = read_file(path, &len);
    if (!text) { dcal_err("%s: cannot read: %s (is %s a run directory?)", path, strerror(errno), dir); return 0; }
    for (char *s = text, *nl; s < text + len; s = nl + 1) {
        if (!(nl = memchr(s, '\n', (size_t)(text + len - s)))) nl = text + len;   // a last line being written
        Json row;
        JsonError e;
        if (nl > s && json_parse(s, (size_t)(nl - s), 0, &row, &e)) {
            d->rows++;
            add_row(d, &row);
            json_free(&row);
        } else if (nl > s) d->bad_rows++;
    }
    free(text);
    return 1;
}

static void free_data(RunData *d) {
    for (int i = 0; i < N_SERIES; i++) series_free(&d->s[i]);
    json_free(&d->last_eval);
    json_free(&d->final);
}

static const char style[] =
    "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}"
    ".summary{color:#444}.grid{display:flex;flex-wrap:wrap;gap:12px}"
    "figure{margin:0}figcaption{font-weight:600;margin:4px 0}"
    "svg .grid{stroke:#e6e6e6}svg .frame{fill:none;stroke:#999}svg .tick,svg .legend{font-size:11px;fill:#444}"
    "svg .label{font-size:12px;fill:#222}"
    "pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:8px;overflow-x:auto;font-size:12px}"
    "table{border-collapse:collapse;align-self:flex-start;margin-top:28px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}"
    ".fail{color:#b00;font-weight:600}.overlay img{max-width:360px;border:1px solid #ccc}.note{color:#666}";

// A file's text in <pre>, escaped; lines with a FAIL marked. A note when it is missing.
static void pre_file(FILE *f, const char *dir, const char *name) {
    char path[DCAL_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len;
    char *text = read_file(path, &len);
    if (!text) { fprintf(f, "<p class=\"note\">%s: not found</p>\n", name); return; }
    fprintf(f, "<pre id=\"%.*s\">", (int)strcspn(name, "."), name);
    for (char *s = text, *nl; *s; s = nl + 1) {
        nl = strchr(s, '\n');
        if (nl) *nl = 0;
        int fail = strstr(s, " FAIL ") != NULL;
        fputs(fail ? "<span class=\"fail\">" : "", f);
        html_text(f, s);
        fputs(fail ? "</span>\n" : "\n", f);
        if (!nl) break;
    }
    fputs("</pre>\n", f);
    free(text);
}

// "dataset cub · cpu backend · started ... · step N · test SA+GLCA ...%"
static void summary(FILE *f, const char *dir, const RunData *d) {
    char path[DCAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    size_t len;
    char *text = read_file(path, &len);
    Json m = {.type = JSON_NULL};
    JsonError e;
    if (text && !json_parse(text, len, 0, &m, &e)) m.type = JSON_NULL;
    free(text);
    fputs("<p class=\"summary\">dataset <b>", f);
    html_text(f, json_str(json_get(&m, "dataset"), "name"));
    fputs("</b> · backend ", f);
    html_text(f, json_str(&m, "backend"));
    fputs(" · started ", f);
    html_text(f, json_str(&m, "start_time_utc"));
    fputs(" on ", f);
    html_text(f, json_str(&m, "hostname"));
    fprintf(f, " · %lld optimizer steps logged", d->last_step);
    if (d->last_eval.type == JSON_OBJECT)
        fprintf(f, " · test top-1 after epoch %.0f: SA %.2f%%, GLCA %.2f%%, <b>SA+GLCA %.2f%%</b>", num(&d->last_eval, "epoch"),
                100 * num(&d->last_eval, "acc_sa"), 100 * num(&d->last_eval, "acc_glca"),
                100 * num(&d->last_eval, "acc_combined"));
    fputs(d->final.type == JSON_OBJECT ? " · finished" : " · not finished (or stopped)", f);
    if (d->bad_rows) fprintf(f, " · <span class=\"fail\">%d unreadable metrics row(s)</span>", d->bad_rows);
    fputs("</p>\n", f);
    json_free(&m);
}

static void charts(FILE *f, const RunData *d) {
    const Series *s = d->s;
    fputs("<h2>Training</h2><div class=\"grid\">\n", f);
    svg_chart(f, &(SvgChart){"chart-loss", "Loss (weighted SA + GLCA + PWCA)", "step", "loss", &s[S_LOSS], 1});
    svg_chart(f, &(SvgChart){"chart-lr", "Learning rate", "step", "lr", &s[S_LR], 1});
    fputs("</div>\n<h2>Test accuracy per epoch</h2><div class=\"grid\">\n", f);
    svg_chart(f, &(SvgChart){"chart-acc", "Top-1 accuracy on the test split (%)", "epoch", "top-1 %", &s[S_ACC_SA], 3});
    int n = s[S_ACC_COMB].n;
    if (s[S_ACC_SA].n < n) n = s[S_ACC_SA].n;
    if (s[S_ACC_GLCA].n < n) n = s[S_ACC_GLCA].n;
    fputs("<table id=\"acc-table\"><tr><th>epoch</th><th>SA</th><th>GLCA</th><th>SA+GLCA</th></tr>", f);
    for (int i = 0; i < n; i++)
        fprintf(f, "<tr><td>%.0f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td></tr>", s[S_ACC_COMB].x[i], s[S_ACC_SA].y[i],
                s[S_ACC_GLCA].y[i], s[S_ACC_COMB].y[i]);
    fputs("</table></div>\n<h2>Throughput and memory</h2><div class=\"grid\">\n", f);
    svg_chart(f, &(SvgChart){"chart-img-s", "Throughput (images per second)", "step", "img/s", &s[S_IMG_S], 1});
    svg_chart(f, &(SvgChart){"chart-memory", "Peak resident memory of the process (MiB)", "step", "MiB", &s[S_RSS], 1});
    fputs("</div>\n", f);
}

static int is_overlay(const struct dirent *e) {
    size_t n = strlen(e->d_name);
    return n > 12 && !strncmp(e->d_name, "overlay_", 8) && !strcmp(e->d_name + n - 4, ".png");
}

// One PNG as <img src="data:image/png;base64,...">.
static void embed_png(FILE *f, const char *path, const char *name) {
    size_t len;
    unsigned char *png = (unsigned char *)read_file(path, &len);
    if (!png || len > OVERLAY_MAX_BYTES) {
        fputs("<p class=\"note\">", f);
        html_text(f, name);
        fputs(png ? ": too large to embed</p>" : ": unreadable</p>", f);
        free(png);
        return;
    }
    char *b64 = xmalloc(4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)b64, png, (int)len);
    fputs("<figure class=\"overlay\"><img alt=\"", f);
    html_text(f, name);
    fprintf(f, "\" src=\"data:image/png;base64,%s\"><figcaption>", b64);
    html_text(f, name);
    fputs("</figcaption></figure>\n", f);
    free(b64);
    free(png);
}

static void overlays(FILE *f, const char *dir) {
    struct dirent **list = NULL;
    int n = scandir(dir, &list, is_overlay, alphasort);
    fputs("<h2>Attention overlays</h2>\n", f);
    if (n <= 0)
        fputs("<p class=\"note\" id=\"no-overlays\">None yet: a finished run with a GLCA branch leaves the "
              "overlays of 4 test images here; `dcal explain --out RUN_DIR` adds any image's "
              "(overlay_*.png), and `dcal report` then embeds them.</p>\n", f);
    else fputs("<div class=\"grid\">\n", f);
    for (int i = 0; i < n; i++) {
        char path[DCAL_PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name);
        embed_png(f, path, list[i]->d_name);
        free(list[i]);
    }
    if (n > 0) fputs("</div>\n", f);
    free(list);
}

static void page(FILE *f, const char *dir, const RunData *d) {
    const char *slash = strrchr(dir, '/'), *name = slash && slash[1] ? slash + 1 : dir;
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
          "style-src 'unsafe-inline'\">\n<title>dcal run ", f);
    html_text(f, name);
    fprintf(f, "</title><style>%s</style></head>\n<body>\n<h1>dcal run ", style);
    html_text(f, name);
    fputs("</h1>\n", f);
    summary(f, dir, d);
    charts(f, d);
    overlays(f, dir);
    fputs("<h2>Compliance with the paper (compliance.txt)</h2>\n", f);
    pre_file(f, dir, "compliance.txt");
    fputs("<h2>Manifest (manifest.json)</h2>\n", f);
    pre_file(f, dir, "manifest.json");
    fprintf(f, "<p class=\"note\">Written by dcal %s from the files of ", DCAL_VERSION);
    html_text(f, dir);
    fputs(" (metrics.jsonl is the record; this page is remade by 'dcal report').</p>\n</body></html>\n", f);
}

int report_write(const char *run_dir, char *out, size_t cap) {
    RunData d;
    if (!load_metrics(run_dir, &d)) { free_data(&d); return 0; }
    char *html = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&html, &len);
    if (!f) { free_data(&d); dcal_err("%s: cannot render report.html", run_dir); return 0; }
    page(f, run_dir, &d);
    fclose(f);
    free_data(&d);
    snprintf(out, cap, "%s/report.html", run_dir);
    int ok = write_file_atomic(out, html, len);
    free(html);
    return ok;
}

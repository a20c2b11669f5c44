// svgchart.c: the SVG line charts of report.html (svgchart.h). Axes are
// linear over the data's range padded by 5%, with five labelled grid lines.
#include "run/svgchart.h"
#include <math.h>
#include <string.h>
#include "core/common.h"

enum { W = 560, H = 260, ML = 78, MR = 16, MT = 30, MB = 42, MARKERS_MAX = 60 };

void series_push(Series *s, double x, double y) {
    if (!isfinite(x) || !isfinite(y)) return;   // a null in metrics.jsonl: no point to draw
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        double *nx = xmalloc(sizeof(double) * s->cap), *ny = xmalloc(sizeof(double) * s->cap);
        if (s->n) { memcpy(nx, s->x, sizeof(double) * s->n); memcpy(ny, s->y, sizeof(double) * s->n); }
        free(s->x);
        free(s->y);
        s->x = nx;
        s->y = ny;
    }
    s->x[s->n] = x;
    s->y[s->n++] = y;
}

void series_free(Series *s) {
    free(s->x);
    free(s->y);
    s->x = s->y = NULL;
    s->n = s->cap = 0;
}

void html_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        if (*s == '&') fputs("&amp;", f);
        else if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

typedef struct {
    double x0, x1, y0, y1;
    int int_x;   // every x a whole number (steps, epochs): whole-number ticks only
} Range;

// The data's range over every series, padded so no point sits on the frame.
static int data_range(const SvgChart *c, Range *r) {
    int any = 0;
    *r = (Range){INFINITY, -INFINITY, INFINITY, -INFINITY, 1};
    for (int k = 0; k < c->n_series; k++)
        for (int i = 0; i < c->series[k].n; i++, any = 1) {
            r->int_x &= c->series[k].x[i] == floor(c->series[k].x[i]);
            r->x0 = fmin(r->x0, c->series[k].x[i]);
            r->x1 = fmax(r->x1, c->series[k].x[i]);
            r->y0 = fmin(r->y0, c->series[k].y[i]);
            r->y1 = fmax(r->y1, c->series[k].y[i]);
        }
    if (!any) return 0;
    if (r->x1 == r->x0) { r->x0 -= 1; r->x1 += 1; }
    double pad = r->y1 > r->y0 ? 0.05 * (r->y1 - r->y0) : fmax(fabs(r->y0) * 0.1, 1e-9);
    // Non-negative data (lr, img/s, memory, accuracy) keeps a non-negative axis.
    r->y0 = r->y0 >= 0 && r->y0 - pad < 0 ? 0 : r->y0 - pad;
    r->y1 += pad;
    return 1;
}

static double px(const Range *r, double x) { return ML + (x - r->x0) / (r->x1 - r->x0) * (W - ML - MR); }
static double py(const Range *r, double y) { return H - MB - (y - r->y0) / (r->y1 - r->y0) * (H - MT - MB); }

static void axes(FILE *f, const SvgChart *c, const Range *r) {
    double last_x = NAN;
    for (int i = 0; i <= 4; i++) {
        double y = r->y0 + (r->y1 - r->y0) * i / 4, x = r->x0 + (r->x1 - r->x0) * i / 4;
        fprintf(f, "<line class=\"grid\" x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\"/>", ML, W - MR, py(r, y), py(r, y));
        fprintf(f, "<text class=\"tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>", ML - 6, py(r, y) + 4, y);
        if (r->int_x) x = round(x);
        if (x == last_x) continue;   // a short whole-number axis: one label per value
        fprintf(f, "<text class=\"tick\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.4g</text>", px(r, x), H - MB + 16, x);
        last_x = x;
    }
    fprintf(f, "<rect class=\"frame\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>", ML, MT, W - ML - MR, H - MT - MB);
    fprintf(f, "<text class=\"label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">", (ML + W - MR) / 2, H - 6);
    html_text(f, c->xlabel);
    fprintf(f, "</text><text class=\"label\" transform=\"translate(14 %d) rotate(-90)\" text-anchor=\"middle\">",
            (MT + H - MB) / 2);
    html_text(f, c->ylabel);
    fputs("</text>", f);
}

// One curve: the polyline, then markers with tooltips when there are few points.
static void curve(FILE *f, const SvgChart *c, const Series *s, const Range *r) {
    fputs("<polyline class=\"curve\" fill=\"none\" stroke-width=\"1.6\" data-series=\"", f);
    html_text(f, s->name);
    fprintf(f, "\" data-points=\"%d\" stroke=\"%s\" points=\"", s->n, s->color);
    for (int i = 0; i < s->n; i++) fprintf(f, "%s%.1f,%.1f", i ? " " : "", px(r, s->x[i]), py(r, s->y[i]));
    fputs("\"/>", f);
    for (int i = 0; s->n <= MARKERS_MAX && i < s->n; i++) {
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"><title>", px(r, s->x[i]), py(r, s->y[i]), s->color);
        html_text(f, s->name);
        fprintf(f, " at %s %.6g: %.6g</title></circle>", c->xlabel, s->x[i], s->y[i]);
    }
}

static void legend(FILE *f, const SvgChart *c) {
    int x = ML;
    for (int k = 0; k < c->n_series && c->n_series > 1; k++) {
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/><text class=\"legend\" x=\"%d\" y=\"%d\">",
                x, MT - 18, c->series[k].color, x + 14, MT - 9);
        html_text(f, c->series[k].name);
        fputs("</text>", f);
        x += 24 + 7 * (int)strlen(c->series[k].name);
    }
}

void svg_chart(FILE *f, const SvgChart *c) {
    Range r;
    int any = data_range(c, &r);
    fprintf(f, "<figure class=\"chart\"><figcaption>");
    html_text(f, c->title);
    fprintf(f, "</figcaption><svg id=\"%s\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\">", c->id, W, H, W, H);
    if (!any) {
        fprintf(f, "<rect class=\"frame\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>", ML, MT, W - ML - MR, H - MT - MB);
        fprintf(f, "<text class=\"label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">no rows logged yet</text>",
                (ML + W - MR) / 2, H / 2);
    } else {
        axes(f, c, &r);
        legend(f, c);
        for (int k = 0; k < c->n_series; k++) curve(f, c, &c->series[k], &r);
    }
    fputs("</svg></figure>\n", f);
}

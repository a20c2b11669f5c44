// svgchart.h: line charts as inline SVG for report.html: no script, no
// network. Each curve is one <polyline data-series=NAME data-points=N> with
// one point per value, and (few points) markers with a <title> tooltip.
#pragma once
#include <stdio.h>

typedef struct {
    const char *name;     // legend text and data-series
    const char *color;
    double *x, *y;
    int n, cap;
} Series;

typedef struct {
    const char *id, *title, *xlabel, *ylabel;
    const Series *series;
    int n_series;
} SvgChart;

void series_push(Series *s, double x, double y);
void series_free(Series *s);
// The chart as one <svg> element (a frame and a note when no series has a point).
void svg_chart(FILE *f, const SvgChart *c);
// Text with &, <, >, " escaped for HTML/SVG.
void html_text(FILE *f, const char *s);

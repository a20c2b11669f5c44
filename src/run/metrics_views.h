// metrics_views.h: what is derived from metrics.jsonl as the run writes it.
// Each row gets a timestamp ("time", ISO-8601 UTC) and "wall_s" (seconds of
// the run so far; the time between a stop and its --resume is not counted),
// then goes to metrics.csv (the same rows, a fixed header) and, for train and
// eval rows, to TensorBoard scalars (events.out.tfevents.*). On open, both
// are rebuilt from metrics.jsonl as it stands (a resume has just cut it back
// to its checkpoint), so the three always hold the same rows.
#pragma once
#include <stdbool.h>
#include <stdio.h>
#include "run/tfevents.h"

typedef struct {
    FILE *csv;          // metrics.csv, line-buffered
    TfEvents tb;
    double t0;          // monotonic clock at open, less the wall_s already recorded
    bool failed;        // a write failed: said once, then the views are left as they are
    char dir[DCAL_PATH_MAX];
} MetricViews;

// Rebuild metrics.csv and the events file from dir/metrics.jsonl, then keep
// them open for appending. 0 after an error line.
int views_open(MetricViews *v, const char *dir);
// json_object ("{...}") with ,"time":"...","wall_s":S added before its closing
// brace; malloc'ed. json_object unchanged (copied) when it is not an object.
char *views_stamp(const MetricViews *v, const char *json_object);
// One stamped row to metrics.csv and TensorBoard.
void views_row(MetricViews *v, const char *json_line);
void views_close(MetricViews *v);

// The TensorBoard scalars of one metrics row: tags "train/<key>" for a train
// row, "<split>/<key>" for an eval row ("test/acc_sa", "test/acc_sa_glca", ...).
// Fills at most cap; returns the count. tags[i] holds the tag text of v[i].
typedef char TfTag[64];
int views_scalars(const char *json_line, TfScalar *v, TfTag *tags, int cap, long long *step, double *wall_time);

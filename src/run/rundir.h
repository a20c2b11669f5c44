// rundir.h: the run directory (ARCHITECTURE.md §6): config.yaml, compliance.txt,
// manifest.json, metrics.jsonl, checkpoints. `dcal audit` re-checks it.
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "compliance/compliance.h"
#include "config/config.h"
#include "core/json.h"
#include "run/metrics_views.h"

typedef struct {
    char dir[DCAL_PATH_MAX];
    FILE *metrics;             // metrics.jsonl, append mode, line-buffered
    MetricViews views;         // metrics.csv and TensorBoard events, derived from metrics.jsonl
    int lock_fd;               // <dir>/.lock, flock'ed for the whole run (valid when locked)
    bool locked;
} RunDir;

// Manifest facts the trainer knows (strings may be "").
typedef struct {
    int argc; char **argv;
    const char *backend;           // cpu | cuda
    const char *device_name;       // CPU model / GPU name ("" on cpu: read from /proc/cpuinfo)
    const char *backend_describe;  // the backend's one line: device, runtime version, numerics in force
    const char *dataset_fingerprint;
    int val_n; const char *val_sha256;   // the held-out validation split (data.val_fraction > 0), else 0, ""
    const char *pretrained_path, *pretrained_sha256;
    const char *init_path, *init_sha256;
    int n_allowed; char (*allowed)[48];
    // The compliance gate's table (ResolvedConfig.rules), written to compliance.txt as is.
    const RuleResult *rules; int n_rules;
} ManifestInfo;

// Open a run directory and take its lock (flock on <dir>/.lock, held until
// rundir_close or exit, so a second dcal on the same run is refused).
// resume_dir NULL: a new run in train.out_dir/train.run_name (a generated name
// when empty), created, refused when it holds a run (manifest.json) or files
// that are not dcal's; writes config.yaml. Else exactly resume_dir, which must
// hold a run. Metrics are not open yet (rundir_open_metrics). 0 after an error line.
int rundir_open(RunDir *r, const DcalConfig *c, const char *resume_dir);
// Open metrics.jsonl for appending. A new run (resume false) starts it empty;
// a resumed one first drops, atomically, the rows a stop left past its
// checkpoint (step > resume_step, a torn last line, "final" rows: the resumed
// run writes its own), so steps never repeat. Then metrics.csv and the
// TensorBoard events file are rebuilt from what it holds. 0 after an error line.
int rundir_open_metrics(RunDir *r, bool resume, int64_t resume_step);
// Each complete row of metrics.jsonl of this kind ("eval", "best", ...), in order;
// a torn last line or one that does not parse is none. Nothing when the file is missing.
typedef void (*RunRowFn)(const Json *row, void *ctx);
void rundir_each_row(const char *dir, const char *kind, RunRowFn fn, void *ctx);
// An accuracy in an eval or val row (key "acc_combined", "acc_sa", ...) as the trainer had
// it: correct / n, logged to 6 decimals, so the count is recovered exactly (n <= 10^6) and
// the same double made from it; with the row's step and epoch. false when a field is missing.
bool rundir_row_acc(const Json *row, const char *key, double *acc, int64_t *step, int *epoch);
// The first highest accuracy among the rows of a kind up to a step, as the trainer chooses
// (a later equal one does not replace it): the best test epoch, best.safetensors' epoch.
// acc -1 when there is no such row.
typedef struct {
    const char *kind, *key;   // in: "val" / "eval", "acc_combined" / "acc_sa"
    int64_t upto;             // in: rows with step <= upto
    int64_t step;             // out
    int epoch;
    double acc;
} RowBest;
void rundir_best_of(const char *dir, RowBest *b);
// Whether metrics.jsonl holds a complete row of this kind ("checkpoint", "best")
// and step: the ledger `dcal audit` holds those files against.
bool rundir_ledger_has(const RunDir *r, const char *kind, int64_t step);
// On resume: the dataset found now must be the one the run trained on
// (manifest.json "dataset": {"fingerprint"}). 0 after an error line naming both.
int rundir_check_dataset(const RunDir *r, const char *data_root, const char *fingerprint);
// compliance.txt (from info->rules) and manifest.json. 0 after an error line.
int rundir_write_manifest(RunDir *r, const DcalConfig *c, const ManifestInfo *info);
// Append one JSON object line to metrics.jsonl (the caller formats the object),
// with "time" and "wall_s" added; the same row goes to metrics.csv and TensorBoard.
void rundir_metric(RunDir *r, const char *json_object);
// The same for an object built with a compact JsonW (jw_init(&w, false, 0)).
void rundir_metric_json(RunDir *r, const JsonW *w);
// Close metrics.jsonl and release the lock; safe on a zeroed RunDir.
void rundir_close(RunDir *r);

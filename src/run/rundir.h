// rundir.h: the run directory (ARCHITECTURE.md §6): config.yaml, compliance.txt,
// manifest.json, metrics.jsonl, checkpoints. `dcal audit` re-checks it.
#pragma once
#include <stdio.h>
#include "compliance/compliance.h"
#include "config/config.h"
#include "core/json.h"

typedef struct {
    char dir[DCAL_PATH_MAX];
    FILE *metrics;             // metrics.jsonl, append mode, line-buffered
} RunDir;

// Manifest facts the trainer knows (strings may be "").
typedef struct {
    int argc; char **argv;
    const char *backend;           // cpu | cuda
    const char *device_name;       // CPU model / GPU name ("" on cpu: read from /proc/cpuinfo)
    const char *backend_describe;  // the backend's one line: device, runtime version, numerics in force
    const char *dataset_fingerprint;
    const char *pretrained_path, *pretrained_sha256;
    const char *init_path, *init_sha256;
    int n_allowed; char (*allowed)[48];
    // The compliance gate's table (ResolvedConfig.rules), written to compliance.txt as is.
    const RuleResult *rules; int n_rules;
} ManifestInfo;

// Create (or reopen, resume=1) runs/<name>. Writes config.yaml on creation.
// 0 after an error line.
int rundir_open(RunDir *r, const DcalConfig *c, int resume);
// compliance.txt (from info->rules) and manifest.json. 0 after an error line.
int rundir_write_manifest(RunDir *r, const DcalConfig *c, const ManifestInfo *info);
// Append one JSON object line to metrics.jsonl (the caller formats the object).
void rundir_metric(RunDir *r, const char *json_object);
// The same for an object built with a compact JsonW (jw_init(&w, false, 0)).
void rundir_metric_json(RunDir *r, const JsonW *w);
void rundir_close(RunDir *r);

// rundir.h: the run directory (DESIGN §6): config.yaml, compliance.txt,
// manifest.json, metrics.jsonl, checkpoints. `dcal audit` re-checks it.
#pragma once
#include <stdio.h>
#include "config/config.h"

typedef struct {
    char dir[DCAL_PATH_MAX];
    FILE *metrics;             // metrics.jsonl, append mode, line-buffered
} RunDir;

// Manifest facts the trainer knows (strings may be "").
typedef struct {
    int argc; char **argv;
    const char *backend;           // cpu | cuda
    const char *device_name;       // CPU model / GPU name
    const char *dataset_fingerprint;
    const char *pretrained_path, *pretrained_sha256;
    const char *init_path, *init_sha256;
    int n_allowed; char (*allowed)[48];
} ManifestInfo;

// Create (or reopen, resume=1) runs/<name>. Writes config.yaml and the
// compliance report on creation. 0 after an error line.
int rundir_open(RunDir *r, const DcalConfig *c, int resume);
int rundir_write_manifest(RunDir *r, const DcalConfig *c, const ManifestInfo *info);
// Append one JSON object line to metrics.jsonl (the caller formats the object).
void rundir_metric(RunDir *r, const char *json_object);
void rundir_close(RunDir *r);

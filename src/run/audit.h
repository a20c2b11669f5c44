// audit.h: re-check a run directory (ARCHITECTURE.md §6) — what `dcal audit` runs.
#pragma once

#include <stddef.h>
#include "config/config.h"

// Verifies one checkpoint against the model the run's config describes (every
// tensor's name, shape, dtype, hashes, metadata): 1 with a one-line summary, 0
// after an error line. The model lives above this layer, so the caller passes
// it in (dcal audit passes checkpoint_verify, src/train/checkpoint.h).
typedef int (*AuditCheckpointFn)(const char *path, const DcalConfig *cfg, char *summary, size_t cap);

// Check RUN_DIR: manifest.json parses; config.yaml loads and matches the
// manifest's sha256; the compliance report regenerates identically with no
// undeclared FAIL; every *.safetensors checkpoint passes verify_checkpoint
// (FAIL when config.yaml does not load); the dataset fingerprint and pretrained/init files still hash
// as recorded (WARN when gone); metrics.jsonl lines are JSON objects with
// increasing steps. Prints one line per check ("OK  ", "WARN", "FAIL") and a
// last line "<dir>: audit passed|audit FAILED" on stdout. Returns the number
// of FAILed checks.
int run_audit(const char *dir, AuditCheckpointFn verify_checkpoint);

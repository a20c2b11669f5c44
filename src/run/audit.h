// audit.h: re-check a run directory (ARCHITECTURE.md §6) — what `dcal audit` runs.
#pragma once

// Check RUN_DIR: manifest.json parses; config.yaml loads and matches the
// manifest's sha256; the compliance report regenerates identically with no
// undeclared FAIL; every *.safetensors checkpoint loads and matches its
// params_sha256; the dataset fingerprint and pretrained/init files still hash
// as recorded (WARN when gone); metrics.jsonl lines are JSON objects with
// increasing steps. Prints one line per check ("OK  ", "WARN", "FAIL") and a
// last line "<dir>: audit passed|audit FAILED" on stdout. Returns the number
// of FAILed checks.
int run_audit(const char *dir);

// report.h: RUN/report.html, one self-contained page about a run (`dcal
// report`, and written at the end of `dcal train`): loss and lr curves,
// SA / GLCA / SA+GLCA test accuracy per epoch, img/s and memory (inline SVG),
// the attention overlays (RUN/overlay_*.png, embedded as data: URIs), the
// compliance table and the manifest. No script, no network: a
// Content-Security-Policy forbids both.
#pragma once
#include <stddef.h>

// Read run_dir's metrics.jsonl, manifest.json, compliance.txt and
// overlay_*.png; write run_dir/report.html atomically (its path into out).
// 0 after an error line.
int report_write(const char *run_dir, char *out, size_t cap);

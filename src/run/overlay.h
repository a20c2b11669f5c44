// overlay.h: the attention overlays of one image (MODEL.md §2), as PNGs in a
// run directory: the rollout's CLS row as a heat-map over the image, and the
// top-R patches GLCA's queries came from (the rest dimmed, the chosen outlined),
// each with a caption strip below (the predictions with class names). Written by
// `dcal explain` and, for a few test images, by `dcal train` at the end of a run;
// `dcal report` embeds every overlay_*.png it finds.
#pragma once
#include <stddef.h>
#include "config/config.h"

#define OVERLAY_CAPTION_LINES 5

typedef struct {
    const float *img;          // [3, S, S]: the normalised centre crop the model saw
    const DataConfig *data;    // its mean and std (to de-normalise)
    int S, patch;              // image side, patch side: the grid is S / patch
    const float *r;            // [N]: the rollout's CLS row (r[0] is CLS itself)
    const int *sel;            // [1 + K]: CLS, then the selected tokens ascending
    int K;
    const char *caption[OVERLAY_CAPTION_LINES];   // lines under the image (NULL ends); ASCII drawn, others as '?'
} Overlay;

// prefix = DIR/overlay_<stem> (stem: the image's file name without directory or
// extension, made filename-safe).
void overlay_prefix(char *buf, size_t cap, const char *dir, const char *image);
// Writes PREFIX_rollout.png and PREFIX_topr.png (atomically: temp then rename);
// their paths go to out[0], out[1]. 0 after an error line naming the file.
int overlay_write(const char *prefix, const Overlay *o, char out[2][DCAL_PATH_MAX + 32]);

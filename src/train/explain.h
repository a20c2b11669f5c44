// explain.h: one image through the trained model for `dcal explain` and for the
// overlays `dcal train` leaves in its run directory: the forward at inference
// (MODEL.md §3), the rollout's CLS row and the top-R selection (§2), the three
// branches' top-1 as captions, and the overlay PNGs (run/overlay.h).
#pragma once
#include "model/model.h"
#include "model/scores.h"
#include "run/overlay.h"

typedef struct {
    float *sa, *glca;          // [C] logits of the two heads
    float *r;                  // [N] rollout CLS row
    int *sel;                  // [1 + K] CLS and the selected tokens, ascending
    int K, N, C;
    int top[3];                // top-1 class of SA, GLCA, SA+GLCA (Branch order)
    double prob[3];            // its probability
    char png[2][DCAL_PATH_MAX + 32];   // the rollout and top-R PNGs written
} Explained;

// img [3, S, S] (eval's preprocessing) through m (micro-batch ≥ 1, GLCA built);
// names [C] label the captions; label ≥ 0 adds a "true:" line. Writes
// PREFIX_rollout.png and PREFIX_topr.png. 0 after an error line; e is filled
// either way until explained_free.
int explain_write(Model *m, const DataConfig *data, const float *img, char *const *names, int label,
                  const char *prefix, Explained *e);
void explained_free(Explained *e);

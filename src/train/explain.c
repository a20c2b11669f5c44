// explain.c: one image explained (explain.h).
#include <stdio.h>
#include <stdlib.h>
#include "train/explain.h"

// "SA: <name> 87.1%" for each branch, then "true: <name>" when the label is known.
static void captions(const Explained *e, char *const *names, int label, char text[4][160], Overlay *o) {
    static const char *const branch[3] = {"SA", "GLCA", "SA+GLCA"};
    int n = 0;
    for (int b = 0; b < 3; b++, n++)
        snprintf(text[n], sizeof text[n], "%s: %s %.1f%%", branch[b], names[e->top[b]], 100 * e->prob[b]);
    if (label >= 0) snprintf(text[n++], sizeof text[n], "true: %s", names[label]);
    for (int i = 0; i < n; i++) o->caption[i] = text[i];
}

int explain_write(Model *m, const DataConfig *data, const float *img, char *const *names, int label,
                  const char *prefix, Explained *e) {
    int C = m->cfg.num_classes, N = m->N, K = m->K;
    *e = (Explained){.sa = xmalloc(sizeof(float) * C), .glca = xmalloc(sizeof(float) * C),
                     .r = xmalloc(sizeof(float) * N), .sel = xmalloc(sizeof(int) * (1 + K)), .K = K, .N = N, .C = C};
    model_forward_infer(m, img, 1, e->sa, e->glca, e->sel);
    model_rollout_cls(m, 1, e->r);
    double *p = xmalloc(sizeof(double) * C);
    for (int b = 0; b < 3; b++) {
        scores_branch(e->sa, e->glca, C, (Branch)b, p);
        scores_topk(p, C, 1, &e->top[b]);
        e->prob[b] = p[e->top[b]];
    }
    free(p);
    char text[4][160];
    Overlay o = {.img = img, .data = data, .S = m->cfg.img_size, .patch = m->cfg.patch, .r = e->r, .sel = e->sel, .K = K};
    captions(e, names, label, text, &o);
    return overlay_write(prefix, &o, e->png);
}

void explained_free(Explained *e) {
    free(e->sa);
    free(e->glca);
    free(e->r);
    free(e->sel);
    *e = (Explained){0};
}

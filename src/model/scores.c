// scores.c: inference scores (scores.h). In double: a probability of a class
// far behind the top one still prints and sums exactly enough.
#include <math.h>
#include <stdlib.h>
#include "core/common.h"
#include "model/scores.h"

static void softmax(const float *z, int C, double *p) {
    float mx = z[0];
    for (int k = 1; k < C; k++) mx = fmaxf(mx, z[k]);
    double s = 0;
    for (int k = 0; k < C; k++) s += p[k] = exp((double)z[k] - mx);
    for (int k = 0; k < C; k++) p[k] /= s;
}

void scores_branch(const float *sa, const float *glca, int C, Branch br, double *p) {
    if (br != BRANCH_BOTH) { softmax(br == BRANCH_SA ? sa : glca, C, p); return; }
    double *q = xmalloc((size_t)C * sizeof(double));
    softmax(sa, C, p);
    softmax(glca, C, q);
    for (int k = 0; k < C; k++) p[k] = 0.5 * (p[k] + q[k]);
    free(q);
}

void scores_topk(const double *p, int C, int k, int *idx) {
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int c = 0; c < C; c++) {
            int taken = 0;
            for (int i = 0; i < j && !taken; i++) taken = idx[i] == c;
            if (!taken && (best < 0 || p[c] > p[best])) best = c;
        }
        idx[j] = best;
    }
}

const char *scores_branch_name(Branch br) { return br == BRANCH_SA ? "sa" : br == BRANCH_GLCA ? "glca" : "sa+glca"; }

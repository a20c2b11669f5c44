// attention_common.h: what the CPU attention and rollout share (mirrors
// kernels/attention_common.cuh): key/value row addressing over the one- or
// two-buffer views of AttnArgs, and the per-thread scratch of one (b, h) pair.
#pragma once
#include <stdlib.h>
#include <string.h>
#include "core/common.h"
#include "backend/cpu/cpu.h"

static inline float dot(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline int kv2_of(const AttnArgs *a, int b) { return a->kv2_b ? a->kv2_b[b] : b; }
static inline int qrow(const AttnArgs *a, int b, int i) { return a->q_idx ? a->q_idx[b * a->Nq + i] : i; }

// Pointers to head h of key/value row j of batch b; j < n1 reads buffer 1, else buffer 2.
static inline const float *krow(const AttnArgs *a, int b, int h, int j) {
    if (j < a->n1) return a->k1 + b * a->kv1_bstride + j * a->kv1_tstride + h * a->hd;
    return a->k2 + kv2_of(a, b) * a->kv2_bstride + (j - a->n1) * a->kv2_tstride + h * a->hd;
}
static inline const float *vrow(const AttnArgs *a, int b, int h, int j) {
    if (j < a->n1) return a->v1 + b * a->kv1_bstride + j * a->kv1_tstride + h * a->hd;
    return a->v2 + kv2_of(a, b) * a->kv2_bstride + (j - a->n1) * a->kv2_tstride + h * a->hd;
}

// Per-thread scratch for one (b, h) pair: the head's keys and values copied
// both transposed [hd][nk] and row-major [nk][hd], so that every inner loop is
// an axpy over contiguous floats (reductions do not vectorise without
// reassociation). O(N·hd) per thread: copies of K and V, never an N×N matrix.
typedef struct {
    float *kt, *vt, *k, *v, *dkt, *dvt, *p, *dp;
} Scratch;

static inline Scratch scratch_new(const AttnArgs *a, int grads) {
    size_t nk = (size_t)(a->n1 + a->n2), hd = (size_t)a->hd;
    Scratch s = {xmalloc(nk * hd * 4), xmalloc(nk * hd * 4), xmalloc(nk * hd * 4), xmalloc(nk * hd * 4),
                 grads ? xmalloc(nk * hd * 4) : NULL, grads ? xmalloc(nk * hd * 4) : NULL, xmalloc(nk * 4),
                 xmalloc(nk * 4)};
    return s;
}
static inline void scratch_free(Scratch *s) {
    free(s->kt); free(s->vt); free(s->k); free(s->v); free(s->dkt); free(s->dvt); free(s->p); free(s->dp);
}

static inline void load_kv(const AttnArgs *a, int b, int h, Scratch *s) {
    int nk = a->n1 + a->n2, hd = a->hd;
    for (int j = 0; j < nk; j++) {
        const float *k = krow(a, b, h, j), *v = vrow(a, b, h, j);
        memcpy(s->k + (size_t)j * hd, k, (size_t)hd * 4);
        memcpy(s->v + (size_t)j * hd, v, (size_t)hd * 4);
        for (int d = 0; d < hd; d++) {
            s->kt[(size_t)d * nk + j] = k[d];
            s->vt[(size_t)d * nk + j] = v[d];
        }
    }
}

// p[j] = q·k_j·scale for all keys.
static inline void scores(const AttnArgs *a, const float *q, const Scratch *s, float *p) {
    int nk = a->n1 + a->n2;
    for (int j = 0; j < nk; j++) p[j] = 0;
    for (int d = 0; d < a->hd; d++) {
        float qd = q[d] * a->scale;
        const float *kd = s->kt + (size_t)d * nk;
        for (int j = 0; j < nk; j++) p[j] += qd * kd[j];
    }
}

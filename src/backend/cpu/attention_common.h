// attention_common.h: what the CPU attention and rollout share (mirrors
// kernels/attention_common.cuh): the row dot product and the index maps of
// AttnArgs (PWCA's distractor batch, GLCA's gathered queries).
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

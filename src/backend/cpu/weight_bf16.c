// weight_bf16.c: the linear layers' weights rounded to bf16 once per change instead of once
// per GEMM call (cpu.h). At bf16 a weight is multiplied in several calls a step (SA's and PWCA's
// forward and backward, each in row chunks; GLCA's), and rounding it on each was ~2% of a ViT-B
// step on a Zen 4 (perf: the pack loop's share 4.5% → 2.4%). The rounding is the same, so the
// bits are too. The copies cost 2 bytes a weight, which the plan counts (cpu_scratch_rule.h).
//
// A copy is keyed by the weight's address and length. It goes stale when a backend call writes
// memory that overlaps it: every write into backend memory goes through one (zero, the copies,
// uploads, AdamW), and each calls cpu_weights_written; free drops the copies inside the block.
// Calls come from one thread at a time, as for the other scratch (cpu_scratch).
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include "backend/cpu/cpu.h"
#include "core/common.h"

typedef struct {
    const float *w;
    size_t n;
    uint16_t *q;   // [n] bf16
    int fresh;     // q holds w's values rounded
} Copy;

static Copy *copies;
static int n_copies, cap_copies;
static size_t copy_bytes;   // all copies' bytes (cpu_weights_bf16_bytes)

static int overlaps(const Copy *c, uintptr_t lo, uintptr_t hi) {
    uintptr_t a = (uintptr_t)c->w, b = a + c->n * sizeof(float);
    return a < hi && lo < b;
}

const uint16_t *cpu_weight_bf16(const float *w, size_t n) {
    Copy *c = NULL;
    for (int i = 0; i < n_copies && !c; i++)
        if (copies[i].w == w && copies[i].n == n) c = &copies[i];
    if (!c) {
        if (n_copies == cap_copies) {   // grow the table (a ViT-B holds ~55 weights)
            int cap = cap_copies ? 2 * cap_copies : 64;
            Copy *t = xmalloc((size_t)cap * sizeof *t);
            for (int i = 0; i < n_copies; i++) t[i] = copies[i];
            free(copies);
            copies = t, cap_copies = cap;
        }
        c = &copies[n_copies++];
        *c = (Copy){w, n, xmalloc(n * sizeof(uint16_t)), 0};
        copy_bytes += n * sizeof(uint16_t);
    }
    if (!c->fresh) {
        cpu_bf16_pack(c->q, w, n);
        c->fresh = 1;
    }
    return c->q;
}

void cpu_weights_written(const void *p, size_t bytes) {
    uintptr_t lo = (uintptr_t)p, hi = lo + bytes;
    for (int i = 0; i < n_copies; i++)
        if (overlaps(&copies[i], lo, hi)) copies[i].fresh = 0;
}

// Drop the copies of weights inside [p, p + bytes) (the memory is freed or new).
void cpu_weights_dropped(const void *p, size_t bytes) {
    uintptr_t lo = (uintptr_t)p, hi = lo + bytes;
    int k = 0;
    for (int i = 0; i < n_copies; i++) {
        if (overlaps(&copies[i], lo, hi)) {
            copy_bytes -= copies[i].n * sizeof(uint16_t);
            free(copies[i].q);
        } else {
            copies[k++] = copies[i];
        }
    }
    n_copies = k;
}

void cpu_weights_freed(const void *p) {
    if (p && n_copies) cpu_weights_dropped(p, malloc_usable_size((void *)p));
}

void cpu_weights_bf16_clear(void) {
    for (int i = 0; i < n_copies; i++) free(copies[i].q);
    n_copies = 0;
    copy_bytes = 0;
}

size_t cpu_weights_bf16_bytes(void) { return copy_bytes; }

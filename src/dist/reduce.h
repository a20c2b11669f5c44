// reduce.h: the gradient of one optimizer step as a sum over its micro-batches
// in one fixed order, the same whether the micro-batches ran on one process or
// on several (ARCHITECTURE.md §6). Each micro-batch's gradient is computed from
// zero into its own buffer; the buffers are combined along a fixed binary tree
// over the global micro-batch index g = rank * accum + k:
//
//   T(lo, n) = leaf lo                                   if n == 1
//            = T(lo, p) + T(lo + p, n - p)               p = the largest power of two < n
//
// A rank sums its own contiguous block of `accum` leaves (a stack, as a binary
// counter), then the ranks combine their blocks along the same tree over rank
// numbers, and rank 0's sum is broadcast. When accum is a power of two each
// rank's block is a whole subtree of T(0, accum * world), so W ranks x accum A
// give exactly the bits of 1 rank x accum A*W (CPU). Otherwise the sum is still
// fixed for that (A, W), only not equal to other splits.
//
// Two transports move the blocks between ranks: MPI over host memory (the CPU
// backend) and the backend's own collectives over device memory (NCCL, in
// kernels/). The tree, the buckets and the order are this file's, not the
// transport's: no library reduction order is trusted.
#pragma once
#include <stddef.h>
#include "backend/backend.h"

typedef struct {
    const char *name;          // "mpi" (host buffers) or the backend's ("nccl": device buffers)
    int (*send)(const float *buf, size_t n, int peer);
    int (*recv)(float *buf, size_t n, int peer);
    int (*bcast)(float *buf, size_t n, int root);
} Transport;

// The transport for a backend's memory: its own collectives when it has them
// (be->comm), else MPI over host memory (host backends only). 0 after an error
// line (a device backend without collectives in a group of several).
int transport_for(const Backend *be, int world, Transport *out);

// Cross-rank messages go in buckets of this many floats (a receiver needs one
// bucket of memory, not a whole gradient).
#define REDUCE_BUCKET_FLOATS ((size_t)4 << 20)

typedef struct {
    const Backend *be;
    Transport tr;
    int rank, world, accum;
    size_t n;                  // floats per gradient
    float **buf;               // buf[0]: the model's gradient buffer; buf[1..cap-1]: owned here
    int *leaves;               // leaves summed in buf[i], for i < top (the binary counter)
    int cap, top;
    float *bucket;             // receive buffer for a cross-rank bucket (buf[1] when there is one)
    size_t bucket_n;
    int own_bucket;
} Reducer;

// Extra bytes beyond the model's one gradient buffer for (accum, world):
// floor(log2 accum) whole buffers, plus one bucket when a group of several has
// no spare buffer (accum 1). 0 for accum 1 on one process.
size_t reduce_extra_bytes(size_t n_params, int accum, int world);

// grads: the model's gradient buffer (backend memory, n floats). 0 after an error line.
int reducer_init(Reducer *r, const Backend *be, const Transport *tr, float *grads, size_t n, int accum, int rank,
                 int world);
// Start a step (no leaf held).
void reducer_begin(Reducer *r);
// The zeroed buffer the next micro-batch's backward writes into.
float *reducer_leaf(Reducer *r);
// That micro-batch is done: combine what the tree allows now.
void reducer_push(Reducer *r);
// After the rank's last micro-batch: the step's gradient, equal on every rank,
// in buf[0] (the returned pointer). NULL after an error line (a rank failed).
float *reducer_finish(Reducer *r);
void reducer_free(Reducer *r);

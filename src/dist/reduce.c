// reduce.c: the fixed-order gradient sum of reduce.h, shared by both
// transports. Addition is the backend's own (residual_forward with no scale:
// out = x + f), so the bits are those of one float add per element, in the
// tree's order, on every backend.
#include "dist/reduce.h"
#include <string.h>
#include "core/common.h"
#include "dist/dist.h"

static int floor_log2(int a) {
    int k = 0;
    while (a > 1) { a >>= 1; k++; }
    return k;
}

size_t reduce_extra_bytes(size_t n_params, int accum, int world) {
    size_t whole = (size_t)floor_log2(accum < 1 ? 1 : accum);
    size_t bytes = whole * n_params * sizeof(float);
    if (world > 1 && whole == 0) bytes += (n_params < REDUCE_BUCKET_FLOATS ? n_params : REDUCE_BUCKET_FLOATS) * sizeof(float);
    return bytes;
}

static const Transport transport_mpi = {"mpi", dist_host_send, dist_host_recv, dist_host_bcast};

// The backend's communicator: its id made on rank 0 and carried to all over MPI.
static int open_comm(const BackendComm *cm, int world) {
    unsigned char *id = xcalloc(1, cm->id_bytes);
    int ok = (dist_rank() != 0 || cm->make_id(id)) && dist_bcast_bytes(id, cm->id_bytes, 0) &&
             cm->init(id, dist_rank(), world);
    free(id);
    return ok;
}

int transport_for(const Backend *be, int world, Transport *out) {
    if (be->comm) {
        if (!open_comm(be->comm, world)) return 0;
        *out = (Transport){be->comm->name, be->comm->send, be->comm->recv, be->comm->bcast};
        return 1;
    }
    if (strcmp(be->name, "cpu") && world > 1) {
        dcal_err("the %s backend has no collectives in this build: %d processes cannot share its gradients",
                 be->name, world);
        return 0;
    }
    *out = transport_mpi;
    return 1;
}

int reducer_init(Reducer *r, const Backend *be, const Transport *tr, float *grads, size_t n, int accum, int rank,
                 int world) {
    memset(r, 0, sizeof *r);
    r->be = be; r->n = n; r->accum = accum; r->rank = rank; r->world = world;
    if (tr) r->tr = *tr;
    r->cap = 1 + floor_log2(accum);   // the binary counter never holds more than this
    r->buf = xcalloc((size_t)r->cap, sizeof *r->buf);
    r->leaves = xcalloc((size_t)r->cap, sizeof *r->leaves);
    r->buf[0] = grads;
    for (int i = 1; i < r->cap; i++) r->buf[i] = be->alloc(n * sizeof(float));
    if (world > 1) {
        r->bucket_n = n < REDUCE_BUCKET_FLOATS ? n : REDUCE_BUCKET_FLOATS;
        r->own_bucket = r->cap < 2;
        r->bucket = r->own_bucket ? be->alloc(r->bucket_n * sizeof(float)) : r->buf[1];
        if (!tr) { dcal_err("internal: a group of %d needs a transport", world); return 0; }
    }
    return 1;
}

void reducer_begin(Reducer *r) { r->top = 0; }

float *reducer_leaf(Reducer *r) {
    if (r->top >= r->cap) dcal_die("internal: reducer: more than %d micro-batches in a step", r->accum);
    float *b = r->buf[r->top];
    r->be->zero(b, r->n * sizeof(float));
    return b;
}

// dst = dst + src: left + right in the tree.
static void add(const Reducer *r, float *dst, const float *src, size_t n) {
    r->be->residual_forward(dst, dst, src, NULL, 1, n);
}

void reducer_push(Reducer *r) {
    r->leaves[r->top++] = 1;
    while (r->top >= 2 && r->leaves[r->top - 1] == r->leaves[r->top - 2]) {
        add(r, r->buf[r->top - 2], r->buf[r->top - 1], r->n);
        r->leaves[r->top - 2] *= 2;
        r->top--;
    }
}

// Rank `from` sends its sum to rank `to`, bucket by bucket; `to` adds it on the right.
static int combine(Reducer *r, int to, int from) {
    float *mine = r->buf[0];
    for (size_t o = 0; o < r->n; o += r->bucket_n) {
        size_t k = r->n - o < r->bucket_n ? r->n - o : r->bucket_n;
        if (r->rank == from && !r->tr.send(mine + o, k, to)) return 0;
        if (r->rank == to) {
            if (!r->tr.recv(r->bucket, k, from)) return 0;
            add(r, mine + o, r->bucket, k);
        }
    }
    return 1;
}

// T(lo, n) over ranks: this rank's part, children first, so that every pair of
// ranks meets in the same order on both sides.
static int tree(Reducer *r, int lo, int n) {
    if (n == 1) return 1;
    int p = 1;
    while (p * 2 < n) p *= 2;
    if (r->rank < lo + p) {
        if (!tree(r, lo, p)) return 0;
    } else if (!tree(r, lo + p, n - p)) {
        return 0;
    }
    if (r->rank == lo || r->rank == lo + p) return combine(r, lo, lo + p);
    return 1;
}

float *reducer_finish(Reducer *r) {
    for (int i = r->top - 2; i >= 0; i--) add(r, r->buf[i], r->buf[i + 1], r->n);   // the counter's right fold
    r->top = 0;
    if (r->world > 1 && (!tree(r, 0, r->world) || !r->tr.bcast(r->buf[0], r->n, 0))) return NULL;
    return r->buf[0];
}

void reducer_free(Reducer *r) {
    if (!r->buf) return;
    if (r->be->comm) r->be->comm->finish();
    for (int i = 1; i < r->cap; i++) r->be->free(r->buf[i]);
    if (r->own_bucket) r->be->free(r->bucket);
    free(r->buf);
    free(r->leaves);
    memset(r, 0, sizeof *r);
}

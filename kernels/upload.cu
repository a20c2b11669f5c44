// upload.cu: the input batch's way onto the device (backend.h: host_alloc … host_ready).
//
// A micro-batch's images (38.5 MB of fp32 at 448 px, micro-batch 16) are copied from
// page-locked host memory on a copy stream of their own, so the DMA runs while the compute
// stream is still busy with the previous micro-batch's backward (which never reads the image
// buffer: im2col, its only reader, ran at the start of that micro-batch's forward). From
// pageable memory the same copy runs at a fraction of the bandwidth and not beside compute.
//
// Two kinds of events keep it correct without a host wait in the step:
//  - copied[src]: recorded on the copy stream after the copy. The compute stream waits on it
//    at once (every op enqueued after upload() sees the data); host_ready(src) waits on it
//    on the host before the caller may overwrite src.
//  - consumed[dst]: recorded on the compute stream by consumed(dst), after dst's last reader
//    was enqueued. The next upload into dst makes the copy stream wait on it, and on nothing
//    else queued. A dst never uploaded before (or evicted) waits for all compute work queued
//    so far: its allocation's memset, say.
#include <string.h>
#include "kernels/cuda_common.h"

#define UPLOAD_SLOTS 8   // buffers tracked at once: a run uploads from six host buffers (images, labels and
                         // pairs, two of each) into three device ones

typedef struct {
    const void *p;       // NULL: free
    cudaEvent_t ev;      // made once per slot, re-recorded
} Slot;

static Slot g_copied[UPLOAD_SLOTS], g_consumed[UPLOAD_SLOTS];
static int g_evict;   // round-robin victim when a table is full
static cudaStream_t g_copy;
static cudaEvent_t g_fence;

static cudaStream_t copy_stream(void) {
    if (!g_copy) {
        // Non-blocking: it must not wait for work on the legacy default stream either.
        CUDA_CHECK(cudaStreamCreateWithFlags(&g_copy, cudaStreamNonBlocking));
        CUDA_CHECK(cudaEventCreateWithFlags(&g_fence, cudaEventDisableTiming));
    }
    return g_copy;
}

static Slot *find(Slot *t, const void *p) {
    for (int i = 0; i < UPLOAD_SLOTS; i++)
        if (t[i].p == p) return &t[i];
    return NULL;
}

// p's slot, or a new one. A full table evicts a slot after waiting for its event on the host,
// so forgetting it loses no ordering: what it guarded has already happened.
static Slot *take(Slot *t, const void *p) {
    Slot *s = find(t, p);
    if (s) return s;
    s = find(t, NULL);
    if (!s) {
        s = &t[g_evict++ % UPLOAD_SLOTS];
        CUDA_CHECK(cudaEventSynchronize(s->ev));
    }
    if (!s->ev) CUDA_CHECK(cudaEventCreateWithFlags(&s->ev, cudaEventDisableTiming));
    s->p = p;
    return s;
}

void *cuda_host_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 1;
    cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
    if (e != cudaSuccess) {
        fprintf(stderr, "dcal: cuda: %s:%d: cudaHostAlloc(%zu bytes): %s\n", __FILE__, __LINE__, bytes,
                cudaGetErrorString(e));
        exit(1);
    }
    memset(p, 0, bytes);
    return p;
}

void cuda_host_ready(const void *p) {
    Slot *s = find(g_copied, p);
    if (s) CUDA_CHECK(cudaEventSynchronize(s->ev));
}

void cuda_host_free(void *p) {
    if (!p) return;
    cuda_host_ready(p);   // a copy may still read it
    Slot *s = find(g_copied, p);
    if (s) s->p = NULL;
    CUDA_CHECK(cudaFreeHost(p));
}

void cuda_upload(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    cudaStream_t cs = copy_stream();
    Slot *c = find(g_consumed, dst);
    if (!c) CUDA_CHECK(cudaEventRecord(g_fence, cuda_stream()));
    CUDA_CHECK(cudaStreamWaitEvent(cs, c ? c->ev : g_fence, 0));
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cs));
    Slot *d = take(g_copied, src);
    CUDA_CHECK(cudaEventRecord(d->ev, cs));
    CUDA_CHECK(cudaStreamWaitEvent(cuda_stream(), d->ev, 0));
}

void cuda_consumed(const void *dst) {
    Slot *s = take(g_consumed, dst);
    CUDA_CHECK(cudaEventRecord(s->ev, cuda_stream()));
}

// streams.cpp: streams and events, modelled as late as a GPU may run them.
//
// A stream from cudaStreamCreate (the backend's compute stream) runs every call to
// completion before it returns, as the rest of the simulator does. A stream from
// cudaStreamCreateWithFlags (kernels/upload.cu's copy stream) is lazy: its copies are queued
// and run only when something waits for them — a stream or the host waiting on an event
// recorded after them, or a synchronisation of that stream or of the device. So code that
// forgets to wait for a copy reads the old bytes, and a host buffer overwritten before the
// copy was waited for is copied as overwritten: both give wrong numbers in the tests instead
// of passing by the luck of timing. Kernel launches on a lazy stream are not modelled (refused).
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <vector>
#include "cuda_runtime.h"

struct CUstream_st {
    explicit CUstream_st(bool l) : lazy(l) {}
    bool lazy;
    std::deque<std::function<void()>> queue;   // not yet run, in order
    size_t enqueued = 0, done = 0;             // ops ever queued / ever run
};
struct CUevent_st {
    CUstream_st *s = nullptr;   // nullptr: complete (recorded on an eager stream, or never)
    size_t upto = 0;            // complete once s->done reaches it
};

namespace {
CUstream_st g_eager(false);
std::vector<CUstream_st *> g_lazy;

void run_until(CUstream_st *s, size_t upto) {
    while (s && s->done < upto) {
        std::function<void()> op = std::move(s->queue.front());
        s->queue.pop_front();
        s->done++;
        op();
    }
}
void run_all(CUstream_st *s) { run_until(s, s->enqueued); }
}   // namespace

namespace cudasim {
bool stream_is_lazy(cudaStream_t s) { return s && s->lazy; }
// A copy on a lazy stream: checked now (sim.cpp), run when waited for.
void stream_enqueue(cudaStream_t s, std::function<void()> op) {
    s->queue.push_back(std::move(op));
    s->enqueued++;
}
// cudaFree and cudaFreeHost wait for the device, as the runtime's do.
void streams_finish(void) {
    for (CUstream_st *s : g_lazy) run_all(s);
}
}   // namespace cudasim

cudaError_t cudaStreamCreate(cudaStream_t *s) { *s = &g_eager; return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) {
    *s = new CUstream_st(true);
    g_lazy.push_back(*s);
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (s && s->lazy) run_all(s);   // destroying a stream lets its queued work finish
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (s && s->lazy) run_all(s);
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
    cudasim::streams_finish();
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) { *e = new CUevent_st; return cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    if (!e) return cudaErrorInvalidValue;
    e->s = s && s->lazy ? s : nullptr;
    e->upto = e->s ? s->enqueued : 0;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (!e) return cudaErrorInvalidValue;
    run_until(e->s, e->upto);
    return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
    if (!e) return cudaErrorInvalidValue;
    if (s && s->lazy) {   // the waiting stream's later ops run after e's work: queue the wait itself
        CUstream_st *w = e->s;
        size_t upto = e->upto;
        cudasim::stream_enqueue(s, [w, upto] { run_until(w, upto); });
    } else {
        run_until(e->s, e->upto);   // an eager stream's next op runs now: e's work first
    }
    return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned) { return cudaMallocHost(p, bytes); }

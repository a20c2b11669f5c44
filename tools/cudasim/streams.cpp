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
//
// Stream capture (global mode, on the compute stream): between cudaStreamBeginCapture and
// cudaStreamEndCapture every stream-ordered call on that stream (launches, async copies and
// memsets, cuBLAS and cuBLASLt products) is checked as at a call and recorded as a closure that
// holds its arguments by value; nothing runs. The graph replays the closures in order. What the
// runtime prohibits while a global-mode capture is open (allocation, a synchronous copy, a host
// wait, work that would join the capture from another stream) returns the runtime's error and
// invalidates the capture: later calls on the stream return cudaErrorStreamCaptureInvalidated,
// and so does cudaStreamEndCapture, with no graph — the path a caller's fallback must take.
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
struct CUgraph_st {
    std::vector<std::function<void()>> ops;   // in capture order
};
struct CUgraphExec_st {
    std::vector<std::function<void()>> ops;
};
struct CUevent_st {
    CUstream_st *s = nullptr;   // nullptr: complete (recorded on an eager stream, or never)
    size_t upto = 0;            // complete once s->done reaches it
};

namespace {
CUstream_st g_eager(false);
std::vector<CUstream_st *> g_lazy;

// The open capture (global mode: one at a time in the process), and what it has recorded.
struct Capture {
    CUstream_st *s = nullptr;   // nullptr: none open
    bool invalidated = false;
    std::vector<std::function<void()>> ops;
} g_cap;

// An error that ends the open capture's usefulness: said once, on stderr, with the call.
cudaError_t invalidate(cudaError_t e, const char *what, const char *why) {
    if (!g_cap.invalidated) fprintf(stderr, "cudasim: %s during stream capture: %s (capture invalidated)\n", what, why);
    g_cap.invalidated = true;
    return e;
}

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

namespace cudasim {
cudaError_t capture_gate(cudaStream_t s, const char *what, bool *record) {
    *record = false;
    if (!g_cap.s) return cudaSuccess;
    if (s == g_cap.s) {
        if (g_cap.invalidated) return cudaErrorStreamCaptureInvalidated;
        *record = true;
        return cudaSuccess;
    }
    if (!s)   // the legacy stream synchronises with the (blocking) capturing stream
        return invalidate(cudaErrorStreamCaptureImplicit, what, "on the legacy stream, which would wait for the capturing stream");
    // Legal on a GPU for an unrelated non-blocking stream, but it would run once, at capture, and
    // never in a replay: the recorded body must keep to its stream, so the simulator refuses it.
    return invalidate(cudaErrorStreamCaptureUnsupported, what, "on a stream other than the capturing one (not recorded)");
}
void capture_record(std::function<void()> op) { g_cap.ops.push_back(std::move(op)); }
cudaError_t capture_unsafe(const char *what) {
    if (!g_cap.s) return cudaSuccess;
    return invalidate(cudaErrorStreamCaptureUnsupported, what, "prohibited while a cudaStreamCaptureModeGlobal capture is open");
}
}   // namespace cudasim

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
    if (!s) return cudaErrorStreamCaptureUnsupported;   // the legacy stream cannot capture
    if (mode != cudaStreamCaptureModeGlobal) cudasim::fail("cudaStreamBeginCapture: only cudaStreamCaptureModeGlobal is modelled");
    if (s->lazy) cudasim::fail("cudaStreamBeginCapture on a lazy stream is not modelled");
    if (g_cap.s) cudasim::fail("cudaStreamBeginCapture: a capture is already open (concurrent captures are not modelled)");
    g_cap.s = s;
    g_cap.invalidated = false;
    g_cap.ops.clear();
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
    if (!graph) return cudaErrorInvalidValue;
    *graph = nullptr;
    if (!s || s != g_cap.s) return cudaErrorStreamCaptureUnmatched;
    bool bad = g_cap.invalidated;
    g_cap.s = nullptr;
    g_cap.invalidated = false;
    std::vector<std::function<void()>> ops;
    ops.swap(g_cap.ops);
    if (bad) return cudaErrorStreamCaptureInvalidated;
    *graph = new CUgraph_st{std::move(ops)};
    return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status) {
    if (!status) return cudaErrorInvalidValue;
    *status = s && s == g_cap.s ? (g_cap.invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive)
                                : cudaStreamCaptureStatusNone;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags) {
    if (!exec || !graph) return cudaErrorInvalidValue;
    if (flags) cudasim::fail("cudaGraphInstantiate: flags %llu are not modelled (0 only)", flags);
    *exec = new CUgraphExec_st{graph->ops};   // a copy: the graph may be destroyed first
    return cudaSuccess;
}
// A plain replay: the recorded calls in capture order, each complete before the next (the
// compute stream's rule), with the arguments they were captured with.
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
    if (!exec) return cudaErrorInvalidValue;
    if (g_cap.s) cudasim::fail("cudaGraphLaunch during a stream capture (a child graph) is not modelled");
    if (s && s->lazy) cudasim::fail("cudaGraphLaunch on a lazy stream is not modelled");
    for (const std::function<void()> &op : exec->ops) op();
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) { delete exec; return cudaSuccess; }
cudaError_t cudaGraphDestroy(cudaGraph_t graph) { delete graph; return cudaSuccess; }

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
    if (cudaError_t e = cudasim::capture_unsafe("cudaStreamSynchronize")) return e;
    if (s && s->lazy) run_all(s);
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
    if (cudaError_t e = cudasim::capture_unsafe("cudaDeviceSynchronize")) return e;
    cudasim::streams_finish();
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) { *e = new CUevent_st; return cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    if (!e) return cudaErrorInvalidValue;
    if (g_cap.s && s == g_cap.s) cudasim::fail("cudaEventRecord on a capturing stream (an event node) is not modelled");
    e->s = s && s->lazy ? s : nullptr;
    e->upto = e->s ? s->enqueued : 0;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (!e) return cudaErrorInvalidValue;
    if (cudaError_t err = cudasim::capture_unsafe("cudaEventSynchronize")) return err;
    run_until(e->s, e->upto);
    return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
    if (!e) return cudaErrorInvalidValue;
    if (g_cap.s && s == g_cap.s) cudasim::fail("cudaStreamWaitEvent on a capturing stream (a dependency from outside the capture) is not modelled");
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

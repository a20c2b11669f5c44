// graph.cu: recorded steps (backend.h graph_run): a micro-batch's body — forward from the patch
// embedding, the loss copy, backward — captured once as a CUDA graph and replayed, so a step
// costs one graph launch per micro-batch instead of one launch (and its host overhead) per op.
//
// On only with DCAL_CUDA_GRAPHS=1 (read once): the recording has run in the simulator
// (tools/cudasim, plain replays) but not yet on a GPU, so the default stays off until a device
// run confirms it. Per key k (0 .. GRAPH_KEYS-1; others always run directly):
//   1st call: body runs directly — the warm-up sizes cuda_scratch, allocates cuBLASLt's
//             workspace and fills linear.cu's algorithm cache, none of which may happen inside
//             a capture;
//   2nd call: the compute stream is captured (global mode) while body runs, the graph is
//             instantiated and launched;
//   later:    the graph is launched; body is not called.
// A capture that fails (something inside allocated, waited on the host, copied to the host or
// grew the scratch) ends cleanly: one line on stderr, graphs off for the rest of the run, and
// body runs directly — a training run never stops because of graphs.
#include <string.h>
#include "kernels/cuda_common.h"

#define GRAPH_KEYS 64

typedef struct {
    int warm;               // body ran once directly since the last reset
    cudaGraphExec_t exec;   // NULL: not recorded
} Recording;

static Recording g_rec[GRAPH_KEYS];
static int g_mode = -1;                // -1: not read yet; 0: off; 1: on
static int g_capturing;                // a capture is open: CUDA_CHECK failures are collected
static char g_capture_err[256];        // the first failure inside the open capture, "" if none

// DCAL_CUDA_GRAPHS: unset, "" or "0" off, "1" on; anything else stops the run at set-up
// (device.cu's describe reads it first), as a mistyped DCAL_CUDA_ATTN does.
bool cuda_graphs_enabled(void) {
    if (g_mode < 0) {
        const char *v = getenv("DCAL_CUDA_GRAPHS");
        if (v && *v && strcmp(v, "0") && strcmp(v, "1")) {
            fprintf(stderr, "dcal: DCAL_CUDA_GRAPHS: '%s' is not 0 or 1 (1 records each micro-batch's step as a CUDA "
                            "graph; unset or 0 runs it op by op)\n", v);
            exit(1);
        }
        g_mode = v && !strcmp(v, "1");
    }
    return g_mode == 1;
}

bool cuda_graph_capturing(void) { return g_capturing != 0; }

// Called by CUDA_CHECK / CUBLAS_CHECK on a failure (and by cuda_scratch): inside an open
// capture the failure is kept, to end the capture cleanly, and the caller goes on (what it
// enqueues next is not run); outside one it is fatal as always (returns false).
bool cuda_graph_absorb(const char *err, const char *call) {
    if (!g_capturing) return false;
    if (!g_capture_err[0]) snprintf(g_capture_err, sizeof g_capture_err, "%s: %s", call, err);
    return true;
}

void cuda_graph_reset(void) {
    bool live = false;
    for (int k = 0; k < GRAPH_KEYS; k++) live |= g_rec[k].exec != NULL;
    // An exec may still be running on the stream: wait before destroying it.
    if (live) CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
    for (int k = 0; k < GRAPH_KEYS; k++) {
        if (g_rec[k].exec) CUDA_CHECK(cudaGraphExecDestroy(g_rec[k].exec));
        g_rec[k].exec = NULL;
        g_rec[k].warm = 0;
    }
}

// Graphs off for the rest of the run, said once.
static void give_up(const char *why) {
    fprintf(stderr, "dcal: cuda: step graph capture failed (%s); running steps without graphs\n", why);
    g_mode = 0;
    cuda_graph_reset();
}

// Captures body on the compute stream and instantiates it; NULL (graphs then off) on any failure.
static cudaGraphExec_t record(void (*body)(void *ctx), void *ctx) {
    cudaStream_t s = cuda_stream();
    cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
    if (e != cudaSuccess) {
        give_up(cudaGetErrorString(e));
        return NULL;
    }
    g_capture_err[0] = 0;
    g_capturing = 1;
    body(ctx);
    g_capturing = 0;
    cudaGraph_t graph = NULL;
    e = cudaStreamEndCapture(s, &graph);
    (void)cudaGetLastError();   // a launch refused inside the capture left its error here
    cudaGraphExec_t exec = NULL;
    if (!g_capture_err[0] && e != cudaSuccess)
        snprintf(g_capture_err, sizeof g_capture_err, "cudaStreamEndCapture: %s", cudaGetErrorString(e));
    if (!g_capture_err[0]) {
        e = cudaGraphInstantiate(&exec, graph, 0);
        if (e != cudaSuccess) {
            exec = NULL;
            snprintf(g_capture_err, sizeof g_capture_err, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
        }
    }
    if (graph) CUDA_CHECK(cudaGraphDestroy(graph));   // the exec keeps what it needs
    if (!exec) give_up(g_capture_err);
    return exec;
}

int cuda_graph_run(int key, void (*body)(void *ctx), void *ctx) {
    // cuDNN's SDPA (train.attention=cudnn) runs its execution plans with workspace and internal
    // buffers the library chooses; nothing documents that they keep their addresses from call
    // to call, so a replay could read freed memory: those steps always run directly.
    if (!cuda_graphs_enabled() || key < 0 || key >= GRAPH_KEYS || cuda_attention_cudnn()) {
        body(ctx);
        return 0;
    }
    Recording *r = &g_rec[key];
    if (!r->warm) {
        body(ctx);
        // A scratch growth inside body reset every recording (and this warm-up flag): the
        // warm-up is still complete, body having sized the scratch it needs.
        r->warm = 1;
        return 0;
    }
    if (!r->exec) {
        r->exec = record(body, ctx);
        if (!r->exec) {   // nothing recorded ran: the micro-batch runs directly
            body(ctx);
            return 0;
        }
    }
    cudaError_t e = cudaGraphLaunch(r->exec, cuda_stream());
    if (e != cudaSuccess) {   // a refused launch ran nothing: run the body itself
        give_up(cudaGetErrorString(e));
        body(ctx);
        return 0;
    }
    return 1;
}

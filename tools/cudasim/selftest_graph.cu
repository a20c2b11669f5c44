// selftest_graph.cu: the simulator's stream capture and graphs (ctest sim_selftest_graph), and
// kernels/graph.cu on top of them. A capture records a kernel, a memset and copies without
// running them, and two launches of its graph give the bits of running the same calls twice
// directly; a cuBLASLt product (linear.cu) recorded with its descriptors released at once
// replays right; what the runtime prohibits during a global-mode capture returns its error and
// invalidates the capture. graph.cu: warm-up, capture, replay (graph_run's 0, 1, 1), a read-back,
// a scratch growth inside the body each ending in the one-line fallback with the run going on,
// and a growth outside resetting the recordings.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <vector>
#include "kernels/cuda_common.h"
#include "tools/cudasim/selftest.h"

enum { N = 300 };

__global__ void axpy_kernel(float *y, const float *x, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 2.f * y[i] + a * x[i];
}

struct Bufs {
    float *x, *y, *z, *w;
};

static Bufs bufs(void) {
    std::vector<float> x(N), one(N, 1.f);
    for (int i = 0; i < N; i++) x[i] = 0.25f * (float)i - 3.f;
    Bufs b;
    b.x = dev(x.data(), N);
    b.y = dev(one.data(), N);
    b.z = dev(one.data(), N);
    b.w = dev(one.data(), N);
    return b;
}

static std::vector<float> host(const float *d) {
    std::vector<float> h(N);
    cudaMemcpy(h.data(), d, N * sizeof(float), cudaMemcpyDeviceToHost);
    return h;
}

// The calls a graph records: not idempotent (y doubles), so two replays differ from one.
static void ops(const Bufs &b, float a, cudaStream_t s) {
    axpy_kernel<<<cdiv(N, 128), 128, 0, s>>>(b.y, b.x, a, N);
    cudaMemsetAsync(b.w, 0, N / 2 * sizeof(float), s);
    cudaMemcpyAsync(b.z, b.y, N * sizeof(float), cudaMemcpyDeviceToDevice, s);
}

static bool same(const std::vector<float> &a, const std::vector<float> &b) {
    return a.size() == b.size() && !memcmp(a.data(), b.data(), a.size() * sizeof(float));
}

static void test_capture_replay(void) {
    cudaStream_t s = cuda_stream();
    Bufs d = bufs(), g = bufs();
    ops(d, 0.5f, s);
    ops(d, 0.5f, s);
    float a = 0.5f;
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess, "begin capture");
    ops(g, a, s);
    CHECK(cudaGetLastError() == cudaSuccess, "a recorded launch sets no error");
    cudaStreamCaptureStatus st;
    CHECK(cudaStreamIsCapturing(s, &st) == cudaSuccess && st == cudaStreamCaptureStatusActive, "capturing");
    cudaGraph_t graph = NULL;
    CHECK(cudaStreamEndCapture(s, &graph) == cudaSuccess && graph, "end capture");
    a = 100.f;   // the kernel's argument was taken by value at the launch
    std::vector<float> ones(N, 1.f);
    CHECK(same(host(g.y), ones) && same(host(g.z), ones) && same(host(g.w), ones), "a capture runs nothing");
    cudaGraphExec_t exec = NULL;
    CHECK(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess && exec, "instantiate");
    CHECK(cudaGraphDestroy(graph) == cudaSuccess, "graph destroyed before its exec");
    CHECK(cudaGraphLaunch(exec, s) == cudaSuccess && cudaGraphLaunch(exec, s) == cudaSuccess, "two launches");
    CHECK(same(host(g.y), host(d.y)) && same(host(g.z), host(d.z)) && same(host(g.w), host(d.w)),
          "two replays give the bits of two direct runs");
    CHECK(host(g.w)[0] == 0.f && host(g.w)[N - 1] == 1.f && host(g.y)[1] != host(g.y)[0], "the check can fail");
    CHECK(cudaGraphExecDestroy(exec) == cudaSuccess, "exec destroyed");
    printf("ok: capture of a kernel, memset and copy; two replays equal two direct runs\n");
}

// linear.cu's forward (cuBLASLt with the BIAS epilogue) captured after a warm-up: linear.cu
// destroys its descriptors right after the call, so the recording must hold copies.
static void test_lt_capture(void) {
    enum { R = 24, IC = 32, OC = 16 };
    std::vector<float> hx(R * IC), hw(OC * IC), hb(OC);
    for (size_t i = 0; i < hx.size(); i++) hx[i] = (float)((i * 37) % 11) * 0.125f - 0.6f;
    for (size_t i = 0; i < hw.size(); i++) hw[i] = (float)((i * 13) % 7) * 0.25f - 0.7f;
    for (int i = 0; i < OC; i++) hb[i] = 0.1f * (float)i;
    float *xf = dev(hx.data(), hx.size()), *w = dev(hw.data(), hw.size()), *b = dev(hb.data(), hb.size());
    float *od = dev<float>(NULL, R * OC), *og = dev<float>(NULL, R * OC);
    Act *x = (Act *)dev<float>(NULL, R * IC);   // the activation input is an Act (bf16 at the default precision)
    cuda_act_from_f32(x, xf, R * IC);
    cuda_linear_forward(od, x, w, b, R, IC, OC);   // the warm-up: workspace, algorithm cache
    cudaStream_t s = cuda_stream();
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess, "begin capture");
    cuda_linear_forward(og, x, w, b, R, IC, OC);
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    CHECK(cudaStreamEndCapture(s, &graph) == cudaSuccess && cudaGraphInstantiate(&exec, graph) == cudaSuccess,
          "linear forward captured");
    cudaGraphLaunch(exec, s);
    std::vector<float> hd(R * OC), hg(R * OC);
    cudaMemcpy(hd.data(), od, hd.size() * sizeof(float), cudaMemcpyDeviceToHost);
    cudaMemcpy(hg.data(), og, hg.size() * sizeof(float), cudaMemcpyDeviceToHost);
    CHECK(same(hd, hg) && hg[0] == hg[0], "a replayed cuBLASLt product equals the direct one");
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    printf("ok: cuBLASLt product (BIAS epilogue) recorded and replayed\n");
}

// Each call the runtime prohibits in a global-mode capture: its error, the capture invalidated
// (a later call on the stream and EndCapture say so, no graph), and normal service after.
static void test_prohibited(void) {
    cudaStream_t s = cuda_stream();
    Bufs b = bufs();
    float *pinned = NULL, pageable[N];
    cudaMallocHost((void **)&pinned, N * sizeof(float));
    for (int c = 0; c < 9; c++) {
        CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess, "begin capture %d", c);
        void *p = NULL;
        cudaError_t e = cudaSuccess, want = cudaErrorStreamCaptureUnsupported;
        const char *what = "";
        switch (c) {
        case 0: what = "cudaMalloc", e = cudaMalloc(&p, 64); break;
        case 1: what = "cudaFree", e = cudaFree(b.w); break;
        case 2: what = "cudaMemcpy D2H", e = cudaMemcpy(pageable, b.y, sizeof pageable, cudaMemcpyDeviceToHost); break;
        case 3: what = "cudaMemcpyAsync D2H", e = cudaMemcpyAsync(pinned, b.y, N * 4, cudaMemcpyDeviceToHost, s); break;
        case 4: what = "cudaMemcpyAsync from pageable", e = cudaMemcpyAsync(b.y, pageable, N * 4, cudaMemcpyHostToDevice, s); break;
        case 5: what = "cudaStreamSynchronize", e = cudaStreamSynchronize(s); break;
        case 6: what = "cudaDeviceSynchronize", e = cudaDeviceSynchronize(); break;
        case 7: what = "cudaMemset", e = cudaMemset(b.w, 0, 16); break;
        default:
            what = "a launch on the legacy stream", want = cudaErrorStreamCaptureImplicit;
            axpy_kernel<<<1, 32>>>(b.y, b.x, 1.f, N);
            e = cudaGetLastError();
        }
        CHECK(e == want, "%s in a capture: want error %d, got %d", what, (int)want, (int)e);
        CHECK(cudaMemsetAsync(b.w, 0, 16, s) == cudaErrorStreamCaptureInvalidated, "%s: capture not invalidated", what);
        axpy_kernel<<<1, 32, 0, s>>>(b.y, b.x, 1.f, N);
        CHECK(cudaGetLastError() == cudaErrorStreamCaptureInvalidated, "%s: a later launch is not refused", what);
        cudaGraph_t g = (cudaGraph_t)&g;
        CHECK(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated && !g, "%s: EndCapture", what);
    }
    // Recorded: a copy from page-locked memory, read at each replay (not at the capture).
    for (int i = 0; i < N; i++) pinned[i] = 1.f;
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess, "begin capture");
    CHECK(cudaMemcpyAsync(b.z, pinned, N * 4, cudaMemcpyHostToDevice, s) == cudaSuccess, "pinned H2D recorded");
    cudaGraph_t g = NULL;
    cudaGraphExec_t x = NULL;
    CHECK(cudaStreamEndCapture(s, &g) == cudaSuccess && cudaGraphInstantiate(&x, g) == cudaSuccess, "end");
    pinned[7] = 42.f;
    cudaGraphLaunch(x, s);
    CHECK(host(b.z)[7] == 42.f, "the pinned source is read at the replay");
    cudaGraphExecDestroy(x);
    cudaGraphDestroy(g);
    void *p = NULL;
    CHECK(cudaMalloc(&p, 64) == cudaSuccess && cudaFree(p) == cudaSuccess, "allocation works after the captures");
    cudaFreeHost(pinned);
    printf("ok: prohibited calls return the runtime's errors and invalidate the capture\n");
}

// ---- graph.cu (DCAL_CUDA_GRAPHS=1, set in main before the first use) ----

struct Body {
    Bufs b;
    int calls;
    int mode;   // 0: plain; 1: reads back inside; 2: asks for more scratch at each call; 3: goes through scratch
};

static void body_fn(void *ctx) {
    Body *t = (Body *)ctx;
    t->calls++;
    ops(t->b, 0.5f, cuda_stream());
    if (t->mode == 1) {
        float v;
        cuda_to_host(&v, t->b.y, sizeof v);
    }
    if (t->mode == 3) {   // z = 2 z + y through the scratch buffer: a replay reads and writes scratch
        float *sc = (float *)cuda_scratch(N * sizeof(float));
        CUDA_CHECK(cudaMemcpyAsync(sc, t->b.y, N * sizeof(float), cudaMemcpyDeviceToDevice, cuda_stream()));
        axpy_kernel<<<cdiv(N, 128), 128, 0, cuda_stream()>>>(t->b.z, sc, 1.f, N);
        LAUNCH_CHECK();
    }
    if (t->mode == 2) {
        float *sc = (float *)cuda_scratch(((size_t)4 << 20) * (size_t)t->calls);
        cuda_zero(sc, sizeof(float));
    }
}

static void test_graph_run(void) {
    Body d = {bufs(), 0, 3}, g = {bufs(), 0, 3};
    for (int i = 0; i < 3; i++) body_fn(&d);
    int r[3];
    for (int i = 0; i < 3; i++) r[i] = cuda_graph_run(5, body_fn, &g);
    CHECK(r[0] == 0 && r[1] == 1 && r[2] == 1, "graph_run returned %d %d %d, want 0 1 1", r[0], r[1], r[2]);
    CHECK(g.calls == 2, "body called %d times, want 2 (warm-up, capture)", g.calls);
    CHECK(same(host(g.b.y), host(d.b.y)) && same(host(g.b.z), host(d.b.z)), "three graph_runs equal three bodies");
    // A scratch growth outside a capture frees the buffer the recording points at: the
    // recordings are dropped (else the next replay writes to freed memory), warm-up, record again.
    cuda_scratch((size_t)64 << 20);
    int a = cuda_graph_run(5, body_fn, &g), b = cuda_graph_run(5, body_fn, &g), c = cuda_graph_run(5, body_fn, &g);
    CHECK(a == 0 && b == 1 && c == 1 && g.calls == 4, "after a scratch growth: %d %d %d, %d calls (want 0 1 1, 4)", a, b,
          c, g.calls);
    for (int i = 0; i < 3; i++) body_fn(&d);
    CHECK(same(host(g.b.y), host(d.b.y)) && same(host(g.b.z), host(d.b.z)), "six graph_runs equal six bodies");
    CHECK(cuda_graph_run(64, body_fn, &g) == 0 && cuda_graph_run(64, body_fn, &g) == 0 && g.calls == 6,
          "a key out of the table runs directly");
    cuda_graph_reset();
    printf("ok: graph_run warm-up, capture, replay; reset on scratch growth\n");
}

// In a child: a body that breaks the contract (mode) runs three times through graph_run; the
// run goes on, each call's work is done exactly once, and graphs are off afterwards.
static int g_child_mode;
static void run_broken_body(void) {
    Body d = {bufs(), 0, 0}, g = {bufs(), 0, g_child_mode};
    int r = 0;
    for (int i = 0; i < 3; i++) r += cuda_graph_run(9, body_fn, &g), body_fn(&d);
    Body p = {bufs(), 0, 0};
    r += cuda_graph_run(10, body_fn, &p) + cuda_graph_run(10, body_fn, &p) + cuda_graph_run(10, body_fn, &p);
    bool ok = r == 0 && same(host(g.b.y), host(d.b.y)) && !cuda_graphs_enabled();
    fprintf(stderr, "%s\n", ok ? "child: three direct runs, graphs off" : "child: WRONG");
    exit(ok ? 0 : 2);
}
static void readback_child(void) { g_child_mode = 1; run_broken_body(); }
static void growth_child(void) { g_child_mode = 2; run_broken_body(); }

// Not modelled (a GPU records an event node): the simulator says so instead of guessing.
static void run_event_in_capture(void) {
    cudaEvent_t e;
    cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
    cudaStreamBeginCapture(cuda_stream(), cudaStreamCaptureModeGlobal);
    cudaEventRecord(e, cuda_stream());
}

// A mistyped switch stops the run at set-up rather than silently running without graphs.
static void run_bogus_switch(void) {
    setenv("DCAL_CUDA_GRAPHS", "yes", 1);
    cuda_graphs_enabled();
}

// Runs f in a child: it must exit 0 with `want` in its stderr, then the fallback's last words.
static void expect_fallback(const char *name, void (*f)(void), const char *want) {
    int st;
    std::string err = run_child(f, 3, &st);
    bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && err.find(want) != std::string::npos &&
              err.find("running steps without graphs\nchild: three direct runs, graphs off") != std::string::npos;
    CHECK(ok, "%s: want exit 0 and '%s', got status %d and: %s", name, want, st, err.c_str());
    if (ok) printf("ok: %s -> %s", name, err.c_str());
}

int main(void) {
    // Before the switch is first read here (it is read once per process).
    expect_death("DCAL_CUDA_GRAPHS=yes", run_bogus_switch,
                 "dcal: DCAL_CUDA_GRAPHS: 'yes' is not 0 or 1 (1 records each micro-batch's step as a CUDA graph; "
                 "unset or 0 runs it op by op)\n");
    setenv("DCAL_CUDA_GRAPHS", "1", 1);
    test_capture_replay();
    test_lt_capture();
    test_prohibited();
    CHECK(cuda_graphs_enabled(), "DCAL_CUDA_GRAPHS=1 turns graphs on");
    // The children first: each grows the scratch past what this process has so far.
    expect_fallback("a read-back inside the body", readback_child,
                    "dcal: cuda: step graph capture failed (cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, "
                    "cuda_stream()): operation not permitted when stream is capturing)");
    expect_fallback("a scratch growth inside the body", growth_child,
                    "dcal: cuda: step graph capture failed (cuda_scratch: the step needs more scratch than its warm-up "
                    "did)");
    test_graph_run();
    expect_death("an event recorded in a capture", run_event_in_capture, "cudaEventRecord on a capturing stream");
    printf("%s\n", g_fail ? "sim_selftest_graph: FAILED" : "sim_selftest_graph: all checks passed");
    return g_fail;
}

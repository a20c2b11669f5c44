// cudasim's cuda_runtime.h: what kernels/*.cu need of CUDA, for compiling them as
// C++ on a machine without a GPU (tools/cudasim/README.md). Kernels run on the
// CPU: one fiber per CUDA thread, one block at a time, real block and warp
// barriers; device memory is host memory that the simulator keeps track of.
// Launches (k<<<grid, block, smem, stream>>>(args)) and __shared__ declarations
// are rewritten by cu2cpp.pl into the cudasim:: calls below.
#pragma once
// Code that must differ under the simulator (kernels/mma_sm80.cuh: inline PTX
// there, a warp-collective model here) tests this macro.
#define CUDASIM 1
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- qualifiers: plain C++ on the host ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __restrict__ __restrict
#define __constant__
// The toolkit's vector_types.h wraps uses of its deprecated types (double4) in these; cuRAND does too.
#define __NV_SILENCE_DEPRECATION_BEGIN
#define __NV_SILENCE_DEPRECATION_END

struct uint3 { unsigned x, y, z; };
// Vector types (vector_types.h) with CUDA's alignment: what kernels and cuRAND's device API use.
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) double2 { double x, y; };
struct alignas(16) double4 { double x, y, z, w; };   // 32-byte aligned since CUDA 13; unused by dcal's kernels
struct alignas(16) int4 { int x, y, z, w; };
static inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline double2 make_double2(double x, double y) { return double2{x, y}; }
static inline double4 make_double4(double x, double y, double z, double w) { return double4{x, y, z, w}; }
static inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
// The built-in variables: set by the scheduler each time it switches to a thread.
extern thread_local uint3 threadIdx, blockIdx;
extern thread_local dim3 blockDim, gridDim;
static constexpr int warpSize = 32;

// ---- runtime API (the subset dcal uses, with the same signatures) ----
enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorLaunchFailure = 719,
    // stream capture (streams.cpp): the codes the runtime gives
    cudaErrorStreamCaptureUnsupported = 900,   // not permitted while the stream (or, global mode, any) captures
    cudaErrorStreamCaptureInvalidated = 901,   // an earlier error invalidated the capture
    cudaErrorStreamCaptureUnmatched = 903,     // EndCapture on a stream that is not capturing
    cudaErrorStreamCaptureImplicit = 906,      // the legacy stream would depend on a capturing stream
};
typedef cudaError_t cudaError;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
struct CUstream_st;
typedef CUstream_st *cudaStream_t;
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin;
    int major, minor, multiProcessorCount, maxThreadsPerBlock, warpSize;
};

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDevice(int *dev);
cudaError_t cudaSetDevice(int dev);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemset(void *p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s = 0);
template <class T> cudaError_t cudaMalloc(T **p, size_t bytes) { return cudaMalloc((void **)p, bytes); }

// Streams made with flags and events (streams.cpp): such a stream is lazy, its copies run only
// when something waits for them, the latest a GPU may run them.
enum { cudaStreamDefault = 0, cudaStreamNonBlocking = 1 };
enum { cudaEventDefault = 0, cudaEventDisableTiming = 2 };
enum { cudaHostAllocDefault = 0 };
struct CUevent_st;
typedef CUevent_st *cudaEvent_t;
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned flags);

// Stream capture and graphs (streams.cpp; README "Graphs"): while the compute stream captures,
// what is enqueued on it is recorded (kernel arguments by value), not run; a graph replays the
// recording in order. Global mode only. Calls the runtime prohibits during a global capture
// return its error and invalidate the capture.
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1,
                             cudaStreamCaptureModeRelaxed = 2 };
enum cudaStreamCaptureStatus { cudaStreamCaptureStatusNone = 0, cudaStreamCaptureStatusActive = 1,
                               cudaStreamCaptureStatusInvalidated = 2 };
struct CUgraph_st;
struct CUgraphExec_st;
typedef CUgraph_st *cudaGraph_t;
typedef CUgraphExec_st *cudaGraphExec_t;
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
namespace cudasim {
// The gate of every stream-ordered call (what names it, for messages): cudaSuccess and
// *record = false to run it now; cudaSuccess and *record = true to record it (capture_record);
// else the runtime's error (the capture is then invalidated, as the runtime does).
cudaError_t capture_gate(cudaStream_t s, const char *what, bool *record);
void capture_record(std::function<void()> op);
// A call the runtime prohibits during a global-mode capture (cudaMalloc, cudaMemcpy, a sync):
// cudaSuccess when none is open, else cudaErrorStreamCaptureUnsupported (capture invalidated).
cudaError_t capture_unsafe(const char *what);
bool host_pinned(const void *p, size_t bytes);   // [p, p + bytes) lies in one cudaMallocHost block
}

namespace cudasim {
cudaError_t func_set_attribute(const void *kernel, cudaFuncAttribute attr, int value);
// Reports the error with the kernel, block and thread running (if any) and exits 1.
[[noreturn]] void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int lane_id(void);                                   // the calling thread's lane (0 on the host)
bool device_range(const void *p, size_t bytes);      // [p, p + bytes) lies inside one cudaMalloc block
}
template <class F> cudaError_t cudaFuncSetAttribute(F *kernel, cudaFuncAttribute attr, int value) {
    return cudasim::func_set_attribute((const void *)kernel, attr, value);
}

// ---- device intrinsics ----
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }   // IEEE round-to-nearest, as the host's
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
template <class T> T __ldg(const T *p) { return *p; }
static inline void sincospi(double x, double *s, double *c) { *s = sin(3.14159265358979323846 * x), *c = cos(3.14159265358979323846 * x); }
static inline void sincospif(float x, float *s, float *c) { *s = sinf(3.14159265f * x), *c = cosf(3.14159265f * x); }
// Named by cuRAND's normal-by-inversion paths, which dcal never takes: a call fails loudly.
static inline float erfcinvf(float) { cudasim::fail("erfcinvf is not simulated"); }
static inline double erfcinv(double) { cudasim::fail("erfcinv is not simulated"); }

namespace cudasim {
// Barriers: the calling fiber waits until every thread that must arrive has.
void syncthreads(void);
void syncwarp(unsigned mask, const char *what);
// Warp exchange: every lane of mask deposits 8 bytes and gets lane src(lane)'s.
uint64_t warp_exchange(unsigned mask, uint64_t mine, int mode, int arg, int width, const char *what);
unsigned warp_vote(unsigned mask, int pred, const char *what);   // the ballot of mask's lanes
// Warp-collective instruction models (mma_sm80.cpp): each lane of mask deposits
// up to 48 bytes; once every lane has, all 32 deposits come back (stride 48) and
// *lane is the caller's lane. Lanes at different collectives are reported.
const unsigned char *warp_collective(unsigned mask, const void *mine, size_t bytes, const char *what, int *lane);
enum { WARP_COLL_STRIDE = 48 };
bool shared_range(const void *p, size_t bytes);   // [p, p + bytes) lies in the running block's shared memory
enum { XCHG_XOR, XCHG_IDX, XCHG_DOWN, XCHG_UP };
template <class T> T shfl(unsigned mask, T v, int mode, int arg, int width, const char *what) {
    static_assert(sizeof(T) <= 8, "cudasim: shuffles move at most 8 bytes");
    uint64_t in = 0, out;
    memcpy(&in, &v, sizeof(T));
    out = warp_exchange(mask, in, mode, arg, width, what);
    T r;
    memcpy(&r, &out, sizeof(T));
    return r;
}
// Shared memory: static __shared__ variables get a slot in the block's arena
// (keyed by the address of a per-declaration static), the dynamic one a
// separate buffer; both filled with 0xff bytes (NaN floats) at block start.
struct SharedKey { char unused; };
void *shared_static(const SharedKey *key, size_t bytes, size_t align);
void *shared_dynamic(void);
// Atomics: blocks run one at a time on one OS thread per grid, so a
// read-modify-write is atomic by construction; kept as functions for clarity.
}   // namespace cudasim

static inline void __syncthreads(void) { cudasim::syncthreads(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { cudasim::syncwarp(mask, "__syncwarp"); }
static inline void __threadfence(void) {}
static inline void __threadfence_block(void) {}
template <class T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return cudasim::shfl(mask, v, cudasim::XCHG_XOR, lane_mask, width, "__shfl_xor_sync");
}
template <class T> T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return cudasim::shfl(mask, v, cudasim::XCHG_IDX, src, width, "__shfl_sync");
}
template <class T> T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return cudasim::shfl(mask, v, cudasim::XCHG_DOWN, (int)delta, width, "__shfl_down_sync");
}
template <class T> T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return cudasim::shfl(mask, v, cudasim::XCHG_UP, (int)delta, width, "__shfl_up_sync");
}
static inline unsigned __ballot_sync(unsigned mask, int pred) { return cudasim::warp_vote(mask, pred, "__ballot_sync"); }
static inline int __any_sync(unsigned mask, int pred) { return cudasim::warp_vote(mask, pred, "__any_sync") != 0; }
static inline int __all_sync(unsigned mask, int pred) {
    return cudasim::warp_vote(mask, pred, "__all_sync") == cudasim::warp_vote(mask, 1, "__all_sync");
}
template <class T> T atomicAdd(T *p, T v) { T old = *p; *p = old + v; return old; }
template <class T> T atomicMax(T *p, T v) { T old = *p; if (v > old) *p = v; return old; }
template <class T> T atomicMin(T *p, T v) { T old = *p; if (v < old) *p = v; return old; }
template <class T> T atomicExch(T *p, T v) { T old = *p; *p = v; return old; }
template <class T> T atomicCAS(T *p, T cmp, T v) { T old = *p; if (old == cmp) *p = v; return old; }

// __shared__ T name dims;  →  CUDASIM_SHARED(T, name, dims);  (cu2cpp.pl)
#define CUDASIM_SHARED(T, name, dims)                                                                 \
    static cudasim::SharedKey name##_cudasim_key_;                                                    \
    typedef T name##_cudasim_t_ dims;                                                                 \
    name##_cudasim_t_ &name = *static_cast<name##_cudasim_t_ *>(                                       \
        cudasim::shared_static(&name##_cudasim_key_, sizeof(name##_cudasim_t_), alignof(name##_cudasim_t_)))

// ---- launches: k<<<g, b, smem, stream>>>(args) → cudasim::launch(k, "k", cudasim::cfg(g, b, smem, stream), args) ----
namespace cudasim {
struct Cfg {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
};
inline Cfg cfg(dim3 g, dim3 b, size_t smem = 0, cudaStream_t s = 0) { return Cfg{g, b, smem, s}; }
// Runs body(ctx) once per thread of every block of c.grid; launch errors are
// recorded for cudaGetLastError, as the runtime does.
void run_grid(const void *kernel, const char *name, const Cfg &c, void (*body)(void *), void *ctx);
// 1: run the launch now; 0: record it (a capture is open on its stream; the configuration was
// checked); -1: refused (the error is set for cudaGetLastError).
int launch_gate(const void *kernel, const char *name, const Cfg &c);
template <class... P, class... A> void launch(void (*k)(P...), const char *name, const Cfg &c, A &&...a) {
    // Arguments are converted to the parameter types once, as the launch does,
    // and every thread gets its own by-value copy when it calls the kernel.
    typedef std::tuple<std::decay_t<P>...> Args;
    struct Ctx {
        void (*k)(P...);
        Args *args;
    };
    void (*body)(void *) = [](void *p) {
        Ctx *x = (Ctx *)p;
        std::apply(x->k, *x->args);
    };
    int gate = launch_gate((const void *)k, name, c);
    if (gate < 0) return;
    if (gate == 1) {
        Args args(std::forward<A>(a)...);
        Ctx ctx{k, &args};
        run_grid((const void *)k, name, c, body, &ctx);
        return;
    }
    // Recorded: the arguments are kept by value, as a graph's kernel node keeps them.
    auto args = std::make_shared<Args>(std::forward<A>(a)...);
    Cfg cc = c;
    capture_record([k, name, cc, body, args] {
        Ctx ctx{k, args.get()};
        run_grid((const void *)k, name, cc, body, &ctx);
    });
}
}   // namespace cudasim

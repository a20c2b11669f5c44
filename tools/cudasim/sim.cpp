// sim.cpp: the cudasim runtime (tools/cudasim/README.md): the grid scheduler
// (one fiber per CUDA thread, blocks one after another), block and warp
// barriers, warp exchanges, shared memory, device memory and the runtime API.
//
// Scheduling: a block's fibers run in thread order, each until it blocks at a
// barrier or exits; the last thread to arrive releases a barrier. Running every
// thread as far as it can before the next starts is the harshest legal
// interleaving for a missing barrier: the first warps read shared memory the
// later ones have not written yet (NaN-poisoned), so the result is wrong.
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>
#include <functional>
#include <map>
#include <vector>
#include "cuda_runtime.h"

namespace cudasim {   // streams.cpp
bool stream_is_lazy(cudaStream_t s);
void stream_enqueue(cudaStream_t s, std::function<void()> op);
void streams_finish(void);
}   // namespace cudasim

thread_local uint3 threadIdx, blockIdx;
thread_local dim3 blockDim, gridDim;

// Switching fibers: on x86-64 a six-register switch (no system call; swapcontext
// saves the signal mask with one, which made it the simulator's main cost);
// elsewhere ucontext.
#if defined(__x86_64__)
extern "C" void cudasim_switch(void **save_sp, void *to_sp);
asm(R"(
    .text
    .globl cudasim_switch
    .type cudasim_switch, @function
cudasim_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cudasim_switch, .-cudasim_switch
)");
struct Context {
    void *sp;
};
static void ctx_switch(Context *from, Context *to) { cudasim_switch(&from->sp, to->sp); }
static void ctx_make(Context *c, char *stack, size_t bytes, void (*entry)(void)) {
    uintptr_t top = ((uintptr_t)(stack + bytes)) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = nullptr;                 // entry's return address: it never returns
    *--sp = (void *)entry;           // where the first switch's ret lands
    for (int i = 0; i < 6; i++) *--sp = nullptr;   // rbp rbx r12..r15
    c->sp = sp;
}
#else
struct Context {
    ucontext_t uc;
};
static void ctx_switch(Context *from, Context *to) { swapcontext(&from->uc, &to->uc); }
static void ctx_make(Context *c, char *stack, size_t bytes, void (*entry)(void)) {
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = bytes;
    c->uc.uc_link = nullptr;
    makecontext(&c->uc, entry, 0);
}
#endif

namespace cudasim {
namespace {

enum State { READY, WAIT_BLOCK, WAIT_WARP, DONE };
const size_t STACK_BYTES = 256 * 1024;   // WMMA fragments are whole tiles: kernels keep ~20 KB per thread
const size_t STATIC_SMEM_MAX = 48 * 1024;    // the hardware's static __shared__ limit
const size_t DYN_SMEM_DEFAULT = 48 * 1024;   // above this a kernel must opt in (cudaFuncSetAttribute)
const size_t SMEM_OPTIN_MAX = 227 * 1024;    // sm_90's per-block maximum (static + dynamic)

struct Fiber {
    Context ctx;
    char *stack = nullptr;
    State state = DONE;
    uint3 tid;
};

struct Warp {
    int arrived = 0;
    unsigned gen = 0, mask = 0, exited = 0;   // exited: lanes that have returned
    const char *what = nullptr;
    uint64_t slot[2][32];
    // mma.sync / ldmatrix operands, by value: a lane released first may overwrite
    // its registers before the others have read them. Double-buffered like slot.
    unsigned char coll[2][32][48];
};

struct Grid {
    const char *name;
    void (*body)(void *);
    void *ctx;
    dim3 grid, block;
    size_t smem;
    uint3 bidx;
    int nthreads, live, arrived;
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    int cur = -1;
    Context sched;
    // shared memory of the running block
    std::vector<std::pair<const SharedKey *, size_t>> static_slots;
    size_t static_used;
    unsigned char *static_arena, *dyn_arena;
};

thread_local Grid *g_grid;
cudaError_t g_last_error = cudaSuccess;
std::map<const void *, int> g_max_dyn_smem;   // kernel → cudaFuncAttributeMaxDynamicSharedMemorySize

void set_error(cudaError_t e) {
    if (g_last_error == cudaSuccess) g_last_error = e;
}

void where(char *buf, size_t n) {
    Grid *g = g_grid;
    if (!g || g->cur < 0) {
        snprintf(buf, n, "host code");
        return;
    }
    uint3 t = g->fibers[g->cur].tid;
    snprintf(buf, n, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u)", g->name, g->bidx.x, g->bidx.y, g->bidx.z, t.x,
             t.y, t.z);
}

void fiber_entry(void) {
    Grid *g = g_grid;
    g->body(g->ctx);
    Fiber &f = g->fibers[g->cur];
    f.state = DONE;
    g->warps[g->cur / 32].exited |= 1u << (g->cur % 32);
    g->live--;
    // An exited thread no longer counts at block barriers (sm_70+ behaviour):
    // release the others if they were only waiting for it.
    if (g->arrived > 0 && g->arrived == g->live) {
        g->arrived = 0;
        for (Fiber &o : g->fibers)
            if (o.state == WAIT_BLOCK) o.state = READY;
    }
    ctx_switch(&f.ctx, &g->sched);
}

void yield_to_scheduler(void) {
    Grid *g = g_grid;
    ctx_switch(&g->fibers[g->cur].ctx, &g->sched);
}

char *new_stack(void) {
    // A guard page below the stack: an overflow faults instead of corrupting.
    long page = sysconf(_SC_PAGESIZE);
    char *m = (char *)mmap(nullptr, STACK_BYTES + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) fail("cannot map a %zu-byte fiber stack", STACK_BYTES);
    mprotect(m, page, PROT_NONE);
    return m + page;
}

void set_builtins(Grid *g, int i) {
    threadIdx = g->fibers[i].tid;
    blockIdx = g->bidx;
    blockDim = g->block;
    gridDim = g->grid;
}

void run_block(Grid *g) {
    g->live = g->nthreads;
    g->arrived = 0;
    g->static_slots.clear();
    g->static_used = 0;
    if (g->smem) memset(g->dyn_arena, 0xff, g->smem);   // NaN floats, -1 ints, wild pointers
    for (Warp &w : g->warps) w.arrived = 0, w.exited = 0, w.what = nullptr;
    for (int i = 0; i < g->nthreads; i++) {
        Fiber &f = g->fibers[i];
        if (!f.stack) f.stack = new_stack();
        f.tid = uint3{(unsigned)i % g->block.x, (unsigned)i / g->block.x % g->block.y,
                      (unsigned)i / (g->block.x * g->block.y)};
        f.state = READY;
        ctx_make(&f.ctx, f.stack, STACK_BYTES, fiber_entry);
    }
    while (g->live > 0) {
        bool progress = false;
        for (int i = 0; i < g->nthreads; i++) {
            if (g->fibers[i].state != READY) continue;
            g->cur = i;
            set_builtins(g, i);
            ctx_switch(&g->sched, &g->fibers[i].ctx);
            progress = true;
        }
        if (!progress) {
            g->cur = -1;
            int nb = 0, nw = 0;
            for (Fiber &f : g->fibers) nb += f.state == WAIT_BLOCK, nw += f.state == WAIT_WARP;
            fail("deadlock in kernel %s, block (%u,%u,%u): %d threads wait at __syncthreads, %d at a warp barrier, "
                 "%d have exited (divergent barrier?)",
                 g->name, g->bidx.x, g->bidx.y, g->bidx.z, nb, nw, g->nthreads - g->live);
        }
    }
    g->cur = -1;
}

bool launch_ok(const Grid &g, const void *kernel) {
    const char *why = nullptr;
    size_t threads = (size_t)g.block.x * g.block.y * g.block.z;
    auto it = g_max_dyn_smem.find(kernel);
    size_t dyn_max = it == g_max_dyn_smem.end() ? DYN_SMEM_DEFAULT : (size_t)it->second;
    if (!threads || threads > 1024 || g.block.z > 64) why = "block size (1..1024 threads, z <= 64)";
    else if (!g.grid.x || !g.grid.y || !g.grid.z || g.grid.y > 65535 || g.grid.z > 65535 || g.grid.x > 2147483647u)
        why = "grid size (x < 2^31, y and z <= 65535, none 0)";
    else if (g.smem > dyn_max)
        why = "dynamic shared memory above 48 KB without cudaFuncSetAttribute(MaxDynamicSharedMemorySize), or above "
              "the value set";
    if (!why) return true;
    fprintf(stderr, "cudasim: launch of %s <<<(%u,%u,%u), (%u,%u,%u), %zu>>> rejected: %s\n", g.name, g.grid.x,
            g.grid.y, g.grid.z, g.block.x, g.block.y, g.block.z, g.smem, why);
    set_error(cudaErrorInvalidConfiguration);
    return false;
}

// Device allocations: start → size, for the memcpy/memset/GEMM range checks.
std::map<uintptr_t, size_t> g_dev;
size_t g_dev_bytes;
const size_t DEV_TOTAL = (size_t)16 << 30;   // what cudaMemGetInfo reports as the device's size

void on_segv(int sig) {
    char w[256];
    where(w, sizeof w);
    char msg[400];
    int n = snprintf(msg, sizeof msg, "cudasim: %s in %s (out-of-bounds access, or a NaN-poisoned pointer read from "
                     "shared memory before it was written)\n", sig == SIGSEGV ? "segmentation fault" : "bus error", w);
    if (write(2, msg, (size_t)n) < 0) {}
    _exit(1);
}

void install_segv_handler(void) {
    static bool done;
    if (done) return;
    done = true;
    static char alt[64 * 1024];
    stack_t ss = {};
    ss.ss_sp = alt;
    ss.ss_size = sizeof alt;
    sigaltstack(&ss, nullptr);
    struct sigaction sa = {};
    sa.sa_handler = on_segv;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGSEGV, &sa, nullptr);
    sigaction(SIGBUS, &sa, nullptr);
}

}   // namespace

void fail(const char *fmt, ...) {
    char w[256];
    where(w, sizeof w);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cudasim: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " [%s]\n", w);
    exit(1);
}

int lane_id(void) {
    Grid *g = g_grid;
    return g && g->cur >= 0 ? g->cur % 32 : 0;
}

void run_grid(const void *kernel, const char *name, const Cfg &c, void (*body)(void *), void *ctx) {
    static thread_local Grid grid;   // fiber stacks are kept from launch to launch
    Grid *g = &grid;
    if (g_grid) fail("kernel %s launched from inside kernel %s (dynamic parallelism is not simulated)", name,
                     g_grid->name);
    if (stream_is_lazy(c.stream)) fail("kernel %s launched on a lazy stream (only copies are modelled there)", name);
    install_segv_handler();
    g->name = name, g->body = body, g->ctx = ctx, g->grid = c.grid, g->block = c.block, g->smem = c.smem;
    if (!launch_ok(*g, kernel)) return;
    g->nthreads = (int)(c.block.x * c.block.y * c.block.z);
    if ((int)g->fibers.size() < g->nthreads) g->fibers.resize(g->nthreads);
    g->warps.assign((g->nthreads + 31) / 32, Warp());
    static thread_local std::vector<unsigned char> arena, dyn;
    arena.resize(STATIC_SMEM_MAX + 128);
    dyn.resize(c.smem + 128);
    g->static_arena = (unsigned char *)(((uintptr_t)arena.data() + 127) & ~(uintptr_t)127);
    g->dyn_arena = (unsigned char *)(((uintptr_t)dyn.data() + 127) & ~(uintptr_t)127);
    g_grid = g;
    for (unsigned z = 0; z < c.grid.z; z++)
        for (unsigned y = 0; y < c.grid.y; y++)
            for (unsigned x = 0; x < c.grid.x; x++) {
                g->bidx = uint3{x, y, z};
                run_block(g);
            }
    g_grid = nullptr;
}

void syncthreads(void) {
    Grid *g = g_grid;
    if (!g) fail("__syncthreads outside a kernel");
    Fiber &f = g->fibers[g->cur];
    if (++g->arrived == g->live) {
        g->arrived = 0;
        for (Fiber &o : g->fibers)
            if (o.state == WAIT_BLOCK) o.state = READY;
        return;
    }
    f.state = WAIT_BLOCK;
    yield_to_scheduler();
}

// The lanes of mask that exist in this warp; every one of them must arrive.
static Warp &warp_arrive(unsigned mask, const char *what, int *lane) {
    Grid *g = g_grid;
    if (!g) fail("%s outside a kernel", what);
    int w = g->cur / 32;
    *lane = g->cur % 32;
    int lanes = g->nthreads - w * 32 < 32 ? g->nthreads - w * 32 : 32;
    unsigned exist = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
    if (mask & ~exist) fail("%s: mask 0x%08x names lanes this warp does not have (it has %d)", what, mask, lanes);
    if (!(mask >> *lane & 1)) fail("%s: the calling lane %d is not in mask 0x%08x", what, *lane, mask);
    Warp &wp = g->warps[w];
    if (mask & wp.exited)
        fail("%s: lane %d of mask 0x%08x has exited (undefined behaviour)", what, __builtin_ctz(mask & wp.exited), mask);
    if (wp.arrived && (wp.mask != mask || strcmp(wp.what, what)))
        fail("warp divergence: lane %d is at %s (mask 0x%08x) while other lanes are at %s (mask 0x%08x)", *lane, what,
             mask, wp.what, wp.mask);
    wp.mask = mask, wp.what = what;
    return wp;
}

// Wait until every lane of the warp's mask has arrived; the last one releases them.
static void warp_wait(Warp &wp) {
    Grid *g = g_grid;
    int w = g->cur / 32;
    if (++wp.arrived == __builtin_popcount(wp.mask)) {
        wp.arrived = 0;
        wp.gen++;
        for (int l = 0; l < 32; l++)
            if ((wp.mask >> l & 1) && l != g->cur % 32) g->fibers[w * 32 + l].state = READY;
        return;
    }
    g->fibers[g->cur].state = WAIT_WARP;
    yield_to_scheduler();
}

void syncwarp(unsigned mask, const char *what) {
    int lane;
    Warp &wp = warp_arrive(mask, what, &lane);
    warp_wait(wp);
}

uint64_t warp_exchange(unsigned mask, uint64_t mine, int mode, int arg, int width, const char *what) {
    int lane;
    if (width < 1 || width > 32 || (width & (width - 1))) fail("%s: width %d is not a power of two <= 32", what, width);
    Warp &wp = warp_arrive(mask, what, &lane);
    unsigned s = wp.gen & 1;   // double-buffered: the next exchange cannot start before all have read this one
    wp.slot[s][lane] = mine;
    warp_wait(wp);
    int base = lane & ~(width - 1), src;
    switch (mode) {
    case XCHG_XOR: src = lane ^ arg; if (src >= base + width) src = lane; break;
    case XCHG_IDX: src = base + (arg & (width - 1)); break;
    case XCHG_DOWN: src = lane + arg < base + width ? lane + arg : lane; break;
    default: src = lane - arg >= base ? lane - arg : lane; break;
    }
    if (!(wp.mask >> src & 1)) fail("%s: lane %d reads lane %d, which is not in mask 0x%08x", what, lane, src, wp.mask);
    return wp.slot[s][src];
}

unsigned warp_vote(unsigned mask, int pred, const char *what) {
    int lane;
    Warp &wp = warp_arrive(mask, what, &lane);
    unsigned s = wp.gen & 1;
    wp.slot[s][lane] = pred != 0;
    warp_wait(wp);
    unsigned r = 0;
    for (int l = 0; l < 32; l++)
        if (wp.mask >> l & 1) r |= (unsigned)wp.slot[s][l] << l;
    return r;
}

// Every lane of mask deposits `bytes` of its operands; once all have, each gets
// the 32 deposits (stride WARP_COLL_STRIDE) to compute its own registers from.
const unsigned char *warp_collective(unsigned mask, const void *mine, size_t bytes, const char *what, int *lane) {
    if (bytes > sizeof(((Warp *)nullptr)->coll[0][0])) fail("%s: %zu operand bytes per lane (at most 48)", what, bytes);
    Warp &wp = warp_arrive(mask, what, lane);
    unsigned s = wp.gen & 1;
    memcpy(wp.coll[s][*lane], mine, bytes);
    warp_wait(wp);
    return &wp.coll[s][0][0];
}

bool shared_range(const void *p, size_t n) {
    Grid *g = g_grid;
    if (!g) return false;
    const unsigned char *c = (const unsigned char *)p;
    return (c >= g->static_arena && c + n <= g->static_arena + STATIC_SMEM_MAX) ||
           (c >= g->dyn_arena && c + n <= g->dyn_arena + g->smem);
}

void *shared_static(const SharedKey *key, size_t bytes, size_t align) {
    Grid *g = g_grid;
    if (!g) fail("__shared__ variable used outside a kernel");
    for (auto &s : g->static_slots)
        if (s.first == key) return g->static_arena + s.second;
    size_t off = (g->static_used + align - 1) / align * align;
    if (off + bytes > STATIC_SMEM_MAX) fail("static __shared__ memory above 48 KB");
    g->static_used = off + bytes;
    g->static_slots.push_back({key, off});
    memset(g->static_arena + off, 0xff, bytes);
    return g->static_arena + off;
}

void *shared_dynamic(void) {
    Grid *g = g_grid;
    if (!g) fail("extern __shared__ used outside a kernel");
    return g->dyn_arena;
}

cudaError_t func_set_attribute(const void *kernel, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || (size_t)value > SMEM_OPTIN_MAX)
        return cudaErrorInvalidValue;
    g_max_dyn_smem[kernel] = value;
    return cudaSuccess;
}

// The allocation holding [p, p + n), or false.
int launch_gate(const void *kernel, const char *name, const Cfg &c) {
    bool record;
    cudaError_t e = capture_gate(c.stream, name, &record);
    if (e != cudaSuccess) {
        set_error(e);
        return -1;
    }
    if (!record) return 1;
    Grid g;   // a bad configuration fails at the launch, not at a replay
    g.name = name, g.grid = c.grid, g.block = c.block, g.smem = c.smem;
    return launch_ok(g, kernel) ? 0 : -1;
}

bool device_range(const void *p, size_t n) {
    uintptr_t a = (uintptr_t)p;
    auto it = g_dev.upper_bound(a);
    if (it == g_dev.begin()) return false;
    --it;
    return a >= it->first && a + n <= it->first + it->second;
}

}   // namespace cudasim

using namespace cudasim;

cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaGetDevice(int *dev) { *dev = 0; return cudaSuccess; }
cudaError_t cudaSetDevice(int dev) { return dev == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev) {
    if (dev != 0) return cudaErrorInvalidValue;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "cudasim (CUDA simulated on the CPU)");
    p->totalGlobalMem = DEV_TOTAL;
    p->sharedMemPerBlock = DYN_SMEM_DEFAULT;
    p->sharedMemPerBlockOptin = SMEM_OPTIN_MAX;
    p->major = 9, p->minor = 0, p->multiProcessorCount = 1, p->maxThreadsPerBlock = 1024, p->warpSize = 32;
    return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *v) { *v = 0; return cudaSuccess; }   // "none": no real runtime
cudaError_t cudaDriverGetVersion(int *v) { *v = 0; return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    *total_b = DEV_TOTAL;
    *free_b = DEV_TOTAL - g_dev_bytes;
    return cudaSuccess;
}
cudaError_t cudaGetLastError(void) { cudaError_t e = g_last_error; g_last_error = cudaSuccess; return e; }
cudaError_t cudaPeekAtLastError(void) { return g_last_error; }
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureUnmatched: return "capture was not initiated in this stream";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    default: return "unspecified launch failure";
    }
}
// Every call on the compute stream runs to completion before it returns; streams made with
// flags are lazy (streams.cpp).

// Device memory: its own mapping, 256-byte aligned (as cudaMalloc), ending
// (up to that alignment) at a guard page, so a kernel running off the end
// faults; filled with 0xff (NaN) — cudaMalloc gives no zeroed memory.
cudaError_t cudaMalloc(void **p, size_t bytes) {
    if (cudaError_t e = capture_unsafe("cudaMalloc")) return e;
    long page = sysconf(_SC_PAGESIZE);
    size_t body = (bytes + 255) / 256 * 256, map = (body + page - 1) / page * page + page;
    char *m = (char *)mmap(nullptr, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return cudaErrorMemoryAllocation;
    mprotect(m + map - page, page, PROT_NONE);
    char *d = m + map - page - body;
    memset(d, 0xff, body);
    g_dev[(uintptr_t)d] = bytes;
    g_dev_bytes += bytes;
    *p = d;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    if (cudaError_t e = capture_unsafe("cudaFree")) return e;
    if (!p) return cudaSuccess;
    cudasim::streams_finish();
    auto it = g_dev.find((uintptr_t)p);
    if (it == g_dev.end()) {
        fprintf(stderr, "cudasim: cudaFree(%p): not a device allocation\n", p);
        return cudaErrorInvalidDevicePointer;
    }
    long page = sysconf(_SC_PAGESIZE);
    size_t body = (it->second + 255) / 256 * 256, map = (body + page - 1) / page * page + page;
    g_dev_bytes -= it->second;
    munmap((char *)p + body + page - map, map);
    g_dev.erase(it);
    return cudaSuccess;
}
// Page-locked host memory: start → size, so that a capture can tell it from pageable memory.
static std::map<uintptr_t, size_t> g_pinned;
cudaError_t cudaMallocHost(void **p, size_t bytes) {
    if (cudaError_t e = capture_unsafe("cudaMallocHost")) return e;
    *p = malloc(bytes ? bytes : 1);
    if (!*p) return cudaErrorMemoryAllocation;
    g_pinned[(uintptr_t)*p] = bytes;
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p) {
    if (cudaError_t e = capture_unsafe("cudaFreeHost")) return e;
    cudasim::streams_finish();
    g_pinned.erase((uintptr_t)p);
    free(p);
    return cudaSuccess;
}
bool cudasim::host_pinned(const void *p, size_t n) {
    uintptr_t a = (uintptr_t)p;
    auto it = g_pinned.upper_bound(a);
    if (it == g_pinned.begin()) return false;
    --it;
    return a + n <= it->first + it->second;
}

// The direction must match where the pointers live, and device ranges must lie
// inside one allocation: what a GPU reports (or silently corrupts) is an error here.
static cudaError_t check_copy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    bool dd = device_range(dst, n), sd = device_range(src, n);
    bool want_dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    bool want_sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind == cudaMemcpyDefault || kind == cudaMemcpyHostToHost || (dd == want_dd && sd == want_sd)) return cudaSuccess;
    fprintf(stderr, "cudasim: cudaMemcpy kind %d: destination %p is %s, source %p is %s (%zu bytes)\n", (int)kind, dst,
            dd ? "device memory" : "not a device range", src, sd ? "device memory" : "not a device range", n);
    return cudaErrorInvalidMemcpyDirection;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    if (cudaError_t e = capture_unsafe("cudaMemcpy")) return e;
    cudaError_t e = check_copy(dst, src, n, kind);
    if (e == cudaSuccess && n) memmove(dst, src, n);
    return e;
}
// A copy into a capture: device to device, or from page-locked host memory (read at each replay).
// A copy to the host is refused as well: a GPU records one into page-locked memory, but a step's
// recorded body promises no read-back (backend.h graph_run), so the simulator holds it to that.
static cudaError_t capture_copy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    cudaError_t e = check_copy(dst, src, n, kind);
    if (e != cudaSuccess) return e;
    if (!device_range(dst, n)) return capture_unsafe("cudaMemcpyAsync to host memory");
    if (!device_range(src, n) && !host_pinned(src, n)) return capture_unsafe("cudaMemcpyAsync from pageable host memory");
    if (n) capture_record([dst, src, n] { memmove(dst, src, n); });
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t s) {
    bool record;
    if (cudaError_t e = capture_gate(s, "cudaMemcpyAsync", &record)) return e;
    if (record) return capture_copy(dst, src, n, kind);
    if (!cudasim::stream_is_lazy(s)) {
        cudaError_t e = check_copy(dst, src, n, kind);
        if (e == cudaSuccess && n) memmove(dst, src, n);
        return e;
    }
    cudaError_t e = check_copy(dst, src, n, kind);   // a bad copy fails at the call, as on a GPU
    if (e == cudaSuccess && n) cudasim::stream_enqueue(s, [dst, src, n] { memmove(dst, src, n); });
    return e;
}
cudaError_t cudaMemset(void *p, int v, size_t n) {
    if (cudaError_t e = capture_unsafe("cudaMemset")) return e;
    if (!device_range(p, n)) {
        fprintf(stderr, "cudasim: cudaMemset(%p, %zu bytes): not inside one device allocation\n", p, n);
        return cudaErrorInvalidValue;
    }
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
    bool record;
    if (cudaError_t e = capture_gate(s, "cudaMemsetAsync", &record)) return e;
    if (cudasim::stream_is_lazy(s)) cudasim::fail("cudaMemsetAsync on a lazy stream is not modelled");
    if (!device_range(p, n)) {
        fprintf(stderr, "cudasim: cudaMemsetAsync(%p, %zu bytes): not inside one device allocation\n", p, n);
        return cudaErrorInvalidValue;
    }
    if (record) capture_record([p, v, n] { memset(p, v, n); });
    else memset(p, v, n);
    return cudaSuccess;
}

// gemm_dnnl.c: bf16 and fp32 GEMMs through oneDNN's matmul primitive (contract in cpu.h).
// OpenBLAS has no bf16 GEMM; oneDNN runs one on AVX512_BF16/AMX cores, accumulating in
// fp32. Strided memory descriptors express the transposes and leading dimensions, so no
// operand is copied. Creating a primitive JIT-compiles code (milliseconds), so primitives
// are cached per shape; the engine and stream are made once. Every oneDNN failure returns
// 0 and the caller falls back to its own path: nothing here aborts.
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "backend/cpu/cpu.h"

#ifdef DCAL_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>

enum { CACHE_SLOTS = 256, PROBE_SIZE = 64 };   // a ViT step: ~11 layers × 3 products × 2 row counts

// One GEMM shape: the primitive and its three memory objects (A, B, C), whose data
// handles are set per call. prim NULL: oneDNN has nothing for this key here, remembered
// so that a refused shape costs one lookup per call instead of a failed creation.
typedef struct {
    int used, dt, ta, tb, M, N, K, lda, ldb, ldc, acc;
    dnnl_primitive_t prim;
    dnnl_memory_t mem[4];   // A, B, C and the scratchpad (NULL when the primitive needs none)
    size_t scratch;         // the scratchpad's bytes
} Entry;

// One lock over the engine, the cache and execution: the memory objects of an entry are
// rebound on each call, so two concurrent calls of one shape must not interleave.
static struct {
    pthread_mutex_t lock;
    int init;   // 0: not tried, 1: engine and stream made, -1: failed
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    Entry slot[CACHE_SLOTS];
    int next;   // round-robin eviction
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int init_locked(void) {
    if (g.init == 0) {
        g.init = -1;
        if (dnnl_engine_create(&g.engine, dnnl_cpu, 0) != dnnl_success) return 0;
        if (dnnl_stream_create(&g.stream, g.engine, dnnl_stream_in_order) != dnnl_success) {
            dnnl_engine_destroy(g.engine);
            return 0;
        }
        g.init = 1;
    }
    return g.init == 1;
}

// A logical [rows, cols] matrix stored row-major with row stride ld, or (trans) stored
// [cols, rows] with row stride ld: the transpose is only a swap of the two strides.
static int matrix_md(dnnl_memory_desc_t *md, int rows, int cols, int trans, int ld, dnnl_data_type_t dt) {
    dnnl_dims_t dims = {rows, cols};
    dnnl_dims_t strides = {trans ? 1 : ld, trans ? ld : 1};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides) == dnnl_success;
}

// The matmul's primitive descriptor for e's key; its three memory descriptors in md.
static dnnl_status_t matmul_pd(dnnl_primitive_desc_t *pd, dnnl_memory_desc_t md[3], const Entry *e) {
    dnnl_data_type_t dt = (dnnl_data_type_t)e->dt;
    if (!matrix_md(&md[0], e->M, e->K, e->ta, e->lda, dt) || !matrix_md(&md[1], e->K, e->N, e->tb, e->ldb, dt) ||
        !matrix_md(&md[2], e->M, e->N, 0, e->ldc, dnnl_f32))
        return dnnl_invalid_arguments;
    dnnl_matmul_desc_t desc;
    dnnl_status_t st = dnnl_matmul_desc_init(&desc, &md[0], &md[1], NULL, &md[2]);
    if (st != dnnl_success) return st;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    if ((st = dnnl_primitive_attr_create(&attr)) != dnnl_success) return st;
    // The scratchpad (packed operands) is ours, one grow-only buffer: oneDNN's own is a malloc
    // and free on every execution, whose page faults and unmapping took longer than the product.
    st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success && e->acc) {   // C += A·B: the "sum" post-op adds the old C (scale 1) to the product
        if ((st = dnnl_post_ops_create(&ops)) == dnnl_success && (st = dnnl_post_ops_append_sum(ops, 1.0f)) == dnnl_success)
            st = dnnl_primitive_attr_set_post_ops(attr, ops);
    }
    if (st == dnnl_success) st = dnnl_primitive_desc_create(pd, &desc, attr, g.engine, NULL);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

// oneDNN's reference kernels ("ref:any") are scalar loops, slower than the caller's own path.
static int is_reference(const_dnnl_primitive_desc_t pd) {
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl) return 1;
    return strncmp(impl, "ref", 3) == 0;
}

static void entry_free(Entry *e) {
    for (int i = 0; i < 4; i++)
        if (e->mem[i]) dnnl_memory_destroy(e->mem[i]);
    if (e->prim) dnnl_primitive_destroy(e->prim);
    memset(e, 0, sizeof *e);
}

// Fill e (its key already set) with a primitive and memory objects; on any failure e keeps
// prim NULL, which marks the key unavailable.
static void entry_build(Entry *e) {
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t md[3];
    if (matmul_pd(&pd, md, e) != dnnl_success) return;
    int ok = !is_reference(pd) && dnnl_primitive_create(&e->prim, pd) == dnnl_success;
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    e->scratch = smd ? dnnl_memory_desc_get_size(smd) : 0;
    for (int i = 0; ok && i < 3; i++)   // DNNL_MEMORY_NONE: no buffer, bound per call
        ok = dnnl_memory_create(&e->mem[i], &md[i], g.engine, DNNL_MEMORY_NONE) == dnnl_success;
    if (ok && e->scratch) ok = dnnl_memory_create(&e->mem[3], smd, g.engine, DNNL_MEMORY_NONE) == dnnl_success;
    dnnl_primitive_desc_destroy(pd);   // smd points into pd: used above, before this
    if (!ok) {
        Entry key = *e;
        key.prim = NULL;
        memset(key.mem, 0, sizeof key.mem);
        entry_free(e);
        *e = key;
    }
}

// The cached entry for key k, built on a miss in the next round-robin slot.
static Entry *lookup_locked(const Entry *k) {
    for (int i = 0; i < CACHE_SLOTS; i++) {
        Entry *e = &g.slot[i];
        if (e->used && e->dt == k->dt && e->ta == k->ta && e->tb == k->tb && e->M == k->M && e->N == k->N &&
            e->K == k->K && e->lda == k->lda && e->ldb == k->ldb && e->ldc == k->ldc && e->acc == k->acc)
            return e;
    }
    Entry *e = &g.slot[g.next];
    g.next = (g.next + 1) % CACHE_SLOTS;
    entry_free(e);
    *e = *k;
    e->used = 1;
    entry_build(e);
    return e;
}

// Shapes and strides oneDNN could not reject in a way we want: a negative size or a
// leading dimension shorter than its row would read out of bounds.
static int args_valid(int ta, int tb, int M, int N, int K, int lda, int ldb, int ldc) {
    if (M <= 0 || N <= 0 || K <= 0) return 0;
    return lda >= (ta ? M : K) && ldb >= (tb ? K : N) && ldc >= N;
}

static int gemm(dnnl_data_type_t dt, int ta, int tb, int M, int N, int K, const void *A, int lda, const void *B,
                int ldb, int accumulate, float *C, int ldc) {
    if (!args_valid(ta, tb, M, N, K, lda, ldb, ldc) || !A || !B || !C) return 0;
    Entry k = {.dt = (int)dt, .ta = !!ta, .tb = !!tb, .M = M, .N = N, .K = K,
               .lda = lda, .ldb = ldb, .ldc = ldc, .acc = !!accumulate};
    int ran = 0;
    pthread_mutex_lock(&g.lock);
    if (init_locked()) {
        Entry *e = lookup_locked(&k);
        // oneDNN takes non-const handles; A and B are only read (they are SRC and WEIGHTS).
        // The scratchpad: the backend's grow-only slot (counted in its scratch peak); calls are
        // serialised by the lock, so one buffer serves every primitive.
        void *pad = e->scratch ? cpu_scratch(CPU_SCRATCH_DNNL, e->scratch) : NULL;
        if (e->prim && dnnl_memory_set_data_handle(e->mem[0], (void *)A) == dnnl_success &&
            dnnl_memory_set_data_handle(e->mem[1], (void *)B) == dnnl_success &&
            dnnl_memory_set_data_handle(e->mem[2], C) == dnnl_success &&
            (!pad || dnnl_memory_set_data_handle(e->mem[3], pad) == dnnl_success)) {
            dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->mem[0]}, {DNNL_ARG_WEIGHTS, e->mem[1]},
                                       {DNNL_ARG_DST, e->mem[2]}, {DNNL_ARG_SCRATCHPAD, e->mem[3]}};
            ran = dnnl_primitive_execute(e->prim, g.stream, pad ? 4 : 3, args) == dnnl_success &&
                  dnnl_stream_wait(g.stream) == dnnl_success;
        }
    }
    pthread_mutex_unlock(&g.lock);
    return ran;
}

int cpu_dnnl_gemm_bf16(int ta, int tb, int M, int N, int K, const uint16_t *A, int lda, const uint16_t *B, int ldb,
                       int accumulate, float *C, int ldc) {
    if (!cpu_dnnl_bf16_ready()) return 0;   // no per-shape attempts where the probe failed
    return gemm(dnnl_bf16, ta, tb, M, N, K, A, lda, B, ldb, accumulate, C, ldc);
}

int cpu_dnnl_gemm_f32(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                      int accumulate, float *C, int ldc) {
    return gemm(dnnl_f32, ta, tb, M, N, K, A, lda, B, ldb, accumulate, C, ldc);
}

// Once per type: can oneDNN make a matmul of it (not its reference code) on this CPU, and which?
typedef struct {
    pthread_once_t once;
    int ok;
    char line[192];
} Probe;
static Probe probe_bf16 = {PTHREAD_ONCE_INIT, 0, ""}, probe_f32 = {PTHREAD_ONCE_INIT, 0, ""};

static void probe(Probe *p, dnnl_data_type_t dt, const char *type) {
    const dnnl_version_t *v = dnnl_version();
    char ver[48];
    snprintf(ver, sizeof ver, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
    pthread_mutex_lock(&g.lock);
    int engine = init_locked();
    pthread_mutex_unlock(&g.lock);
    if (!engine) {
        snprintf(p->line, sizeof p->line, "%s: no CPU engine", ver);
        return;
    }
    Entry k = {.dt = dt, .M = PROBE_SIZE, .N = PROBE_SIZE, .K = PROBE_SIZE,
               .lda = PROBE_SIZE, .ldb = PROBE_SIZE, .ldc = PROBE_SIZE};
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t md[3];
    dnnl_primitive_t prim = NULL;
    const char *impl = NULL;
    if (matmul_pd(&pd, md, &k) != dnnl_success) {
        snprintf(p->line, sizeof p->line, "%s: no %s matmul on this CPU", ver, type);
        return;
    }
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl) impl = "?";
    if (is_reference(pd))
        snprintf(p->line, sizeof p->line, "%s: %s matmul only as reference code (%s)", ver, type, impl);
    else if (dnnl_primitive_create(&prim, pd) != dnnl_success)
        snprintf(p->line, sizeof p->line, "%s: %s matmul %s failed to build", ver, type, impl);
    else {
        snprintf(p->line, sizeof p->line, "%s, %s matmul %s", ver, type, impl);
        p->ok = 1;
        dnnl_primitive_destroy(prim);
    }
    dnnl_primitive_desc_destroy(pd);   // impl points into pd: used above, before this
}
static void probe_bf16_once(void) { probe(&probe_bf16, dnnl_bf16, "bf16"); }
static void probe_f32_once(void) { probe(&probe_f32, dnnl_f32, "fp32"); }

// The type's probe, run on first use.
static const Probe *probed(int f32) {
    if (f32) pthread_once(&probe_f32.once, probe_f32_once);
    else pthread_once(&probe_bf16.once, probe_bf16_once);
    return f32 ? &probe_f32 : &probe_bf16;
}

int cpu_dnnl_bf16_ready(void) { return probed(0)->ok; }
const char *cpu_dnnl_describe(void) { return probed(0)->line; }
int cpu_dnnl_f32_ready(void) { return probed(1)->ok; }
const char *cpu_dnnl_describe_f32(void) { return probed(1)->line; }

#else   // built without oneDNN (CMakeLists.txt found no libdnnl): every caller falls back

int cpu_dnnl_gemm_bf16(int ta, int tb, int M, int N, int K, const uint16_t *A, int lda, const uint16_t *B, int ldb,
                       int accumulate, float *C, int ldc) {
    (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb, (void)accumulate;
    (void)C, (void)ldc;
    return 0;
}

int cpu_dnnl_gemm_f32(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                      int accumulate, float *C, int ldc) {
    (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb, (void)accumulate;
    (void)C, (void)ldc;
    return 0;
}

int cpu_dnnl_bf16_ready(void) { return 0; }
int cpu_dnnl_f32_ready(void) { return 0; }

const char *cpu_dnnl_describe(void) { return "built without oneDNN"; }
const char *cpu_dnnl_describe_f32(void) { return "built without oneDNN"; }

#endif

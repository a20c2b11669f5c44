// attention_cudnn.cu: the attention contract of backend.h (SA, GLCA, PWCA) on cuDNN's fused
// SDPA, built through cuDNN's C graph API (cudnn_graph.h; the C++ frontend is not used), for
// train.attention=cudnn: a second, independent implementation to hold dcal's kernels against
// on the device. Not the default: dcal's kernels are.
//
// Per call: the strided views are packed into contiguous bf16 [B, H, T, hd] copies (GLCA:
// the selected query rows gathered; PWCA: keys and values of the image and of its distractor
// concatenated, 2N rows; q/k/v are Act tensors, already bf16 at precision bf16, the only one
// config.c lets train.attention=cudnn run at, so their pack is a plain strided copy; out and
// dout are fp32 and rounded), one cached execution plan runs, and the bf16 results go back into
// dcal's fp32 tensors (out written, gradients accumulated, as backend.h says). lse is cuDNN's
// Stats, copied through an aligned scratch row (lse may sit at any float offset): Stats =
// max + log Σ exp(scale·q·k − max) per query row, the natural log-sum-exp of the scaled scores,
// which is dcal's lse [B, H, Nq] exactly.
//
// The graphs are the op sequences cuDNN's flash engines recognise (the ones cudnn-frontend's
// CompositeSDPANode / CompositeSDPABackwardNode lower to): forward Q·Kᵀ → ×scale → max, −max,
// exp, Σ, log → Stats, ÷Σ → P (bf16) · V; backward recomputes P = exp(scale·Q·Kᵀ − Stats),
// dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P·(dP − rowsum(dO∘O))·scale, dK = dSᵀ·Q, dQ = dS·K. dQ is the
// direct output of its matmul (the "dP workspace" form that the frontend builds when a
// deterministic backward is asked for on sm_90), not an fp32 accumulator summed with atomics,
// and engines that cuDNN marks CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC are never chosen: when no
// other engine takes the graph the call fails with one line instead of running one.
//
// Plans are built once per (pass, B, H, Nq, Nk, hd) and kept; buffers and the plan's
// workspace come from cuda_scratch (grow-only), so steady-state steps allocate nothing.
// Every cuDNN call is checked; a failure prints one line and exits like CUDA_CHECK.
// Written without a GPU: compiled and linked here, not yet run (kernels/README.md).
#include "kernels/attention_pack.cuh"
#include <cudnn_graph.h>
#include <string.h>

// ---- status checks --------------------------------------------------------------------------

static void cudnn_last_error(char *buf, size_t n) {
    buf[0] = 0;
    cudnnGetLastErrorString(buf, n);
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';   // one line
}

static void cudnn_die(const char *call, cudnnStatus_t s, const char *file, int line) {
    char last[512];
    cudnn_last_error(last, sizeof last);
    fprintf(stderr, "dcal: attention cudnn: %s:%d: %s: %s%s%s\n", file, line, call, cudnnGetErrorString(s),
            last[0] ? ": " : "", last);
    exit(1);
}

#define CUDNN_CHECK(call)                                                                     \
    do {                                                                                      \
        cudnnStatus_t s_ = (call);                                                            \
        if (s_ != CUDNN_STATUS_SUCCESS) cudnn_die(#call, s_, __FILE__, __LINE__);             \
    } while (0)

// ---- the handle -----------------------------------------------------------------------------

static cudnnHandle_t g_cudnn;
static int g_sm;   // compute capability of the device, e.g. 90

int cudnn_attention_open(char *why, size_t n) {
    if (g_cudnn) return 1;
    if (cuda_device_count() <= 0) return snprintf(why, n, "no CUDA GPU is available"), 0;
    int dev = 0;
    cudaDeviceProp prop;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return snprintf(why, n, "cannot read the GPU's properties"), 0;
    }
    g_sm = prop.major * 10 + prop.minor;
    if (prop.major < 8)
        return snprintf(why, n, "cuDNN's fused attention needs sm_80 or newer, this GPU is sm_%d", g_sm), 0;
    size_t v = cudnnGetVersion();
    if (v < 90000) return snprintf(why, n, "cuDNN %zu is older than 9.0", v), 0;
    cudnnStatus_t s = cudnnCreate(&g_cudnn);
    if (s != CUDNN_STATUS_SUCCESS) {
        char last[256];
        cudnn_last_error(last, sizeof last);
        g_cudnn = NULL;
        return snprintf(why, n, "cudnnCreate: %s%s%s", cudnnGetErrorString(s), last[0] ? ": " : "", last), 0;
    }
    CUDNN_CHECK(cudnnSetStream(g_cudnn, cuda_stream()));   // every op runs on the backend's one stream
    return 1;
}

void cudnn_attention_describe(char *buf, size_t n) {
    size_t v = cudnnGetVersion();
    snprintf(buf, n, "attention cuDNN %zu.%zu.%zu fused SDPA (bf16 operands, fp32 softmax, deterministic engines only)",
             v / 10000, v % 10000 / 100, v % 100);
}

// ---- graph building -------------------------------------------------------------------------

enum { MAXD = 256, MAXOPS = 24 };   // descriptors: ~70 for the backward graph, 3 per engine tried
// Tensor ids in the variant pack; virtual tensors get ids from V_FIRST on.
enum { U_Q = 1, U_K, U_V, U_O, U_STATS, U_SCALE, U_DO, U_DQ, U_DK, U_DV, U_SUM, U_ONE, V_FIRST = 100 };

typedef struct {
    cudnnBackendDescriptor_t d[MAXD];   // everything made for one plan, kept as long as the plan
    int nd;
    cudnnBackendDescriptor_t ops[MAXOPS];
    int nops;
    int64_t next_virtual;
} Graph;

static cudnnBackendDescriptor_t make(Graph *g, cudnnBackendDescriptorType_t type) {
    if (g->nd == MAXD) {
        fprintf(stderr, "dcal: attention cudnn: internal: more than %d descriptors in one graph\n", MAXD);
        exit(1);
    }
    CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &g->d[g->nd]));
    return g->d[g->nd++];
}

static void set(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
                int64_t count, const void *v) {
    CUDNN_CHECK(cudnnBackendSetAttribute(d, name, type, count, v));
}

static void set_desc(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name, cudnnBackendDescriptor_t v) {
    set(d, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &v);
}

// A 4-d tensor. uid 0 = virtual (an intermediate the fused kernel keeps on chip).
static cudnnBackendDescriptor_t tensor(Graph *g, int64_t uid, cudnnDataType_t dt, int64_t d0, int64_t d1, int64_t d2,
                                       int64_t d3, const int64_t *stride, bool by_value = false) {
    cudnnBackendDescriptor_t t = make(g, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const int64_t dim[4] = {d0, d1, d2, d3}, packed[4] = {d1 * d2 * d3, d2 * d3, d3, 1};
    const int64_t align = 16;
    bool is_virtual = uid == 0;
    if (is_virtual) uid = g->next_virtual++;
    set(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
    set(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim);
    set(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, stride ? stride : packed);
    set(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    set(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    set(t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual);
    if (by_value) set(t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value);
    CUDNN_CHECK(cudnnBackendFinalize(t));
    return t;
}

static void add_op(Graph *g, cudnnBackendDescriptor_t op) {
    CUDNN_CHECK(cudnnBackendFinalize(op));
    if (g->nops == MAXOPS) {
        fprintf(stderr, "dcal: attention cudnn: internal: more than %d operations in one graph\n", MAXOPS);
        exit(1);
    }
    g->ops[g->nops++] = op;
}

// y = x <mode> b (b NULL for unary modes), computed in fp32.
static void pointwise(Graph *g, cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
                      cudnnBackendDescriptor_t y) {
    cudnnBackendDescriptor_t pw = make(g, CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    set(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    set(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    CUDNN_CHECK(cudnnBackendFinalize(pw));
    cudnnBackendDescriptor_t op = make(g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    set_desc(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw);
    set_desc(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
    if (b) set_desc(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b);
    set_desc(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
    add_op(g, op);
}

// y[..., 1] = reduce over the last dim of x (max or sum), fp32.
static void reduction(Graph *g, cudnnReduceTensorOp_t how, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    cudnnBackendDescriptor_t red = make(g, CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    set(red, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &how);
    set(red, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    CUDNN_CHECK(cudnnBackendFinalize(red));
    cudnnBackendDescriptor_t op = make(g, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    set_desc(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x);
    set_desc(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y);
    set_desc(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, red);
    add_op(g, op);
}

// c = a·b over the last two dims (batched over the first two), fp32 accumulate.
static void matmul(Graph *g, cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c) {
    cudnnBackendDescriptor_t mm = make(g, CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    set(mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    CUDNN_CHECK(cudnnBackendFinalize(mm));
    cudnnBackendDescriptor_t op = make(g, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    set_desc(op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, a);
    set_desc(op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, b);
    set_desc(op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, c);
    set_desc(op, CUDNN_ATTR_OPERATION_MATMUL_DESC, mm);
    add_op(g, op);
}

// y is x seen through other dims/strides (a transpose: no data moves).
static void reshape(Graph *g, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    cudnnBackendDescriptor_t op = make(g, CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    set_desc(op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x);
    set_desc(op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y);
    add_op(g, op);
}

typedef struct { int64_t B, H, Nq, Nk, hd; } Dims;
enum { PASS_FWD, PASS_BWD };

// Strides of a [B, H, rows, cols] view of a packed [B, H, cols, rows] buffer (its transpose):
// element (r, c) lives at c·rows + r.
static void transposed(const Dims *s, int64_t rows, int64_t cols, int64_t *st) {
    st[0] = s->H * rows * cols, st[1] = rows * cols, st[2] = 1, st[3] = rows;
}

static void build_forward(Graph *g, const Dims *s) {
    const cudnnDataType_t BF = CUDNN_DATA_BFLOAT16, F = CUDNN_DATA_FLOAT;
    int64_t kt[4], stats[4] = {s->H * s->Nq, s->Nq, 1, 1}, one[4] = {1, 1, 1, 1};
    transposed(s, s->hd, s->Nk, kt);   // Kᵀ [B, H, hd, Nk] over the packed K [B, H, Nk, hd]
    cudnnBackendDescriptor_t q = tensor(g, U_Q, BF, s->B, s->H, s->Nq, s->hd, NULL);
    cudnnBackendDescriptor_t k = tensor(g, U_K, BF, s->B, s->H, s->hd, s->Nk, kt);
    cudnnBackendDescriptor_t v = tensor(g, U_V, BF, s->B, s->H, s->Nk, s->hd, NULL);
    cudnnBackendDescriptor_t o = tensor(g, U_O, BF, s->B, s->H, s->Nq, s->hd, NULL);
    cudnnBackendDescriptor_t lse = tensor(g, U_STATS, F, s->B, s->H, s->Nq, 1, stats);
    cudnnBackendDescriptor_t scale = tensor(g, U_SCALE, F, 1, 1, 1, 1, one, true);
    cudnnBackendDescriptor_t S = tensor(g, 0, F, s->B, s->H, s->Nq, s->Nk, NULL);
    cudnnBackendDescriptor_t Ss = tensor(g, 0, F, s->B, s->H, s->Nq, s->Nk, NULL);
    cudnnBackendDescriptor_t M = tensor(g, 0, F, s->B, s->H, s->Nq, 1, NULL);
    cudnnBackendDescriptor_t Sm = tensor(g, 0, F, s->B, s->H, s->Nq, s->Nk, NULL);
    cudnnBackendDescriptor_t E = tensor(g, 0, F, s->B, s->H, s->Nq, s->Nk, NULL);
    cudnnBackendDescriptor_t Z = tensor(g, 0, F, s->B, s->H, s->Nq, 1, NULL);
    cudnnBackendDescriptor_t logZ = tensor(g, 0, F, s->B, s->H, s->Nq, 1, NULL);
    cudnnBackendDescriptor_t P = tensor(g, 0, BF, s->B, s->H, s->Nq, s->Nk, NULL);   // bmm2's A in bf16
    matmul(g, q, k, S);
    pointwise(g, CUDNN_POINTWISE_MUL, S, scale, Ss);
    reduction(g, CUDNN_REDUCE_TENSOR_MAX, Ss, M);
    pointwise(g, CUDNN_POINTWISE_SUB, Ss, M, Sm);
    pointwise(g, CUDNN_POINTWISE_EXP, Sm, NULL, E);
    reduction(g, CUDNN_REDUCE_TENSOR_ADD, E, Z);
    pointwise(g, CUDNN_POINTWISE_LOG, Z, NULL, logZ);
    pointwise(g, CUDNN_POINTWISE_ADD, M, logZ, lse);
    pointwise(g, CUDNN_POINTWISE_DIV, E, Z, P);
    matmul(g, P, v, o);
}

static void build_backward(Graph *g, const Dims *s) {
    const cudnnDataType_t BF = CUDNN_DATA_BFLOAT16, F = CUDNN_DATA_FLOAT;
    int64_t kt[4], vt[4], pt[4], row[4] = {s->H * s->Nq, s->Nq, 1, 1}, one[4] = {1, 1, 1, 1};
    int64_t kr[4] = {s->H * s->Nk * s->hd, s->Nk * s->hd, s->hd, 1};
    transposed(s, s->hd, s->Nk, kt), transposed(s, s->hd, s->Nk, vt), transposed(s, s->Nk, s->Nq, pt);
    cudnnBackendDescriptor_t q = tensor(g, U_Q, BF, s->B, s->H, s->Nq, s->hd, NULL);
    cudnnBackendDescriptor_t k = tensor(g, U_K, BF, s->B, s->H, s->hd, s->Nk, kt);   // Kᵀ
    cudnnBackendDescriptor_t v = tensor(g, U_V, BF, s->B, s->H, s->hd, s->Nk, vt);   // Vᵀ
    cudnnBackendDescriptor_t o = tensor(g, U_O, BF, s->B, s->H, s->Nq, s->hd, NULL);
    cudnnBackendDescriptor_t dO = tensor(g, U_DO, BF, s->B, s->H, s->Nq, s->hd, NULL);
    cudnnBackendDescriptor_t lse = tensor(g, U_STATS, F, s->B, s->H, s->Nq, 1, row);
    cudnnBackendDescriptor_t scale = tensor(g, U_SCALE, F, 1, 1, 1, 1, one, true);
    cudnnBackendDescriptor_t unit = tensor(g, U_ONE, F, 1, 1, 1, 1, one, true);
    cudnnBackendDescriptor_t dQ = tensor(g, U_DQ, BF, s->B, s->H, s->Nq, s->hd, NULL);
    cudnnBackendDescriptor_t dK = tensor(g, U_DK, BF, s->B, s->H, s->Nk, s->hd, NULL);
    cudnnBackendDescriptor_t dV = tensor(g, U_DV, BF, s->B, s->H, s->Nk, s->hd, NULL);
    cudnnBackendDescriptor_t sum = tensor(g, U_SUM, F, s->B, s->H, s->Nq, 1, row);   // rowsum(dO∘O), scratch
    // D = rowsum(dO ∘ O) (× 1: the frontend's dropout-scale slot, kept so the pattern matches)
    cudnnBackendDescriptor_t dOO = tensor(g, 0, F, s->B, s->H, s->Nq, s->hd, NULL);
    cudnnBackendDescriptor_t D = tensor(g, 0, F, s->B, s->H, s->Nq, 1, NULL);
    pointwise(g, CUDNN_POINTWISE_MUL, dO, o, dOO);
    reduction(g, CUDNN_REDUCE_TENSOR_ADD, dOO, D);
    pointwise(g, CUDNN_POINTWISE_MUL, D, unit, sum);
    // P = exp(scale·Q·Kᵀ − lse); dV = Pᵀ·dO
    cudnnBackendDescriptor_t S = tensor(g, 0, F, s->B, s->H, s->Nq, s->Nk, NULL);
    cudnnBackendDescriptor_t Ss = tensor(g, 0, F, s->B, s->H, s->Nq, s->Nk, NULL);
    cudnnBackendDescriptor_t Sm = tensor(g, 0, F, s->B, s->H, s->Nq, s->Nk, NULL);
    cudnnBackendDescriptor_t P = tensor(g, 0, F, s->B, s->H, s->Nq, s->Nk, NULL);
    cudnnBackendDescriptor_t PT = tensor(g, 0, BF, s->B, s->H, s->Nk, s->Nq, pt);
    matmul(g, q, k, S);
    pointwise(g, CUDNN_POINTWISE_MUL, S, scale, Ss);
    pointwise(g, CUDNN_POINTWISE_SUB, Ss, lse, Sm);
    pointwise(g, CUDNN_POINTWISE_EXP, Sm, NULL, P);
    reshape(g, P, PT);
    matmul(g, PT, dO, dV);
    // dS = P·(dO·Vᵀ − D)·scale; dK = dSᵀ·Q; dQ = dS·K
    cudnnBackendDescriptor_t dP = tensor(g, 0, F, s->B, s->H, s->Nq, s->Nk, NULL);
    cudnnBackendDescriptor_t dPm = tensor(g, 0, F, s->B, s->H, s->Nq, s->Nk, NULL);
    cudnnBackendDescriptor_t dSu = tensor(g, 0, F, s->B, s->H, s->Nq, s->Nk, NULL);
    cudnnBackendDescriptor_t dS = tensor(g, 0, F, s->B, s->H, s->Nq, s->Nk, NULL);
    cudnnBackendDescriptor_t dST = tensor(g, 0, BF, s->B, s->H, s->Nk, s->Nq, pt);
    cudnnBackendDescriptor_t Kr = tensor(g, 0, BF, s->B, s->H, s->Nk, s->hd, kr);
    matmul(g, dO, v, dP);
    pointwise(g, CUDNN_POINTWISE_SUB, dP, sum, dPm);
    pointwise(g, CUDNN_POINTWISE_MUL, dPm, P, dSu);
    pointwise(g, CUDNN_POINTWISE_MUL, dSu, scale, dS);
    reshape(g, dS, dST);
    matmul(g, dST, q, dK);
    reshape(g, k, Kr);
    matmul(g, dS, Kr, dQ);
}

// Builds and finalizes every tensor and operation of both graphs for one shape (Nq != Nk, the
// GLCA/PWCA case), then frees them: cuDNN checks each operation's dims, strides and types at
// finalize, which needs no GPU and no handle (only the operation graph and the plans do). For
// tests/unit_cudnn_graph.c on machines without a GPU; exits with a CUDNN_CHECK line on an error.
extern "C" int dcal_cudnn_graph_selfcheck(int B, int H, int Nq, int Nk, int hd) {
    const Dims s = {B, H, Nq, Nk, hd};
    int n_ops = 0;
    for (int pass = PASS_FWD; pass <= PASS_BWD; pass++) {
        Graph *g = (Graph *)calloc(1, sizeof(Graph));
        g->next_virtual = V_FIRST;
        if (pass == PASS_FWD) build_forward(g, &s);
        else build_backward(g, &s);
        n_ops += g->nops;
        for (int i = g->nd - 1; i >= 0; i--) CUDNN_CHECK(cudnnBackendDestroyDescriptor(g->d[i]));
        free(g);
    }
    return n_ops;
}

// ---- engine choice and the plan cache -------------------------------------------------------

static const char *const pass_name[] = {"forward", "backward"};

typedef struct {
    int used, pass;
    Dims s;
    Graph g;
    cudnnBackendDescriptor_t plan;
    int64_t workspace;
} Plan;

enum { NPLANS = 32 };
static Plan g_plans[NPLANS];
static int g_next_victim;

// An engine cuDNN marks non-deterministic is refused (the run's determinism, ARCHITECTURE.md §6).
static bool deterministic(Graph *g, cudnnBackendDescriptor_t cfg) {
    cudnnBackendDescriptor_t engine = make(g, CUDNN_BACKEND_ENGINE_DESCRIPTOR);
    int64_t n = 0;
    cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
    // Notes that cannot be read leave determinism unknown: such an engine is refused too.
    if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &engine) !=
            CUDNN_STATUS_SUCCESS ||
        cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                                 CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &n, notes) != CUDNN_STATUS_SUCCESS)
        return false;
    for (int64_t i = 0; i < n; i++)
        if (notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC) return false;
    return true;
}

// The first engine config of heuristics `mode` that is deterministic and finalizes; NULL if none.
static cudnnBackendDescriptor_t choose(Graph *g, cudnnBackendDescriptor_t opgraph, cudnnBackendHeurMode_t mode,
                                       int64_t *workspace) {
    cudnnBackendDescriptor_t heur = make(g, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    set_desc(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, opgraph);
    set(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    if (cudnnBackendFinalize(heur) != CUDNN_STATUS_SUCCESS) return NULL;   // no heuristics for this graph
    int64_t count = 0;
    CUDNN_CHECK(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0,
                                         &count, NULL));
    if (count > 16) count = 16;
    cudnnBackendDescriptor_t cfgs[16];
    for (int64_t i = 0; i < count; i++) cfgs[i] = make(g, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    CUDNN_CHECK(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                                         &count, cfgs));
    for (int64_t i = 0; i < count; i++) {
        if (!deterministic(g, cfgs[i])) continue;
        cudnnBackendDescriptor_t plan = make(g, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
        set(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &g_cudnn);
        set_desc(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, cfgs[i]);
        if (cudnnBackendFinalize(plan) != CUDNN_STATUS_SUCCESS) continue;   // this engine declines the shape
        int64_t got = 0;
        CUDNN_CHECK(cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                                             &got, workspace));
        return plan;
    }
    return NULL;
}

static void build_plan(Plan *p) {
    Graph *g = &p->g;
    g->next_virtual = V_FIRST;
    if (p->pass == PASS_FWD) build_forward(g, &p->s);
    else build_backward(g, &p->s);
    cudnnBackendDescriptor_t opgraph = make(g, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    set(opgraph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, g->nops, g->ops);
    set(opgraph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &g_cudnn);
    cudnnStatus_t st = cudnnBackendFinalize(opgraph);
    if (st == CUDNN_STATUS_SUCCESS) p->plan = choose(g, opgraph, CUDNN_HEUR_MODE_A, &p->workspace);
    if (st == CUDNN_STATUS_SUCCESS && !p->plan) p->plan = choose(g, opgraph, CUDNN_HEUR_MODE_FALLBACK, &p->workspace);
    if (p->plan) return;
    char last[512];
    cudnn_last_error(last, sizeof last);
    size_t v = cudnnGetVersion();
    fprintf(stderr,
            "dcal: attention cudnn: no deterministic engine supports this %s graph (B %lld, H %lld, Nq %lld, Nk %lld, "
            "hd %lld; cuDNN %zu.%zu, sm_%d): %s%s (use train.attention=dcal)\n",
            pass_name[p->pass], (long long)p->s.B, (long long)p->s.H, (long long)p->s.Nq, (long long)p->s.Nk,
            (long long)p->s.hd, v / 10000, v % 10000 / 100, g_sm, st != CUDNN_STATUS_SUCCESS ? "operation graph: " : "",
            last[0] ? last : cudnnGetErrorString(st));
    exit(1);
}

static void drop_plan(Plan *p) {
    for (int i = p->g.nd - 1; i >= 0; i--) cudnnBackendDestroyDescriptor(p->g.d[i]);
    memset(p, 0, sizeof *p);
}

// The cached plan of (pass, shape), built on first use; the oldest entry makes room when full.
static Plan *plan_for(int pass, const Dims *s) {
    for (int i = 0; i < NPLANS; i++) {
        Plan *p = &g_plans[i];
        if (p->used && p->pass == pass && !memcmp(&p->s, s, sizeof *s)) return p;
    }
    Plan *p = NULL;
    for (int i = 0; i < NPLANS && !p; i++)
        if (!g_plans[i].used) p = &g_plans[i];
    if (!p) {
        p = &g_plans[g_next_victim];
        g_next_victim = (g_next_victim + 1) % NPLANS;
        CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));   // the plan may still be in flight
        drop_plan(p);
    }
    p->used = 1, p->pass = pass, p->s = *s;
    build_plan(p);
    return p;
}

static void execute(const Plan *p, int n, const int64_t *uids, void *const *ptrs, void *workspace) {
    cudnnBackendDescriptor_t pack;
    CUDNN_CHECK(cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack));
    set(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids);
    set(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs);
    set(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
    CUDNN_CHECK(cudnnBackendFinalize(pack));
    CUDNN_CHECK(cudnnBackendExecute(g_cudnn, p->plan, pack));
    CUDNN_CHECK(cudnnBackendDestroyDescriptor(pack));
}

// ---- the ops --------------------------------------------------------------------------------

static Dims dims_of(const AttnArgs *a) {
    if (a->hd % 8 || a->hd > 128) {
        fprintf(stderr, "dcal: attention cudnn: head dim %d unsupported (a multiple of 8, at most 128; use "
                        "train.attention=dcal)\n", a->hd);
        exit(1);
    }
    return (Dims){a->B, a->H, a->Nq, a->n1 + a->n2, a->hd};
}

static size_t up256(size_t b) { return (b + 255) & ~(size_t)255; }

void cudnn_attention_forward(const AttnArgs *a, Act *out, float *lse) {
    Dims s = dims_of(a);
    const Plan *p = plan_for(PASS_FWD, &s);
    size_t nq = up256((size_t)s.B * s.H * s.Nq * s.hd * sizeof(bf16)), nk = up256((size_t)s.B * s.H * s.Nk * s.hd * sizeof(bf16));
    size_t nrow = (size_t)s.B * s.H * s.Nq * sizeof(float);
    char *ws = (char *)cuda_scratch(2 * nq + 2 * nk + up256(nrow) + (size_t)p->workspace);
    bf16 *q = (bf16 *)ws, *o = (bf16 *)(ws + nq), *k = (bf16 *)(ws + 2 * nq), *v = (bf16 *)(ws + 2 * nq + nk);
    float *stats = (float *)(ws + 2 * nq + 2 * nk);   // 256-aligned, where lse may sit anywhere in a buffer
    attn_pack_q(a, q);
    attn_pack_kv(a, k, v);
    float scale = a->scale;
    const int64_t uids[] = {U_Q, U_K, U_V, U_O, U_STATS, U_SCALE};
    void *const ptrs[] = {q, k, v, o, stats, &scale};
    execute(p, 6, uids, ptrs, ws + 2 * nq + 2 * nk + up256(nrow));
    CUDA_CHECK(cudaMemcpyAsync(lse, stats, nrow, cudaMemcpyDeviceToDevice, cuda_stream()));
    attn_unpack_rows_act(out, o, a->B, a->H, a->Nq, a->hd);   // out [B, Nq, D], an Act, written
}

void cudnn_attention_backward(const AttnArgs *a, const AttnGrads *g, const Act *out, const float *lse,
                              const float *dout) {
    if (!g->dq && !g->dk1 && !g->dv1 && !g->dk2 && !g->dv2) return;
    Dims s = dims_of(a);
    const Plan *p = plan_for(PASS_BWD, &s);
    size_t nq = up256((size_t)s.B * s.H * s.Nq * s.hd * sizeof(bf16)), nk = up256((size_t)s.B * s.H * s.Nk * s.hd * sizeof(bf16));
    size_t nrow = (size_t)s.B * s.H * s.Nq * sizeof(float), nsum = 2 * up256(nrow);
    char *ws = (char *)cuda_scratch(4 * nq + 4 * nk + nsum + (size_t)p->workspace);
    bf16 *q = (bf16 *)ws, *o = (bf16 *)(ws + nq), *dO = (bf16 *)(ws + 2 * nq), *dq = (bf16 *)(ws + 3 * nq);
    char *kv = ws + 4 * nq;
    bf16 *k = (bf16 *)kv, *v = (bf16 *)(kv + nk), *dk = (bf16 *)(kv + 2 * nk), *dv = (bf16 *)(kv + 3 * nk);
    float *sum = (float *)(kv + 4 * nk), *stats = (float *)(kv + 4 * nk + up256(nrow));
    CUDA_CHECK(cudaMemcpyAsync(stats, lse, nrow, cudaMemcpyDeviceToDevice, cuda_stream()));   // aligned copy
    attn_pack_q(a, q);
    attn_pack_kv(a, k, v);
    attn_pack_rows_act(out, a->B, a->H, a->Nq, a->hd, o);
    attn_pack_rows(dout, a->B, a->H, a->Nq, a->hd, dO);
    float scale = a->scale, unit = 1.0f;
    const int64_t uids[] = {U_Q, U_K, U_V, U_O, U_DO, U_STATS, U_SCALE, U_ONE, U_DQ, U_DK, U_DV, U_SUM};
    void *const ptrs[] = {q, k, v, o, dO, stats, &scale, &unit, dq, dk, dv, sum};
    execute(p, 12, uids, ptrs, kv + 4 * nk + nsum);
    attn_unpack_grads(a, g, dq, dk, dv);   // accumulated into dcal's fp32 gradients
}

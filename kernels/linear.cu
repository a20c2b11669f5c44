// linear.cu: patch embedding (im2col, tokens) and the linear layer on cuBLASLt.
//
// Precision (ARCHITECTURE.md §5): tensors stay fp32 at the interface (fp32 master weights,
// fp32 gradients); the GEMMs' operand type follows the backend's precision (device.cu).
// "bf16": the activation input is an Act (backend.h), already bf16 where its producer wrote
// it (LayerNorm, GELU, attention, im2col: rounded once there), and read in place; each call
// converts the fp32 operands it multiplies (weight, dout) to bf16 copies in scratch (round to
// nearest even) and runs cublasLtMatmul with A/B
// CUDA_R_16BF, C/D CUDA_R_32F, CUBLAS_COMPUTE_32F, fp32 scale: the dense bf16 tensor-core
// rate, fp32 accumulation, fp32 results (dinp and dW with beta = 1, so gradient accumulation
// across micro-batches stays fp32), except the Act outputs of linear_forward_act (qkv, fc1),
// which the GEMM writes in bf16 (cuda_linear_forward_act says how they are rounded).
// "fp32": fp32 operands, CUBLAS_COMPUTE_32F, fp32 outputs throughout. No TF32.
//
// Weights are converted on every call, not cached: they change at every optimizer step, and
// a cache keyed on the pointer would go stale silently. The cost is small: ViT-B/16's 86 M
// parameters are ~0.5 GB of traffic per pass (4 bytes read, 2 written, per weight), well
// under a millisecond of HBM bandwidth on an H200, against ~13 TFLOP of linear-layer GEMMs
// per step (kernels/README.md). Not measured on a GPU yet.
#include "kernels/cuda_common.h"
#include <cuda_bf16.h>
#include <string.h>

// Column-major cuBLAS on row-major data: a row-major [R, C] matrix is a
// column-major [C, R] one, so every product below is written for the transposes.
//
// One cublasLtMatmul per product. The forward's D is out^T [OC, rows]: its rows are the
// output features, so CUBLASLT_EPILOGUE_BIAS ("bias vector length must match matrix D
// rows", cublasLt.h) adds b[o] in the GEMM's epilogue, where add_bias_kernel used to make a
// second pass over out (it remains only as the fallback when the library has no such
// algorithm).
//
// db is not taken from the dW product's CUBLASLT_EPILOGUE_BGRADB (D = dW^T [IC, OC] there,
// op(B) = dout [rows, OC]: "bias size = number of columns of D, reduction over k" would be
// Σ_r dout[r, :]). That epilogue writes (not adds) its vector, which scratch plus an add
// would mend; what rules it out is the op contract: a backward with dw NULL must give db
// the bits of a full one (tests/ops/runner.c, case D), and the model makes exactly such a
// call, without inp (fc2's db beside dinp, model_block.c). BGRADB's summation order is the
// chosen algorithm's and needs the product, so no db-only kernel can reproduce it. The
// simulator models BGRADB (tools/cudasim) for when that call changes; kernels/README.md.
//
// GELU stays out of the epilogues: cuBLASLt documents CUBLASLT_EPILOGUE_GELU only as
// "x := GELU(x)", and its users treat it as the tanh approximation (PyTorch's
// _addmm_activation, which runs on that epilogue, decomposes to gelu(approximate="tanh")
// on CUDA); dcal's GELU is the exact erf one (docs/MODEL.md), see kernels/README.md.
//
// Determinism: cuBLAS documents bit-wise identical results run to run for one toolkit
// version, GPU architecture and SM count when one stream is active (cuBLAS guide,
// "Results reproducibility"); every call here runs on the one stream with a workspace of
// our own (cuda_lt_workspace), which that section names as the way to keep it. Split-K
// ("reduction scheme", cublasLt.h cublasLtReductionScheme_t) is restricted to the schemes
// whose order the header states: NONE ("performed in one sequence") and INPLACE
// ("counters ... guarantee the sequentiality"); COMPUTE_TYPE and OUTPUT_TYPE reduce "in a
// separate step" of unstated order and are masked out. The algorithm is chosen from the
// shape and the operands' (capped) pointer alignment only, both fixed for a run's layout.
#define LT_REDUCTION_SCHEMES ((uint32_t)(CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_INPLACE))

// D [m×n] = op(A) op(B) + beta·D, column-major, A and B of type ab (bf16 or fp32), D of type
// dt (fp32; bf16 only for linear_forward_act's Act output), epilogue epi (bias: its vector, of
// D's type).
struct LtGemm {
    cublasOperation_t ta, tb;
    int m, n, k;
    const void *A;
    int lda;
    const void *B;
    int ldb;
    float beta;
    void *D;
    int ldd;
    cudaDataType_t ab;
    cublasLtEpilogue_t epi;
    const void *bias;
    cudaDataType_t dt;
};

// The alignment promised to the heuristic: the largest power of two dividing p's address,
// capped at 16 bytes (what Hopper's TMA, the strictest consumer, needs of a global address;
// the heuristic assumes 256 unless told). The cap keeps the choice of algorithm, and so the
// bits, independent of where a buffer lands beyond that. The floor is a bf16 element's 2 bytes
// (an fp32 pointer is always 4-byte aligned, so its answer is never below 4).
static uint32_t alignment(const void *p) {
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 16;
    while (al > 2 && a % al) al >>= 1;
    return al;
}

// Heuristic answers, reused: the query costs host time on every call otherwise. The key is
// everything the answer depends on (shape, transposes, epilogue, operand and output types,
// alignments): an algorithm found for an fp32 D is never run on a bf16 one.
struct LtKey {
    int ta, tb, m, n, k, lda, ldb, ldd, epi, ab, dt;
    uint32_t align[5];
};
struct LtAlgo {
    LtKey key;
    int found;   // 1: algo holds an algorithm; 0: the library has none for this problem
    cublasLtMatmulAlgo_t algo;
};
#define LT_CACHE 64
static LtAlgo g_lt_cache[LT_CACHE];
static int g_lt_cached, g_lt_next;

static LtKey lt_key(const LtGemm &g) {
    LtKey k;
    memset(&k, 0, sizeof k);   // padding too: keys are compared bytewise
    k.ta = g.ta, k.tb = g.tb, k.m = g.m, k.n = g.n, k.k = g.k, k.lda = g.lda, k.ldb = g.ldb, k.ldd = g.ldd;
    k.epi = g.epi, k.ab = g.ab, k.dt = g.dt;
    const void *p[5] = {g.A, g.B, g.D, g.D, g.bias};
    for (int i = 0; i < 5; i++) k.align[i] = p[i] ? alignment(p[i]) : 0;
    return k;
}

struct LtDescs {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, d;
};

static LtDescs lt_describe(const LtGemm &g) {
    LtDescs s;
    int32_t ta = g.ta, tb = g.tb;
    uint32_t epi = g.epi;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&s.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (g.bias) {
        // The bias has D's type: "Bias vector elements are the same type as the elements of output
        // matrix (Dtype)" (cublasLt.h, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE; its exceptions are IMMA
        // and fp8 kernels only): fp32 for an fp32 D whatever A and B are, bf16 for linear_forward_act's
        // bf16 D. Said explicitly so the library never has to guess.
        int32_t bias_type = g.dt;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof g.bias));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                    sizeof bias_type));
    }
    bool na = g.ta == CUBLAS_OP_N, nb = g.tb == CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&s.a, g.ab, na ? g.m : g.k, na ? g.k : g.m, g.lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&s.b, g.ab, nb ? g.k : g.n, nb ? g.n : g.k, g.ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&s.d, g.dt, g.m, g.n, g.ldd));
    return s;
}

static void lt_release(LtDescs &s) {
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(s.a));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(s.b));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(s.d));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(s.op));
}

// Asks the heuristic for one algorithm; found = 0 when the library has none (NOT_SUPPORTED
// or no result), any other failure is fatal.
static LtAlgo lt_query(const LtDescs &s, const LtKey &key) {
    LtAlgo r;
    r.key = key;
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = cuda_lt_workspace_bytes();
    uint32_t schemes = LT_REDUCTION_SCHEMES;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes,
                                                      sizeof schemes));
    // Sub-tensor views are not 256-byte aligned: say what they are, or the algorithm may not fit them.
    const cublasLtMatmulPreferenceAttributes_t align_attr[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++)
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, align_attr[i], &key.align[i], sizeof key.align[i]));
    cublasLtMatmulHeuristicResult_t res;
    int n = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(cuda_cublaslt(), s.op, s.a, s.b, s.d, s.d, pref, 1, &res, &n);
    if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED) {
        fprintf(stderr, "dcal: cuda: %s:%d: cublasLtMatmulAlgoGetHeuristic(%dx%dx%d, epilogue %d): %s\n", __FILE__,
                __LINE__, key.m, key.n, key.k, key.epi, cublasGetStatusString(st));
        exit(1);
    }
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    r.found = st == CUBLAS_STATUS_SUCCESS && n > 0;
    if (r.found) r.algo = res.algo;
    return r;
}

static const LtAlgo &lt_algo(const LtGemm &g, const LtDescs &s) {
    LtKey key = lt_key(g);
    for (int i = 0; i < g_lt_cached; i++)
        if (!memcmp(&g_lt_cache[i].key, &key, sizeof key)) return g_lt_cache[i];
    int slot = g_lt_cached < LT_CACHE ? g_lt_cached++ : (g_lt_next++ % LT_CACHE);
    g_lt_cache[slot] = lt_query(s, key);
    return g_lt_cache[slot];
}

// Runs g; false (nothing done) when cuBLASLt has no algorithm for its epilogue, so the caller
// can do the bias work itself. A plain product without one is fatal: there is nothing else.
static bool lt_matmul(const LtGemm &g) {
    LtDescs s = lt_describe(g);
    const LtAlgo &a = lt_algo(g, s);
    if (!a.found && g.epi == CUBLASLT_EPILOGUE_DEFAULT) {
        fprintf(stderr, "dcal: cuda: %s:%d: cuBLASLt has no algorithm for a %dx%dx%d %s product (check the CUDA "
                        "toolkit and driver)\n", __FILE__, __LINE__, g.m, g.n, g.k,
                g.ab != CUDA_R_16BF ? "fp32" : g.dt == CUDA_R_16BF ? "bf16 x bf16 -> bf16" : "bf16 x bf16 -> fp32");
        exit(1);
    }
    if (a.found) {
        const float alpha = 1.f;
        CUBLAS_CHECK(cublasLtMatmul(cuda_cublaslt(), s.op, &alpha, g.A, s.a, g.B, s.b, &g.beta, g.D, s.d, g.D, s.d,
                                    &a.algo, cuda_lt_workspace(), cuda_lt_workspace_bytes(), cuda_stream()));
    }
    lt_release(s);
    return a.found;
}

// Said once per epilogue (*said), on stderr: the run is still correct, only an extra pass slower.
static void note_unfused(bool *said, const char *epi, const char *instead) {
    if (*said) return;
    *said = true;
    fprintf(stderr, "dcal: cuda: cuBLASLt has no algorithm with the %s epilogue here; %s\n", epi, instead);
}
static bool g_said_bias;

// ---- bf16 operand copies (precision bf16) ----
// A copy's rows are padded to a multiple of 8 bf16 (16 bytes) whatever the tensor's width, so
// every bf16 operand has the leading dimension tensor-core kernels load in 16-byte vectors:
// head layers of 100 (FGVC-Aircraft) or 196 (Stanford Cars) classes give rows of 200 or 392
// bytes, which an unpadded copy would hand to cuBLASLt as is. The pad columns are never read
// (the GEMM's m, n, k are the tensor's own), so they are left unwritten. The row and part
// sizes (gemm_padded_ld, gemm_bf16_part: each part rounded to 256 bytes, so every copy starts
// where the heuristic's capped alignment and cuBLASLt's vector loads want it) are
// backend/cuda_scratch_rule.h's, which dcal plan counts with.

// One thread per 4 floats of a row: a 16-byte load when the source allows it (sub-tensor
// views may start anywhere), else element by element; the same rounding (nearest even).
__global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t rows, int cols, int ld, int vec4) {
    size_t q = (size_t)blockIdx.x * blockDim.x + threadIdx.x, per_row = ((size_t)cols + 3) / 4;
    if (q >= rows * per_row) return;
    size_t r = q / per_row;
    int c = (int)(q % per_row) * 4;
    const float *x = src + r * cols + c;
    __nv_bfloat16 *y = dst + r * ld + c;
    if (vec4 && c + 4 <= cols) {
        float4 v = *(const float4 *)x;
        y[0] = __float2bfloat16(v.x), y[1] = __float2bfloat16(v.y);
        y[2] = __float2bfloat16(v.z), y[3] = __float2bfloat16(v.w);
        return;
    }
    for (int j = 0; j < 4 && c + j < cols; j++) y[j] = __float2bfloat16(x[j]);
}

// A bf16 Act whose rows are not 16-byte multiples (or whose base is not 16-byte aligned), copied
// into padded rows; the same values, no rounding.
__global__ void pad_bf16_kernel(__nv_bfloat16 *dst, const __nv_bfloat16 *src, size_t rows, int cols, int ld) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * cols) dst[(i / cols) * ld + i % cols] = src[i];
}

// One A/B operand of a linear call, a row-major [rows, cols] tensor: fp32 (a weight, dout, a
// bias), or an Act (the activation input: backend.h), already of the operand type at bf16.
struct Src {
    const void *p;   // NULL: unused
    size_t rows;
    int cols;
    bool act;
};
// A bf16 Act the GEMM can read in place: rows of whole 16-byte vectors from an aligned base.
static bool act_in_place(const Src &s) { return s.cols == gemm_padded_ld(s.cols) && (uintptr_t)s.p % 16 == 0; }

// The operands of one linear call: the tensors themselves (leading dimension cols) at
// precision fp32; at precision bf16, the Act inputs in place and padded bf16 copies of the
// fp32 ones (and of an Act whose rows need padding), all carved from ONE cuda_scratch call
// (scratch is valid until the next call, and colsum uses it too, after the GEMMs). `extra`
// more bytes of that call, after the copies and 256-byte aligned, are the caller's at o.extra
// (NULL when extra is 0).
struct Operands {
    const void *p[3];
    int ld[3];
    cudaDataType_t type;
    void *extra;
};
static Operands operands(const Src src[3], size_t extra = 0) {
    Operands o;
    o.type = cuda_gemm_operands();
    o.extra = NULL;
    for (int i = 0; i < 3; i++) o.p[i] = src[i].p, o.ld[i] = src[i].cols;
    if (o.type == CUDA_R_32F) {
        if (extra) o.extra = cuda_scratch(extra);
        return o;
    }
    size_t total = 256;   // never 0: an empty operand still gets a valid device pointer
    for (int i = 0; i < 3; i++)
        if (src[i].p && !(src[i].act && act_in_place(src[i]))) total += gemm_bf16_part(src[i].rows, src[i].cols);
    char *s = (char *)cuda_scratch(total + extra);
    if (extra) o.extra = s + total;
    for (int i = 0; i < 3; i++) {
        const Src &x = src[i];
        if (!x.p || (x.act && act_in_place(x))) continue;
        int ld = gemm_padded_ld(x.cols);
        if (x.act) {
            size_t n = x.rows * (size_t)x.cols;
            if (n) {
                pad_bf16_kernel<<<cdiv(n, 256), 256, 0, cuda_stream()>>>((__nv_bfloat16 *)s,
                                                                         (const __nv_bfloat16 *)x.p, x.rows, x.cols,
                                                                         ld);
                LAUNCH_CHECK();
            }
        } else {
            size_t quads = x.rows * (((size_t)x.cols + 3) / 4);
            if (quads) {
                // 16-byte loads need the base aligned and every row to start aligned (cols % 4 == 0).
                int vec4 = (uintptr_t)x.p % 16 == 0 && x.cols % 4 == 0;
                to_bf16_kernel<<<cdiv(quads, 256), 256, 0, cuda_stream()>>>(
                    (__nv_bfloat16 *)s, (const float *)x.p, x.rows, x.cols, ld, vec4);
                LAUNCH_CHECK();
            }
        }
        o.p[i] = s, o.ld[i] = ld;
        s += gemm_bf16_part(x.rows, x.cols);
    }
    return o;
}

__global__ void add_bias_kernel(float *out, const float *b, size_t rows, int OC) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * OC) out[i] += b[i % OC];
}

// The BIAS epilogue's definition for a bf16 D, when the library has no such algorithm: the
// fp32 product plus the bias rounded to bf16 (the epilogue's bias type), then one rounding.
__global__ void add_bias_bf16_kernel(__nv_bfloat16 *out, const float *acc, const float *b, size_t rows, int OC) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * OC) out[i] = __float2bfloat16_rn(acc[i] + __bfloat162float(__float2bfloat16_rn(b[i % OC])));
}

// The forward product: out^T [OC, rows] = W [OC, IC] · inp^T [IC, rows] (W^T is W's column-major
// view) into a D of type dt, the bias in the epilogue when b is given. A bf16 D takes a bf16
// bias (cublasLt.h, see lt_describe): b is converted with the operands, in the same scratch
// call, which also holds `extra` more bytes at o->extra.
static LtGemm forward_gemm(Operands *o, const float *w, const Act *inp, const float *b, int rows, int IC, int OC,
                           void *out, cudaDataType_t dt, size_t extra) {
    bool bf16_bias = b && dt == CUDA_R_16BF;
    const Src src[3] = {{w, (size_t)OC, IC, false}, {inp, (size_t)rows, IC, true},
                        {bf16_bias ? b : NULL, 1, OC, false}};
    *o = operands(src, extra);
    const void *bias = bf16_bias ? o->p[2] : b;
    LtGemm g = {CUBLAS_OP_T, CUBLAS_OP_N, OC, rows, IC, o->p[0], o->ld[0], o->p[1], o->ld[1], 0.f, out, OC, o->type,
                bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT, bias, dt};
    return g;
}

void cuda_linear_forward(float *out, const Act *inp, const float *w, const float *b, int rows, int IC, int OC) {
    if (rows <= 0 || OC <= 0) return;
    Operands o;
    LtGemm g = forward_gemm(&o, w, inp, b, rows, IC, OC, out, CUDA_R_32F, 0);
    if (lt_matmul(g)) return;
    note_unfused(&g_said_bias, "BIAS", "the bias is added by a second kernel");
    g.epi = CUBLASLT_EPILOGUE_DEFAULT, g.bias = NULL;
    lt_matmul(g);
    size_t n = (size_t)rows * OC;
    add_bias_kernel<<<cdiv(n, 256), 256, 0, cuda_stream()>>>(out, b, rows, OC);
    LAUNCH_CHECK();
}

// The Act output (backend.h) of the qkv and fc1 GEMMs. At fp32 it is linear_forward. At bf16 one
// GEMM writes bf16 straight from its epilogue: A/B the bf16 operand copies, fp32 accumulation
// (CUBLAS_COMPUTE_32F), D = C = bf16 with beta = 0, bias in the BIAS epilogue as bf16, so
//     out = RNE_bf16(acc_fp32 + (float)RNE_bf16(b))
// (the epilogue adds in its fp32 scale type, then converts to D's type): the output's one
// rounding, plus the bias's own (half an ulp of b, 2^-9 relative), which the header's rule for
// the bias type imposes (lt_describe). Without a BIAS algorithm for a bf16 D, the fallback
// computes that definition itself: the fp32 product into scratch, then add_bias_bf16_kernel;
// the operand copies are made again in the larger scratch call (a rare path, said once).
void cuda_linear_forward_act(Act *out, const Act *inp, const float *w, const float *b, int rows, int IC, int OC) {
    if (!cuda_act_bf16()) return cuda_linear_forward((float *)out, inp, w, b, rows, IC, OC);
    if (rows <= 0 || OC <= 0) return;
    Operands o;
    LtGemm g = forward_gemm(&o, w, inp, b, rows, IC, OC, out, CUDA_R_16BF, 0);
    if (lt_matmul(g)) return;
    note_unfused(&g_said_bias, "BIAS", "the bias is added by a second kernel");
    size_t n = (size_t)rows * OC;
    g = forward_gemm(&o, w, inp, NULL, rows, IC, OC, NULL, CUDA_R_32F, n * sizeof(float));
    g.D = o.extra;
    lt_matmul(g);
    add_bias_bf16_kernel<<<cdiv(n, 256), 256, 0, cuda_stream()>>>((__nv_bfloat16 *)out, (const float *)o.extra, b,
                                                                   rows, OC);
    LAUNCH_CHECK();
}

// dinp (+)= dout · W: backend.h linear_backward (accumulating) and linear_backward_set (beta 0).
static void linear_backward(float *dinp, float *dw, float *db, const float *dout, const Act *inp, const float *w,
                            int rows, int IC, int OC, float dinp_beta) {
    if (rows <= 0) return;
    if (dinp || dw) {
        // dout is converted once and read by both products; W only for dinp, inp only for dW.
        const Src src[3] = {{dout, (size_t)rows, OC, false}, {dinp ? w : NULL, (size_t)OC, IC, false},
                            {dw ? inp : NULL, (size_t)rows, IC, true}};
        Operands o = operands(src);
        // dinp [rows, IC] (+)= dout [rows, OC] · W [OC, IC]; column-major: dinp^T = W^T · dout^T.
        if (dinp)
            lt_matmul({CUBLAS_OP_N, CUBLAS_OP_N, IC, rows, OC, o.p[1], o.ld[1], o.p[0], o.ld[0], dinp_beta, dinp, IC,
                       o.type, CUBLASLT_EPILOGUE_DEFAULT, NULL, CUDA_R_32F});
        // dW [OC, IC] += dout^T · inp; column-major: dW^T [IC, OC] = inp^T [IC, rows] · dout [rows, OC].
        if (dw)
            lt_matmul({CUBLAS_OP_N, CUBLAS_OP_T, IC, OC, rows, o.p[2], o.ld[2], o.p[0], o.ld[0], 1.f, dw, IC, o.type,
                       CUBLASLT_EPILOGUE_DEFAULT, NULL, CUDA_R_32F});
    }
    // db stays the column-sum kernel, not the dW product's BGRADB epilogue (see the top). It
    // reuses scratch, after the products on the one stream, so the bf16 copies are consumed first.
    if (db) cuda_colsum_acc(db, dout, rows, OC);
}
void cuda_linear_backward(float *dinp, float *dw, float *db, const float *dout, const Act *inp, const float *w,
                          int rows, int IC, int OC) {
    linear_backward(dinp, dw, db, dout, inp, w, rows, IC, OC, 1.f);
}
void cuda_linear_backward_set(float *dinp, float *dw, float *db, const float *dout, const Act *inp, const float *w,
                              int rows, int IC, int OC) {
    linear_backward(dinp, dw, db, dout, inp, w, rows, IC, OC, 0.f);
}

// cols [B*P, C*p*p], row (b, py, px), column (c, ky, kx): one thread per column
// entry, so consecutive threads read consecutive kx of one image row.
template <typename T> __global__ void im2col_kernel(T *cols, const float *img, int B, int C, int S, int p) {
    int g = S / p, P = g * g, K = C * p * p;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * P * K) return;
    int col = (int)(i % K);
    size_t row = i / K;
    int b = (int)(row / P), pi = (int)(row % P);
    int py = pi / g, px = pi % g;
    int c = col / (p * p), ky = (col / p) % p, kx = col % p;
    act_store(cols, i, img[(((size_t)b * C + c) * S + py * p + ky) * S + px * p + kx]);
}

// cols is the patch GEMM's Act input: at bf16 the pixels are rounded here, once, as the GEMM's
// operand copy rounded them before.
void cuda_im2col_forward(Act *cols, const float *img, int B, int C, int S, int p) {
    int g = S / p;
    size_t n = (size_t)B * g * g * C * p * p;
    if (!n) return;
    if (cuda_act_bf16())
        im2col_kernel<__nv_bfloat16><<<cdiv(n, 256), 256, 0, cuda_stream()>>>((__nv_bfloat16 *)cols, img, B, C, S, p);
    else
        im2col_kernel<float><<<cdiv(n, 256), 256, 0, cuda_stream()>>>((float *)cols, img, B, C, S, p);
    LAUNCH_CHECK();
}

__global__ void tokens_forward_kernel(float *x0, const float *pe, const float *cls, const float *pos, int B, int N,
                                      int D) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * N * D) return;
    int d = (int)(i % D);
    int t = (int)((i / D) % N);
    int b = (int)(i / ((size_t)N * D));
    float v = t == 0 ? cls[d] : pe[((size_t)b * (N - 1) + t - 1) * D + d];
    x0[i] = v + pos[(size_t)t * D + d];
}

void cuda_tokens_forward(float *x0, const float *pe, const float *cls, const float *pos, int B, int N, int D) {
    size_t n = (size_t)B * N * D;
    if (!n) return;
    tokens_forward_kernel<<<cdiv(n, 256), 256, 0, cuda_stream()>>>(x0, pe, cls, pos, B, N, D);
    LAUNCH_CHECK();
}

// One thread per (t, d): it owns dpos[t, d] (and dcls[d] for t = 0) and sums
// over b in order — deterministic, no atomics. dpe is a plain per-element +=.
__global__ void tokens_backward_kernel(float *dpe, float *dcls, float *dpos, const float *dx0, int B, int N, int D) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * D) return;
    int d = (int)(i % D), t = (int)(i / D);
    float s = 0.f;
    for (int b = 0; b < B; b++) {
        float g = dx0[((size_t)b * N + t) * D + d];
        s += g;
        if (t > 0 && dpe) dpe[((size_t)b * (N - 1) + t - 1) * D + d] += g;
    }
    if (dpos) dpos[i] += s;
    if (t == 0 && dcls) dcls[d] += s;
}

void cuda_tokens_backward(float *dpe, float *dcls, float *dpos, const float *dx0, int B, int N, int D) {
    size_t n = (size_t)N * D;
    if (!n || (!dpe && !dcls && !dpos)) return;
    tokens_backward_kernel<<<cdiv(n, 256), 256, 0, cuda_stream()>>>(dpe, dcls, dpos, dx0, B, N, D);
    LAUNCH_CHECK();
}

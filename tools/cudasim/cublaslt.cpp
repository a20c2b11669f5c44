// cublaslt.cpp: cudasim's cuBLASLt (see include/cublasLt.h): descriptors that record what was
// set, a heuristic that hands back one algorithm stamped with the problem it was asked about,
// and cublasLtMatmul on the reference GEMM of cublas.cpp with the DEFAULT, BIAS and BGRADB
// epilogues, for three type combinations: fp32 A/B/C/D (compute 32F or 32F_FAST_TF32), bf16
// A/B with fp32 C/D and bf16 A/B/C/D (compute 32F: bf16 widened exactly, fp32 sums in k order,
// the epilogue in fp32, a bf16 D rounded once to nearest even at the store). A bias vector has
// D's type (cublasLt.h, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE). What the simulator does not model
// fails loudly: a kernel must never rely on an attribute the simulator quietly ignored.
#include <stdio.h>
#include <string.h>
#include <memory>
#include <vector>
#include "blas_ref.h"
#include "cublasLt.h"

using namespace cudasim_blas;

struct cublasLtContext {
    int live;
};
struct cublasLtMatmulDescOpaque_t {
    cublasComputeType_t compute;
    cublasOperation_t ta, tb;
    cublasLtEpilogue_t epi;
    void *bias;
    int32_t bias_type;   // CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE; -1 (the default): D's type
};
struct cublasLtMatrixLayoutOpaque_t {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};
struct cublasLtMatmulPreferenceOpaque_t {
    uint64_t max_workspace;
    uint32_t reduction_mask;
    uint32_t align[4];   // the pointer alignment (bytes) the caller promises for A, B, C, D
};

namespace {

const uint64_t ALGO_MAGIC = 0x63756461'73696d4cull;   // "cudasimL"
unsigned g_refused;                                  // cudasim_lt_refuse_epilogues
int g_refusals;

template <class T> T attr_value(const char *fn, int attr, const void *buf, size_t size) {
    if (!buf || size != sizeof(T))
        cudasim::fail("%s: attribute %d takes %zu bytes, was given %zu", fn, attr, sizeof(T), size);
    T v;
    memcpy(&v, buf, sizeof v);
    return v;
}

bool simulated_epilogue(uint32_t e) {
    return e == CUBLASLT_EPILOGUE_DEFAULT || e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_BGRADB;
}

bool pow2(uint32_t v) { return v && !(v & (v - 1)); }

// The GEMM a descriptor and its layouts describe: op(A) [m×k] · op(B) [k×n] → D [m×n].
struct Problem {
    int m, n, k;
};

bool problem(const char *fn, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
             cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D, Problem *p) {
    if (!d || !A || !B || !C || !D) cudasim::fail("%s: a NULL descriptor or layout", fn);
    uint64_t am = d->ta == CUBLAS_OP_N ? A->rows : A->cols, ak = d->ta == CUBLAS_OP_N ? A->cols : A->rows;
    uint64_t bk = d->tb == CUBLAS_OP_N ? B->rows : B->cols, bn = d->tb == CUBLAS_OP_N ? B->cols : B->rows;
    if (am != D->rows || bn != D->cols || ak != bk || C->rows != D->rows || C->cols != D->cols ||
        C->type != D->type || A->type != B->type) {
        fprintf(stderr, "cudasim: %s: shapes do not chain: op(A) %llux%llu, op(B) %llux%llu, C %llux%llu, D %llux%llu\n",
                fn, (unsigned long long)am, (unsigned long long)ak, (unsigned long long)bk, (unsigned long long)bn,
                (unsigned long long)C->rows, (unsigned long long)C->cols, (unsigned long long)D->rows,
                (unsigned long long)D->cols);
        return false;
    }
    *p = {(int)D->rows, (int)D->cols, (int)ak};
    return true;
}

// The bias vector's type: the one set, else D's ("Bias vector elements are the same type as the
// elements of output matrix (Dtype)", cublasLt.h, whose exceptions are IMMA and fp8 kernels).
cudaDataType_t bias_type(cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t D) {
    return d->bias_type < 0 ? D->type : (cudaDataType_t)d->bias_type;
}

// The (A/B, C/D, compute) combinations modelled, a subset of the cublasLtMatmul table of the
// cuBLAS guide; anything else (fp32 A/B into a bf16 D, bf16 operands under FAST_TF32, ...)
// exits 1, and so does a bias of another type than D's or a BGRADB into a bf16 vector.
void check_types(const char *fn, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t C) {
    bool fp32 = A->type == CUDA_R_32F && C->type == CUDA_R_32F &&
                (d->compute == CUBLAS_COMPUTE_32F || d->compute == CUBLAS_COMPUTE_32F_FAST_TF32);
    bool bf16 = A->type == CUDA_R_16BF && (C->type == CUDA_R_32F || C->type == CUDA_R_16BF) &&
                d->compute == CUBLAS_COMPUTE_32F;
    if (!fp32 && !bf16)
        cudasim::fail("%s: A/B type %d, C/D type %d with compute type %d is not simulated (fp32 A/B/C/D with 32F or "
                      "32F_FAST_TF32; bf16 A/B with fp32 or bf16 C/D and 32F)", fn, (int)A->type, (int)C->type,
                      (int)d->compute);
    if (d->epi != CUBLASLT_EPILOGUE_DEFAULT && bias_type(d, C) != C->type)
        cudasim::fail("%s: a bias vector of type %d with D of type %d is not simulated (cublasLt.h: bias elements "
                      "have D's type)", fn, (int)bias_type(d, C), (int)C->type);
    if (d->epi == CUBLASLT_EPILOGUE_BGRADB && C->type != CUDA_R_32F)
        cudasim::fail("%s: BGRADB with D of type %d is not simulated (fp32 only)", fn, (int)C->type);
}

uint64_t stamp_ops(cublasLtMatmulDesc_t d) {
    return (uint64_t)d->ta | (uint64_t)d->tb << 2 | (uint64_t)d->epi << 4 | (uint64_t)d->compute << 32;
}
// The operand and output types an algorithm was found for (real kernels are type-specific).
uint64_t stamp_types(cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t C) {
    return (uint64_t)A->type | (uint64_t)C->type << 16;
}

void check_aligned(const char *what, const void *p, uint32_t align) {
    if ((uintptr_t)p % align)
        cudasim::fail("cublasLtMatmul: %s = %p is not %u-byte aligned, as the heuristic was told "
                      "(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_%s_BYTES): a real algorithm may fault or be refused",
                      what, p, align, what);
}

}   // namespace

size_t cublasLtGetVersion(void) { return 0; }
cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { *h = new cublasLtContext{1}; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }
int cudasim_lt_refuse_epilogues(unsigned mask) {
    int n = g_refusals;
    g_refused = mask, g_refusals = 0;
    return n;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale) {
    if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32)
        cudasim::fail("cublasLtMatmulDescCreate: compute type %d is not simulated", (int)compute);
    if (scale != CUDA_R_32F) cudasim::fail("cublasLtMatmulDescCreate: scale type %d is not simulated", (int)scale);
    *d = new cublasLtMatmulDescOpaque_t{compute, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, nullptr, -1};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { delete d; return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t size) {
    const char *fn = "cublasLtMatmulDescSetAttribute";
    if (!d) return CUBLAS_STATUS_NOT_INITIALIZED;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
        int32_t t = attr_value<int32_t>(fn, attr, buf, size);
        if (t != CUBLAS_OP_N && t != CUBLAS_OP_T) cudasim::fail("%s: transpose %d is not simulated", fn, t);
        (attr == CUBLASLT_MATMUL_DESC_TRANSA ? d->ta : d->tb) = (cublasOperation_t)t;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE: {
        uint32_t e = attr_value<uint32_t>(fn, attr, buf, size);
        if (!simulated_epilogue(e))
            cudasim::fail("%s: epilogue %u is not simulated (DEFAULT, BIAS and BGRADB are)", fn, e);
        d->epi = (cublasLtEpilogue_t)e;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: d->bias = attr_value<void *>(fn, attr, buf, size); return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
        d->bias_type = attr_value<int32_t>(fn, attr, buf, size);
        if (d->bias_type != CUDA_R_32F && d->bias_type != CUDA_R_16BF)
            cudasim::fail("%s: bias type %d is not simulated (fp32 and bf16 are)", fn, (int)d->bias_type);
        return CUBLAS_STATUS_SUCCESS;
    default: cudasim::fail("%s: attribute %d is not simulated", fn, (int)attr);
    }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
    if (type != CUDA_R_32F && type != CUDA_R_16BF) cudasim::fail("cublasLtMatrixLayoutCreate: type %d is not simulated", (int)type);
    if (ld < (int64_t)rows || rows > 0x7fffffff || cols > 0x7fffffff) return CUBLAS_STATUS_INVALID_VALUE;
    *l = new cublasLtMatrixLayoutOpaque_t{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { delete l; return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new cublasLtMatmulPreferenceOpaque_t{0, CUBLASLT_REDUCTION_SCHEME_MASK, {256, 256, 256, 256}};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { delete p; return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                    size_t size) {
    const char *fn = "cublasLtMatmulPreferenceSetAttribute";
    if (!p) return CUBLAS_STATUS_NOT_INITIALIZED;
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: p->max_workspace = attr_value<uint64_t>(fn, attr, buf, size); break;
    case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK:
        p->reduction_mask = attr_value<uint32_t>(fn, attr, buf, size);
        if (p->reduction_mask & ~(uint32_t)CUBLASLT_REDUCTION_SCHEME_MASK)
            cudasim::fail("%s: reduction scheme mask 0x%x has unknown bits", fn, p->reduction_mask);
        break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: {
        uint32_t a = attr_value<uint32_t>(fn, attr, buf, size);
        if (!pow2(a)) cudasim::fail("%s: alignment %u is not a power of two", fn, a);
        p->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = a;
        break;
    }
    default: cudasim::fail("%s: attribute %d is not simulated", fn, (int)attr);
    }
    return CUBLAS_STATUS_SUCCESS;
}

// One algorithm: split-K free (reduction scheme NONE, which every mask admits), no workspace.
// It is stamped with the problem, so a cached algorithm reused for another problem fails.
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t A,
                                              cublasLtMatrixLayout_t B, cublasLtMatrixLayout_t C,
                                              cublasLtMatrixLayout_t D, cublasLtMatmulPreference_t p, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int *returned) {
    const char *fn = "cublasLtMatmulAlgoGetHeuristic";
    if (!h || !p) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (requested < 1 || !results || !returned) return CUBLAS_STATUS_INVALID_VALUE;
    *returned = 0;
    Problem pr;
    if (!problem(fn, d, A, B, C, D, &pr)) return CUBLAS_STATUS_INVALID_VALUE;
    check_types(fn, d, A, C);
    if (d->epi != CUBLASLT_EPILOGUE_DEFAULT && !d->bias)
        cudasim::fail("%s: epilogue %u without CUBLASLT_MATMUL_DESC_BIAS_POINTER", fn, (unsigned)d->epi);
    if (g_refused & d->epi) return g_refusals++, CUBLAS_STATUS_NOT_SUPPORTED;
    cublasLtMatmulHeuristicResult_t r;
    memset(&r, 0, sizeof r);
    r.algo.data[0] = ALGO_MAGIC;
    r.algo.data[1] = (uint64_t)pr.m, r.algo.data[2] = (uint64_t)pr.n, r.algo.data[3] = (uint64_t)pr.k;
    r.algo.data[4] = stamp_ops(d);
    r.algo.data[6] = stamp_types(A, C);
    for (int i = 0; i < 4; i++) r.algo.data[5] |= (uint64_t)p->align[i] << (16 * i);
    r.state = CUBLAS_STATUS_SUCCESS;
    r.wavesCount = 1.f;
    results[0] = r;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

namespace {

bool operands_in_device(const Problem &pr, cublasLtMatmulDesc_t d, const void *A, cublasLtMatrixLayout_t Ad,
                        const void *B, cublasLtMatrixLayout_t Bd, const void *C, cublasLtMatrixLayout_t Cd,
                        const void *D, cublasLtMatrixLayout_t Dd) {
    const char *fn = "cublasLtMatmul";
    size_t bias_n = d->epi == CUBLASLT_EPILOGUE_BIAS ? pr.m : d->epi == CUBLASLT_EPILOGUE_BGRADB ? pr.n : 0;
    return in_device(fn, "A", A, extent((int)Ad->rows, (int)Ad->cols, (int)Ad->ld), Ad->type) &&
           in_device(fn, "B", B, extent((int)Bd->rows, (int)Bd->cols, (int)Bd->ld), Bd->type) &&
           in_device(fn, "C", C, extent((int)Cd->rows, (int)Cd->cols, (int)Cd->ld), Cd->type) &&
           in_device(fn, "D", D, extent((int)Dd->rows, (int)Dd->cols, (int)Dd->ld), Dd->type) &&
           in_device(fn, "bias", d->bias, bias_n, bias_type(d, Dd));
}

// BGRADB: db[j] = Σ_l op(B)[l][j] in l order, fp32, from the operand as stored (not TF32-rounded).
std::vector<float> bias_grad_b(const Problem &pr, cublasLtMatmulDesc_t d, const void *B, cublasLtMatrixLayout_t Bd) {
    std::vector<float> bt = operand(B, Bd->type, (int)Bd->ld, d->tb == CUBLAS_OP_N, pr.n, pr.k, false);   // op(B)ᵀ [n][k]
    std::vector<float> g((size_t)pr.n, 0.f);
    for (int j = 0; j < pr.n; j++)
        for (int l = 0; l < pr.k; l++) g[(size_t)j] += bt[(size_t)j * pr.k + l];
    return g;
}

}   // namespace

namespace {

// The whole call: every check, then (run) the product. alpha and beta are host values.
cublasStatus_t matmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, float al, const void *A, cublasLtMatrixLayout_t Ad,
                      const void *B, cublasLtMatrixLayout_t Bd, float be, const void *C, cublasLtMatrixLayout_t Cd,
                      void *D, cublasLtMatrixLayout_t Dd, const cublasLtMatmulAlgo_t *algo, void *workspace,
                      size_t workspace_bytes, bool run) {
    const char *fn = "cublasLtMatmul";
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    Problem pr;
    if (!problem(fn, d, Ad, Bd, Cd, Dd, &pr)) return CUBLAS_STATUS_INVALID_VALUE;
    check_types(fn, d, Ad, Cd);
    if (!algo || algo->data[0] != ALGO_MAGIC || algo->data[1] != (uint64_t)pr.m || algo->data[2] != (uint64_t)pr.n ||
        algo->data[3] != (uint64_t)pr.k || algo->data[4] != stamp_ops(d) || algo->data[6] != stamp_types(Ad, Cd))
        cudasim::fail("%s: the algorithm was not found by the heuristic for this problem (%dx%dx%d, epilogue %u)", fn,
                      pr.m, pr.n, pr.k, (unsigned)d->epi);
    const char *names[4] = {"A", "B", "C", "D"};
    const void *ptrs[4] = {A, B, C, D};
    for (int i = 0; i < 4; i++) check_aligned(names[i], ptrs[i], (uint32_t)(algo->data[5] >> (16 * i) & 0xffff));
    if (workspace_bytes && !cudasim::device_range(workspace, workspace_bytes))
        cudasim::fail("%s: workspace = %p of %zu bytes is not inside one device allocation", fn, workspace, workspace_bytes);
    if (C != D && Cd->ld != Dd->ld) cudasim::fail("%s: C and D with different leading dimensions are not simulated", fn);
    if (!operands_in_device(pr, d, A, Ad, B, Bd, C, Cd, D, Dd)) return CUBLAS_STATUS_INVALID_VALUE;
    if (d->epi == CUBLASLT_EPILOGUE_BGRADB && al != 1.f) cudasim::fail("%s: BGRADB with alpha != 1 is not simulated", fn);
    if (!run) return CUBLAS_STATUS_SUCCESS;
    bool round = d->compute == CUBLAS_COMPUTE_32F_FAST_TF32;
    std::vector<float> a = operand(A, Ad->type, (int)Ad->ld, d->ta != CUBLAS_OP_N, pr.m, pr.k, round);   // op(A) [m][k]
    std::vector<float> bt = operand(B, Bd->type, (int)Bd->ld, d->tb == CUBLAS_OP_N, pr.n, pr.k, round);  // op(B)ᵀ [n][k]
    std::vector<float> bgrad;
    if (d->epi == CUBLASLT_EPILOGUE_BGRADB) bgrad = bias_grad_b(pr, d, B, Bd);
    const void *bias = d->epi == CUBLASLT_EPILOGUE_BIAS ? d->bias : nullptr;
    cudaDataType_t bias_t = bias_type(d, Dd);
    for (int j = 0; j < pr.n; j++)
        for (int i = 0; i < pr.m; i++) {
            float s = 0.f;
            const float *ar = &a[(size_t)i * pr.k], *br = &bt[(size_t)j * pr.k];
            for (int l = 0; l < pr.k; l++) s += ar[l] * br[l];
            size_t ci = (size_t)j * Dd->ld + i;
            float old = be == 0.f ? 0.f : elem(C, Cd->type, ci);   // beta = 0: C is not read (it may hold NaN)
            float v = al * s + be * old;
            if (bias) v += elem(bias, bias_t, i);   // added in fp32 after alpha·AB + beta·C, before the output is stored
            store(D, Dd->type, ci, v);        // a bf16 D: rounded once, to nearest even
        }
    if (!bgrad.empty()) memcpy(d->bias, bgrad.data(), bgrad.size() * sizeof(float));   // written, not accumulated
    return CUBLAS_STATUS_SUCCESS;
}

}   // namespace

// On a capturing stream: checked now, then recorded with copies of the descriptor, layouts,
// algorithm and scalars (a graph node holds what the call was given; the caller may destroy or
// change its descriptors right after, as linear.cu does).
cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t Ad, const void *B, cublasLtMatrixLayout_t Bd, const void *beta,
                              const void *C, cublasLtMatrixLayout_t Cd, void *D, cublasLtMatrixLayout_t Dd,
                              const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspace_bytes,
                              cudaStream_t stream) {
    bool record;
    if (cudasim::capture_gate(stream, "cublasLtMatmul", &record) != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
    float al = *(const float *)alpha, be = *(const float *)beta;
    cublasStatus_t st = matmul(h, d, al, A, Ad, B, Bd, be, C, Cd, D, Dd, algo, workspace, workspace_bytes, !record);
    if (!record || st != CUBLAS_STATUS_SUCCESS) return st;
    auto dc = std::make_shared<cublasLtMatmulDescOpaque_t>(*d);
    auto lay = std::make_shared<std::vector<cublasLtMatrixLayoutOpaque_t>>(
        std::vector<cublasLtMatrixLayoutOpaque_t>{*Ad, *Bd, *Cd, *Dd});
    cublasLtMatmulAlgo_t al_copy = *algo;
    cudasim::capture_record([=] {
        cublasLtMatrixLayoutOpaque_t *l = lay->data();
        if (matmul(h, dc.get(), al, A, &l[0], B, &l[1], be, C, &l[2], D, &l[3], &al_copy, workspace, workspace_bytes,
                   true) != CUBLAS_STATUS_SUCCESS)
            cudasim::fail("cublasLtMatmul replayed from a graph: an operand is no longer device memory");
    });
    return CUBLAS_STATUS_SUCCESS;
}

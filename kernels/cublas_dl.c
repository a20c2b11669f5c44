// cublas_dl.c: cuBLAS and cuBLASLt loaded when the CUDA backend first calls them, not when
// dcal starts. Why: linked normally, libcublasLt is mapped and initialised in every dcal
// process, CPU runs included: its static data (~84 MiB of .bss, which its initialisation
// touches) and touched code added ~140 MiB to a CPU run's peak RSS on some machines
// (bench/RESULTS.md, 2026-12-02). Each function the kernels call is defined here with the
// header's own prototype (the compiler checks it) and forwards to the library's symbol,
// looked up once. A missing library or symbol stops the run with one line naming it.
#include <dlfcn.h>
#include <pthread.h>
#include <cublasLt.h>
#include <cublas_v2.h>
#include "core/common.h"

#define STR2(x) #x
#define STR(x) STR2(x)   // after macro expansion: cublasCreate names cublasCreate_v2

static void *lib_blas, *lib_lt;
static pthread_once_t once = PTHREAD_ONCE_INIT;

// The soname of this toolkit's major version, from the loader's path, else the toolkit's lib
// directory (DCAL_CUDA_LIBDIR, set by CMakeLists.txt), where CMake found it at build time.
static void *open_lib(const char *name) {
    void *h = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
#ifdef DCAL_CUDA_LIBDIR
    if (!h) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", DCAL_CUDA_LIBDIR, name);
        h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    }
#endif
    if (!h) dcal_die("CUDA backend: cannot load %s (%s): the CUDA toolkit's cuBLAS is needed on a GPU", name, dlerror());
    return h;
}

static void load(void) {
    lib_lt = open_lib("libcublasLt.so." STR(CUBLAS_VER_MAJOR));
    lib_blas = open_lib("libcublas.so." STR(CUBLAS_VER_MAJOR));
}

static void *sym(int lt, const char *name) {
    pthread_once(&once, load);
    void *f = dlsym(lt ? lib_lt : lib_blas, name);
    if (!f) dcal_die("CUDA backend: %s has no %s", lt ? "libcublasLt" : "libcublas", name);
    return f;
}

// ret name(params) { return name_in_the_library(args); }, the pointer looked up on first use
// (a racing first call looks up and stores the same pointer).
#define FWD(lt, ret, name, params, args)                                              \
    ret CUBLASWINAPI name params {                                                    \
        static ret(*f) params;                                                        \
        ret(*g) params = __atomic_load_n(&f, __ATOMIC_ACQUIRE);                       \
        if (!g) {                                                                     \
            g = (ret(*) params)sym(lt, STR(name));                                    \
            __atomic_store_n(&f, g, __ATOMIC_RELEASE);                                \
        }                                                                             \
        return g args;                                                                \
    }

FWD(0, cublasStatus_t, cublasCreate, (cublasHandle_t * handle), (handle))
FWD(0, cublasStatus_t, cublasSetStream, (cublasHandle_t handle, cudaStream_t stream), (handle, stream))
FWD(0, const char *, cublasGetStatusString, (cublasStatus_t status), (status))
FWD(0, cublasStatus_t, cublasGetProperty, (libraryPropertyType type, int *value), (type, value))

FWD(1, cublasStatus_t, cublasLtCreate, (cublasLtHandle_t * handle), (handle))
FWD(1, size_t, cublasLtGetVersion, (void), ())
FWD(1, cublasStatus_t, cublasLtMatrixLayoutCreate,
    (cublasLtMatrixLayout_t * layout, cudaDataType type, uint64_t rows, uint64_t cols, int64_t ld),
    (layout, type, rows, cols, ld))
FWD(1, cublasStatus_t, cublasLtMatrixLayoutDestroy, (const cublasLtMatrixLayout_t layout), (layout))
FWD(1, cublasStatus_t, cublasLtMatmulDescCreate,
    (cublasLtMatmulDesc_t * desc, cublasComputeType_t compute, cudaDataType_t scale), (desc, compute, scale))
FWD(1, cublasStatus_t, cublasLtMatmulDescDestroy, (const cublasLtMatmulDesc_t desc), (desc))
FWD(1, cublasStatus_t, cublasLtMatmulDescSetAttribute,
    (cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const void *buf, size_t size),
    (desc, attr, buf, size))
FWD(1, cublasStatus_t, cublasLtMatmulPreferenceCreate, (cublasLtMatmulPreference_t * pref), (pref))
FWD(1, cublasStatus_t, cublasLtMatmulPreferenceDestroy, (const cublasLtMatmulPreference_t pref), (pref))
FWD(1, cublasStatus_t, cublasLtMatmulPreferenceSetAttribute,
    (cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, const void *buf, size_t size),
    (pref, attr, buf, size))
FWD(1, cublasStatus_t, cublasLtMatmulAlgoGetHeuristic,
    (cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
     cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d, cublasLtMatmulPreference_t pref, int requested,
     cublasLtMatmulHeuristicResult_t results[], int *returned),
    (handle, desc, a, b, c, d, pref, requested, results, returned))
FWD(1, cublasStatus_t, cublasLtMatmul,
    (cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
     cublasLtMatrixLayout_t a, const void *B, cublasLtMatrixLayout_t b, const void *beta, const void *C,
     cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t d, const cublasLtMatmulAlgo_t *algo,
     void *workspace, size_t workspace_bytes, cudaStream_t stream),
    (handle, desc, alpha, A, a, B, b, beta, C, c, D, d, algo, workspace, workspace_bytes, stream))

// device.cu: what the trainer and the run directory ask of the CUDA backend
// (backend.h "machine" slots): is a GPU there, how much memory is free, one line
// saying what runs (GPU, versions, numerics), and the precision switch.
//
// Precision is one process-wide choice, read by linear.cu (GEMM operand type)
// and attention.cu (kernel family) on every call; it is never read from the
// environment, so a run's numerics are exactly what its config and manifest say.
// One switch is, while it waits for a device run: DCAL_CUDA_ATTN picks the
// bf16 attention forward and backward (wmma, the default, or fa2: attention_fa2.cu
// and attention_fa2_bwd.cu). Both keep the same rounding contract, it is read
// once, and describe() names the kernels in force, so the manifest records them.
#include "kernels/cuda_common.h"
#include <cuda_bf16.h>
#include <string.h>

// Best first; index 0 is the default, in force until set_precision says otherwise.
// There is no TF32 mode: precision bf16 multiplies bf16 copies of the operands (8 significant
// bits, the dense bf16 tensor-core rate, twice TF32's on Hopper) and fp32 keeps fp32 operands;
// both accumulate in fp32 (CUBLAS_COMPUTE_32F) into fp32 outputs (linear.cu), except the Act
// tensors (backend.h), which precision bf16 stores in bf16: the GEMM that writes them rounds its
// fp32 result once (linear_forward_act), the attention and GELU that read them widen exactly.
// The rule is config_act_bytes' (src/config/config.h), so the planner counts the same bytes.
static const struct {
    const char *name;
    cudaDataType_t gemm_ab;   // the type of the GEMMs' A and B (linear.cu converts to it)
    const char *gemm_desc;
    bool attn_mma;
    const char *attn_desc;
    bool act_bf16;            // Act tensors hold __nv_bfloat16, else float
    const char *act_desc;
} g_prec[] = {
    {"bf16", CUDA_R_16BF,
     "GEMM cuBLASLt bf16 operands (bf16 activations; per-call copies of fp32 weights and gradients), "
     "fp32 accumulate "
     "(CUBLAS_COMPUTE_32F) and output, bias in the epilogue",
     true, "attention bf16 MMA with fp32 softmax", true,
     "activations bf16 (qkv, fc1, block inputs, GEMM inputs)"},
    {"fp32", CUDA_R_32F, "GEMM cuBLASLt fp32 (CUBLAS_COMPUTE_32F), bias in the epilogue", false,
     "attention fp32 kernels", false, "activations fp32"},
};
static int g_prec_i;

cudaDataType_t cuda_gemm_operands(void) { return g_prec[g_prec_i].gemm_ab; }
bool cuda_act_bf16(void) { return g_prec[g_prec_i].act_bf16; }
size_t cuda_act_bytes(void) { return g_prec[g_prec_i].act_bf16 ? sizeof(__nv_bfloat16) : sizeof(float); }

// The bf16 attention forward: 1 = fa2 (mma.sync, sm_80+), 0 = wmma; -1 until first asked.
static int g_attn_fa2 = -1;
static const char *g_attn_fwd_why = "";

static void read_attn_switch(void) {
    const char *e = getenv("DCAL_CUDA_ATTN");
    g_attn_fa2 = 0;
    if (!e || !*e || !strcmp(e, "wmma")) return;
    if (strcmp(e, "fa2")) {
        fprintf(stderr, "dcal: DCAL_CUDA_ATTN: unknown attention forward '%s' (use wmma or fa2)\n", e);
        exit(1);
    }
    int dev = 0;
    cudaDeviceProp prop;
    // mma.sync m16n8k16 bf16 and ldmatrix need sm_80; older GPUs keep the WMMA forward.
    bool old = cuda_device_count() > 0 && cudaGetDevice(&dev) == cudaSuccess &&
               cudaGetDeviceProperties(&prop, dev) == cudaSuccess && prop.major < 8;
    (void)cudaGetLastError();
    if (old) g_attn_fwd_why = " (fa2 asked, needs sm_80+)";
    else g_attn_fa2 = 1;
}

bool cuda_attention_fa2(void) {
    if (g_attn_fa2 < 0) read_attn_switch();
    return g_attn_fa2 == 1;
}
bool cuda_attention_mma(void) { return g_prec[g_prec_i].attn_mma; }

int cuda_set_precision(const char *p) {
    for (int i = 0; i < (int)(sizeof g_prec / sizeof g_prec[0]); i++)
        if (!strcmp(p, g_prec[i].name)) {
            g_prec_i = i;
            return 1;
        }
    return 0;
}

// train.attention: dcal's kernels (false, the default) or cuDNN's fused SDPA (attention_cudnn.cu).
static bool g_attn_cudnn;
bool cuda_attention_cudnn(void) { return g_attn_cudnn; }

int cuda_set_attention(const char *impl, char *why, size_t n) {
    if (!strcmp(impl, "dcal")) return g_attn_cudnn = false, 1;
    if (!strcmp(impl, "cudnn")) {
        if (!cudnn_attention_open(why, n)) return 0;
        return g_attn_cudnn = true, 1;
    }
    snprintf(why, n, "unknown attention '%s' (dcal or cudnn)", impl);
    return 0;
}

extern "C" int cuda_device_count(void) {
    // No driver or no GPU is an answer (0), not an error: the caller falls back to CPU.
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();   // clear the error so later calls start clean
        return 0;
    }
    return n;
}

extern "C" size_t cuda_free_memory(void) {
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return free_b;
}

int cuda_available(char *why, size_t n) {
    if (cuda_device_count() > 0) {
        if (n) why[0] = 0;
        return 1;
    }
    // The registry's message reads "device 'cuda' requested but <why> (use ...)".
    snprintf(why, n, "no CUDA GPU is available");
    return 0;
}

// "major.minor" of a CUDA version number (1000*major + 10*minor); 0 (no driver) is "none".
static void version(char *out, size_t n, int v) {
    if (v) snprintf(out, n, "%d.%d", v / 1000, v % 1000 / 10);
    else snprintf(out, n, "none");
}

void cuda_describe(char *buf, size_t n) {
    int rt = 0, drv = 0, blas[3] = {0, 0, 0}, dev = 0;
    char srt[16], sdrv[16], gpu[300] = "no CUDA GPU";
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    version(srt, sizeof srt, rt);
    version(sdrv, sizeof sdrv, drv);
    cublasGetProperty(MAJOR_VERSION, &blas[0]);
    cublasGetProperty(MINOR_VERSION, &blas[1]);
    cublasGetProperty(PATCH_LEVEL, &blas[2]);
    cudaDeviceProp prop;
    if (cuda_device_count() > 0 && cudaGetDevice(&dev) == cudaSuccess &&
        cudaGetDeviceProperties(&prop, dev) == cudaSuccess)
        snprintf(gpu, sizeof gpu, "%s (sm_%d%d, %.1f GiB)", prop.name, prop.major, prop.minor,
                 prop.totalGlobalMem / 1073741824.0);
    (void)cudaGetLastError();
    // cuBLASLt runs the GEMMs (linear.cu); its version is major*10000 + minor*100 + patch.
    size_t lt = cublasLtGetVersion();
    char fwd[96] = "", attn[160];
    if (g_prec[g_prec_i].attn_mma)
        snprintf(fwd, sizeof fwd, ", forward %s%s (DCAL_CUDA_ATTN)",
                 cuda_attention_fa2() ? "fa2 mma.sync m16n8k16, backward fa2 mma.sync" : "wmma, backward wmma",
                 g_attn_fwd_why);
    if (g_attn_cudnn) cudnn_attention_describe(attn, sizeof attn);
    else snprintf(attn, sizeof attn, "%s%s", g_prec[g_prec_i].attn_desc, fwd);
    // graphs: whether each micro-batch's body is recorded and replayed (graph.cu, DCAL_CUDA_GRAPHS).
    snprintf(buf, n, "cuda: %s; CUDA runtime %s, driver %s, cuBLAS %d.%d.%d, cuBLASLt %zu.%zu.%zu; precision %s: %s, %s, %s; graphs %s",
             gpu, srt, sdrv, blas[0], blas[1], blas[2], lt / 10000, lt / 100 % 100, lt % 100, g_prec[g_prec_i].name,
             g_prec[g_prec_i].gemm_desc, attn, g_prec[g_prec_i].act_desc, cuda_graphs_enabled() ? "on" : "off");
}

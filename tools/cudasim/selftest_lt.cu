// selftest_lt.cu: the simulator's cuBLASLt model (ctest sim_selftest_lt): the products and
// epilogues linear.cu uses against scalar loops, bit for bit, linear.cu's own forward and bf16
// backward through it, and the misuses the model refuses (an epilogue or type combination it
// does not simulate, an algorithm of another problem, a misaligned operand). Written as CUDA
// and translated by cu2cpp.pl like kernels/*.cu.
#include <cuda_runtime.h>
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <math.h>
#include <string.h>
#include <vector>
#include "kernels/cuda_common.h"
#include "tools/cudasim/selftest.h"

// ---- cuBLASLt ----
// fp32 → bf16 → fp32 (8 significant bits, nearest even), as precision bf16's GEMMs read operands.
static float bf16r(float f) { return __bfloat162float(__float2bfloat16(f)); }
struct Lt {
    cublasLtHandle_t h;
    cublasLtMatmulDesc_t d;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulPreference_t p;
    cublasLtMatmulHeuristicResult_t r;
    int found;
};
// D [m×n] (= C, in place) = op(A) op(B) + beta·D with epilogue e; layouts as stored; A and B
// of type ab, C/D of type cd, accumulating in `compute`; the bias type set when bias_t >= 0.
static cublasStatus_t lt_plan_typed(Lt *l, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                    cublasLtEpilogue_t e, void *bias, cudaDataType_t ab, cudaDataType_t cd,
                                    cublasComputeType_t compute, int32_t bias_t = -1) {
    int32_t t_a = ta, t_b = tb;
    uint32_t epi = e;
    cublasLtCreate(&l->h);
    cublasLtMatmulDescCreate(&l->d, compute, CUDA_R_32F);
    cublasLtMatmulDescSetAttribute(l->d, CUBLASLT_MATMUL_DESC_TRANSA, &t_a, sizeof t_a);
    cublasLtMatmulDescSetAttribute(l->d, CUBLASLT_MATMUL_DESC_TRANSB, &t_b, sizeof t_b);
    cublasLtMatmulDescSetAttribute(l->d, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    if (bias) cublasLtMatmulDescSetAttribute(l->d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    if (bias_t >= 0) cublasLtMatmulDescSetAttribute(l->d, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_t, sizeof bias_t);
    cublasLtMatrixLayoutCreate(&l->a, ab, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, ta == CUBLAS_OP_N ? m : k);
    cublasLtMatrixLayoutCreate(&l->b, ab, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, tb == CUBLAS_OP_N ? k : n);
    cublasLtMatrixLayoutCreate(&l->c, cd, m, n, m);
    cublasLtMatmulPreferenceCreate(&l->p);
    return cublasLtMatmulAlgoGetHeuristic(l->h, l->d, l->a, l->b, l->c, l->c, l->p, 1, &l->r, &l->found);
}
static cublasStatus_t lt_plan(Lt *l, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, cublasLtEpilogue_t e,
                              void *bias) {
    return lt_plan_typed(l, ta, tb, m, n, k, e, bias, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F);
}
static void lt_free(Lt *l) {
    cublasLtMatmulPreferenceDestroy(l->p);
    cublasLtMatrixLayoutDestroy(l->a), cublasLtMatrixLayoutDestroy(l->b), cublasLtMatrixLayoutDestroy(l->c);
    cublasLtMatmulDescDestroy(l->d);
    cublasLtDestroy(l->h);
}

// The linear layer's two products: out^T = W^T-view · inp^T + bias (BIAS, A transposed) and
// dW^T += inp^T · dout with db from the epilogue (BGRADB, B transposed), against scalar loops.
static void test_lt(void) {
    const int R = 5, I = 3, O = 4;   // rows, in features, out features
    float x[R * I], w[O * I], b[O], g[R * O], out[R * O], dw[O * I], db[O];
    for (int i = 0; i < R * I; i++) x[i] = sinf(i * 0.7f) * 3;
    for (int i = 0; i < O * I; i++) w[i] = cosf(i * 0.3f), dw[i] = 0.25f * i;
    for (int i = 0; i < O; i++) b[i] = 10.f + i, db[i] = NAN;
    for (int i = 0; i < R * O; i++) g[i] = (float)((i * 7) % 5) - 1.5f;
    float *dx = dev(x, R * I), *dwt = dev(w, O * I), *dbias = dev(b, O), *dg = dev(g, R * O), *dout = dev<float>(nullptr, R * O);
    float *ddw = dev(dw, O * I), *ddb = dev(db, O), one = 1.f, zero = 0.f;
    Lt l;
    CHECK(lt_plan(&l, CUBLAS_OP_T, CUBLAS_OP_N, O, R, I, CUBLASLT_EPILOGUE_BIAS, dbias) == CUBLAS_STATUS_SUCCESS && l.found == 1,
          "BIAS heuristic");
    CHECK(cublasLtMatmul(l.h, l.d, &one, dwt, l.a, dx, l.b, &zero, dout, l.c, dout, l.c, &l.r.algo, nullptr, 0, 0) ==
              CUBLAS_STATUS_SUCCESS, "BIAS matmul");
    lt_free(&l);
    cudaMemcpy(out, dout, sizeof out, cudaMemcpyDeviceToHost);
    for (int r = 0; r < R; r++)
        for (int o = 0; o < O; o++) {
            float s = 0.f;
            for (int i = 0; i < I; i++) s += w[o * I + i] * x[r * I + i];
            CHECK(out[r * O + o] == s + b[o], "BIAS out[%d,%d] = %g, want %g", r, o, out[r * O + o], s + b[o]);
        }
    CHECK(lt_plan(&l, CUBLAS_OP_N, CUBLAS_OP_T, I, O, R, CUBLASLT_EPILOGUE_BGRADB, ddb) == CUBLAS_STATUS_SUCCESS && l.found == 1,
          "BGRADB heuristic");
    CHECK(cublasLtMatmul(l.h, l.d, &one, dx, l.a, dg, l.b, &one, ddw, l.c, ddw, l.c, &l.r.algo, nullptr, 0, 0) ==
              CUBLAS_STATUS_SUCCESS, "BGRADB matmul");
    lt_free(&l);
    float got_dw[O * I], got_db[O];
    cudaMemcpy(got_dw, ddw, sizeof got_dw, cudaMemcpyDeviceToHost);
    cudaMemcpy(got_db, ddb, sizeof got_db, cudaMemcpyDeviceToHost);
    for (int o = 0; o < O; o++) {
        float s = 0.f;   // the epilogue writes db (the NaN it held is gone), it does not add to it
        for (int r = 0; r < R; r++) s += g[r * O + o];
        CHECK(got_db[o] == s, "BGRADB db[%d] = %g, want %g", o, got_db[o], s);
        for (int i = 0; i < I; i++) {
            float t = 0.f;
            for (int r = 0; r < R; r++) t += x[r * I + i] * g[r * O + o];
            CHECK(got_dw[o * I + i] == t + dw[o * I + i], "BGRADB dw[%d,%d] = %g, want %g", o, i, got_dw[o * I + i],
                  t + dw[o * I + i]);
        }
    }
    // A refused epilogue: no algorithm, as a library without one for these types answers.
    cudasim_lt_refuse_epilogues(CUBLASLT_EPILOGUE_BGRADB);
    CHECK(lt_plan(&l, CUBLAS_OP_N, CUBLAS_OP_T, I, O, R, CUBLASLT_EPILOGUE_BGRADB, ddb) == CUBLAS_STATUS_NOT_SUPPORTED &&
              l.found == 0, "refused BGRADB still found an algorithm");
    lt_free(&l);
    cudasim_lt_refuse_epilogues(0);
    cudaFree(dx), cudaFree(dwt), cudaFree(dbias), cudaFree(dg), cudaFree(dout), cudaFree(ddw), cudaFree(ddb);
}

// x's n values as a device Act at the precision in force (bf16: rounded, which the references'
// bf16r(x) repeat), starting `skew` elements into its allocation (1: not 16-byte aligned, so
// linear.cu pads a copy instead of reading it in place). The allocation is *base, for cudaFree.
static const Act *act_dev(const float *x, size_t n, int skew, void **base) {
    float *f = dev(x, n);
    size_t eb = cuda_act_bytes();
    char *a = (char *)dev<char>(nullptr, (n + skew) * eb);
    cuda_act_from_f32((Act *)(a + skew * eb), f, n);
    cudaFree(f);
    *base = a;
    return (const Act *)(a + skew * eb);
}

// linear.cu's forward with the BIAS epilogue and, with that epilogue refused, its fallback
// (the product, then add_bias_kernel): both against the scalar product plus bias, bit for bit
// (the sum is in k order either way). The runs differ in rows, so linear.cu's algorithm
// cache cannot answer the second from the first.
static void test_linear_fallback(void) {
    const int R = 40, I = 9, O = 6;
    std::vector<float> x(R * I), w(O * I), b(O), out(R * O);
    for (int i = 0; i < R * I; i++) x[i] = sinf(i * 0.37f);
    for (int i = 0; i < O * I; i++) w[i] = cosf(i * 0.11f);
    for (int i = 0; i < O; i++) b[i] = 100.f + i;
    void *xbase;
    const Act *dx = act_dev(x.data(), R * I, 0, &xbase);   // I = 9: rows of 18 bytes, a padded copy
    float *dw_ = dev(w.data(), O * I), *db = dev(b.data(), O);
    for (int refuse = 0; refuse < 2; refuse++) {
        int rows = R - refuse;
        float *dout = dev<float>(nullptr, R * O);
        cudasim_lt_refuse_epilogues(refuse ? CUBLASLT_EPILOGUE_BIAS : 0);
        cuda_linear_forward(dout, dx, dw_, db, rows, I, O);
        int refused = cudasim_lt_refuse_epilogues(0);
        CHECK(refused == refuse, "linear forward: %d BIAS queries refused, want %d", refused, refuse);
        cudaMemcpy(out.data(), dout, (size_t)rows * O * sizeof(float), cudaMemcpyDeviceToHost);
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < O; o++) {
                float s = 0.f;
                for (int i = 0; i < I; i++) s += bf16r(w[o * I + i]) * bf16r(x[r * I + i]);
                CHECK(out[r * O + o] == s + b[o], "linear out[%d,%d] (%s) = %.9g, want %.9g", r, o,
                      refuse ? "add-bias fallback" : "BIAS epilogue", out[r * O + o], s + b[o]);
            }
        cudaFree(dout);
    }
    cudaFree(xbase), cudaFree(dw_), cudaFree(db);
}

// precision bf16's product: bf16 A/B (A transposed, as the linear forward's W view), fp32 C/D,
// compute 32F, the fp32 BIAS epilogue, beta = 0 over NaN; against a scalar loop over the
// bf16-rounded operands (exact products, fp32 sum in k order, then the bias), bit for bit.
static void test_lt_bf16(void) {
    const int R = 7, I = 19, O = 5;
    std::vector<__nv_bfloat16> x(R * I), w(O * I);
    std::vector<float> b(O), out(R * O);
    for (int i = 0; i < R * I; i++) x[i] = __float2bfloat16(sinf(i * 0.71f) * 2.3f);
    for (int i = 0; i < O * I; i++) w[i] = __float2bfloat16(cosf(i * 0.29f) * 1.7f);
    for (int i = 0; i < O; i++) b[i] = 3.f + 0.1f * i;
    __nv_bfloat16 *dx = dev(x.data(), R * I), *dw_ = dev(w.data(), O * I);
    float *dbias = dev(b.data(), O), *dout = dev<float>(nullptr, R * O), one = 1.f, zero = 0.f;
    Lt l;
    CHECK(lt_plan_typed(&l, CUBLAS_OP_T, CUBLAS_OP_N, O, R, I, CUBLASLT_EPILOGUE_BIAS, dbias, CUDA_R_16BF, CUDA_R_32F,
                        CUBLAS_COMPUTE_32F) == CUBLAS_STATUS_SUCCESS && l.found == 1, "bf16 BIAS heuristic");
    CHECK(cublasLtMatmul(l.h, l.d, &one, dw_, l.a, dx, l.b, &zero, dout, l.c, dout, l.c, &l.r.algo, nullptr, 0, 0) ==
              CUBLAS_STATUS_SUCCESS, "bf16 BIAS matmul");
    lt_free(&l);
    cudaMemcpy(out.data(), dout, R * O * sizeof(float), cudaMemcpyDeviceToHost);
    for (int r = 0; r < R; r++)
        for (int o = 0; o < O; o++) {
            float s = 0.f;
            for (int i = 0; i < I; i++) s += __bfloat162float(w[o * I + i]) * __bfloat162float(x[r * I + i]);
            CHECK(out[r * O + o] == s + b[o], "bf16 BIAS out[%d,%d] = %.9g, want %.9g", r, o, out[r * O + o], s + b[o]);
        }
    cudaFree(dx), cudaFree(dw_), cudaFree(dbias), cudaFree(dout);
}

// A bf16 D (bf16 A/B and C, compute 32F, the BIAS epilogue with the bias of D's type left to
// the default, beta = 0 over NaN): D = RNE_bf16(A·B + bias), by hand. op(A) rows [16, 1] and
// [16, 2], op(B) columns [16, 1] and [16, 1.5], bias [0, 1]: the fp32 sums 257, 257.5, 259, 260
// (exact) lie where bf16's spacing is 2, so 257 is a tie that goes down to the even 256, 259 a
// tie that goes up to the even 260, 257.5 rounds to the nearer 258, 260 stays.
static void test_lt_bf16_out(void) {
    const float a[4] = {16, 16, 1, 2}, b[4] = {16, 1, 16, 1.5f}, bias[2] = {0, 1};   // column-major A [2×2], B [2×2]
    const float want[4] = {256, 260, 258, 260};                                          // column-major D
    __nv_bfloat16 ha[4], hb[4], hbias[2], hd[4];
    for (int i = 0; i < 4; i++) ha[i] = __float2bfloat16(a[i]), hb[i] = __float2bfloat16(b[i]);
    for (int i = 0; i < 4; i++) hd[i] = __float2bfloat16(NAN);
    for (int i = 0; i < 2; i++) hbias[i] = __float2bfloat16(bias[i]);
    __nv_bfloat16 *da = dev(ha, 4), *db = dev(hb, 4), *dbias = dev(hbias, 2), *dd = dev(hd, 4);
    float one = 1.f, zero = 0.f;
    Lt l;
    CHECK(lt_plan_typed(&l, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, CUBLASLT_EPILOGUE_BIAS, dbias, CUDA_R_16BF, CUDA_R_16BF,
                        CUBLAS_COMPUTE_32F) == CUBLAS_STATUS_SUCCESS && l.found == 1, "bf16 D heuristic");
    CHECK(cublasLtMatmul(l.h, l.d, &one, da, l.a, db, l.b, &zero, dd, l.c, dd, l.c, &l.r.algo, nullptr, 0, 0) ==
              CUBLAS_STATUS_SUCCESS, "bf16 D matmul");
    lt_free(&l);
    cudaMemcpy(hd, dd, sizeof hd, cudaMemcpyDeviceToHost);
    for (int i = 0; i < 4; i++)
        CHECK(__bfloat162float(hd[i]) == want[i], "bf16 D[%d] = %.9g, want %.9g", i, __bfloat162float(hd[i]), want[i]);
    cudaFree(da), cudaFree(db), cudaFree(dbias), cudaFree(dd);
}

// linear.cu's linear_forward_act (the Act output of qkv and fc1) at precision bf16, through the
// BIAS epilogue on a bf16 D and, with that epilogue refused, its fallback (fp32 product in
// scratch, add_bias_bf16_kernel): both against RNE_bf16(Σ bf16(w)·bf16(x) in k order + bf16(b)),
// bit for bit; the bias starts one float into its allocation (fc1's and qkv's views need not
// be aligned). Then at precision fp32 the Act is the fp32 linear_forward, bit for bit.
static void test_linear_forward_act(void) {
    const int R = 23, I = 13, O = 10;
    std::vector<float> x(R * I), w(O * I), b(O + 1), ref(R * O);
    for (int i = 0; i < R * I; i++) x[i] = sinf(i * 0.41f) * 1.3f;
    for (int i = 0; i < O * I; i++) w[i] = cosf(i * 0.23f);
    for (int i = 0; i <= O; i++) b[i] = 0.37f * i - 1.f;
    void *xbase;
    const Act *dx = act_dev(x.data(), R * I, 0, &xbase);
    float *dw_ = dev(w.data(), O * I), *db = dev(b.data(), O + 1);
    std::vector<__nv_bfloat16> got(R * O);
    for (int refuse = 0; refuse < 2; refuse++) {
        int rows = R - refuse;   // another problem, so the algorithm cache cannot answer from the first run
        __nv_bfloat16 *dout = dev<__nv_bfloat16>(nullptr, R * O);
        cudasim_lt_refuse_epilogues(refuse ? CUBLASLT_EPILOGUE_BIAS : 0);
        cuda_linear_forward_act((Act *)dout, dx, dw_, db + 1, rows, I, O);
        int refused = cudasim_lt_refuse_epilogues(0);
        CHECK(refused == refuse, "linear_forward_act: %d BIAS queries refused, want %d", refused, refuse);
        cudaMemcpy(got.data(), dout, (size_t)rows * O * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost);
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < O; o++) {
                float s = 0.f;
                for (int i = 0; i < I; i++) s += bf16r(w[o * I + i]) * bf16r(x[r * I + i]);
                float want = bf16r(s + bf16r(b[o + 1])), g = __bfloat162float(got[r * O + o]);
                CHECK(g == want, "linear_forward_act out[%d,%d] (%s) = %.9g, want %.9g", r, o,
                      refuse ? "add-bias fallback" : "BIAS epilogue, bf16 D", g, want);
            }
        cudaFree(dout);
    }
    CHECK(cuda_set_precision("fp32") && cuda_act_bytes() == 4 && !cuda_act_bf16(), "precision fp32: 4-byte Act");
    void *x32base;
    const Act *dx32 = act_dev(x.data(), R * I, 0, &x32base);   // fp32 now: the values themselves
    float *dact = dev<float>(nullptr, R * O), *dref = dev<float>(nullptr, R * O);
    cuda_linear_forward_act((Act *)dact, dx32, dw_, db + 1, R, I, O);
    cuda_linear_forward(dref, dx32, dw_, db + 1, R, I, O);
    std::vector<float> act(R * O);
    cudaMemcpy(act.data(), dact, R * O * sizeof(float), cudaMemcpyDeviceToHost);
    cudaMemcpy(ref.data(), dref, R * O * sizeof(float), cudaMemcpyDeviceToHost);
    CHECK(!memcmp(act.data(), ref.data(), R * O * sizeof(float)), "precision fp32: linear_forward_act != linear_forward");
    CHECK(cuda_set_precision("bf16") && cuda_act_bytes() == 2 && cuda_act_bf16(), "precision bf16: 2-byte Act");
    cudaFree(xbase), cudaFree(x32base), cudaFree(dw_), cudaFree(db), cudaFree(dact), cudaFree(dref);
}

// The Act conversions and the GELU on an Act at precision bf16: act_from_f32 rounds to nearest
// even (1 + 2^-8 is a tie that goes down to 1, 1 + 3·2^-8 one that goes up to 1 + 2^-6), act_to_f32
// widens exactly, and the GELU forward and backward of a bf16 Act give the bits of the same op on
// its widened fp32 values at precision fp32 (the arithmetic after the load is the same).
static void test_act_storage(void) {
    const int n = 300;
    std::vector<float> x(n), back(n), y16(n), y32(n), g(n), d16(n, 0.5f), d32(n, 0.5f);
    x[0] = 1.f + 1.f / 256, x[1] = 1.f + 3.f / 256, x[2] = -3.f - 1.f / 64;   // two ties, and 3.015625 exact
    for (int i = 3; i < n; i++) x[i] = sinf(i * 0.13f) * 4.f;
    for (int i = 0; i < n; i++) g[i] = cosf(i * 0.7f);
    float *dx = dev(x.data(), n), *dback = dev<float>(nullptr, n), *dy = dev<float>(nullptr, n), *dg = dev(g.data(), n);
    float *dd = dev(d16.data(), n);
    __nv_bfloat16 *act = dev<__nv_bfloat16>(nullptr, n), *act16y = dev<__nv_bfloat16>(nullptr, n);
    cuda_act_from_f32((Act *)act, dx, n);
    cuda_act_to_f32(dback, (const Act *)act, n);
    cudaMemcpy(back.data(), dback, n * sizeof(float), cudaMemcpyDeviceToHost);
    CHECK(back[0] == 1.f && back[1] == 1.f + 1.f / 64 && back[2] == -3.f - 1.f / 64,
          "act_from_f32 ties: %.9g %.9g %.9g, want 1 1.015625 -3.015625", back[0], back[1], back[2]);
    for (int i = 0; i < n; i++) CHECK(back[i] == bf16r(x[i]), "act round trip [%d] = %.9g, want %.9g", i, back[i], bf16r(x[i]));
    // The forward's output is an Act too (fc2's input): read back widened.
    cuda_gelu_forward((Act *)act16y, (const Act *)act, n);
    cuda_act_to_f32(dy, (const Act *)act16y, n);
    cuda_gelu_backward(dd, (const Act *)act, dg, n);
    cudaMemcpy(y16.data(), dy, n * sizeof(float), cudaMemcpyDeviceToHost);
    cudaMemcpy(d16.data(), dd, n * sizeof(float), cudaMemcpyDeviceToHost);
    cuda_set_precision("fp32");   // the Act is now fp32: feed it the widened values
    float *dd32 = dev(d32.data(), n);
    cuda_gelu_forward((Act *)dy, (const Act *)dback, n);
    cuda_gelu_backward(dd32, (const Act *)dback, dg, n);
    cuda_set_precision("bf16");
    cudaMemcpy(y32.data(), dy, n * sizeof(float), cudaMemcpyDeviceToHost);
    for (int i = 0; i < n; i++) y32[i] = bf16r(y32[i]);   // the bf16 Act's one rounding of the same value
    cudaMemcpy(d32.data(), dd32, n * sizeof(float), cudaMemcpyDeviceToHost);
    CHECK(!memcmp(y16.data(), y32.data(), n * sizeof(float)), "gelu_forward on a bf16 Act != on its fp32 values");
    CHECK(!memcmp(d16.data(), d32.data(), n * sizeof(float)), "gelu_backward on a bf16 Act != on its fp32 values");
    CHECK(y16[0] == bf16r(0.5f * back[0] * (1.f + erff(back[0] * 0.70710678118654752f))), "gelu(1) = %.9g", y16[0]);
    cudaFree(dx), cudaFree(dback), cudaFree(dy), cudaFree(dg), cudaFree(dd), cudaFree(dd32), cudaFree(act);
    cudaFree(act16y);
}

// linear.cu's backward at precision bf16 (the default): dinp and dW += products of the bf16
// copies of dout, W and inp (beta = 1 onto the fp32 gradients), db by the fp32 column sum,
// against scalar loops bit for bit. dout (78 floats) and W (66) are 16-byte aligned: vector
// path plus a scalar tail; inp, a bf16 Act, starts one element into its allocation: padded copy.
static void test_linear_bf16_backward(void) {
    const int R = 13, I = 11, O = 6;
    std::vector<float> x(R * I + 1), w(O * I), g(R * O), di(R * I), dw(O * I), db(O);
    for (int i = 0; i < R * I + 1; i++) x[i] = sinf(i * 0.53f) * 1.9f;
    for (int i = 0; i < O * I; i++) w[i] = cosf(i * 0.17f), dw[i] = 0.01f * i;
    for (int i = 0; i < R * O; i++) g[i] = sinf(i * 1.3f + 0.2f);
    for (int i = 0; i < R * I; i++) di[i] = -0.5f + 0.003f * i;
    for (int i = 0; i < O; i++) db[i] = 1.f + i;
    void *xbase;
    const Act *dx = act_dev(x.data() + 1, R * I, 1, &xbase);   // one element in: not 16-byte aligned
    float *dw_ = dev(w.data(), O * I), *dg = dev(g.data(), R * O);
    float *ddi = dev(di.data(), R * I), *ddw = dev(dw.data(), O * I), *ddb = dev(db.data(), O);
    cuda_linear_backward(ddi, ddw, ddb, dg, dx, dw_, R, I, O);
    std::vector<float> got_di(R * I), got_dw(O * I), got_db(O);
    cudaMemcpy(got_di.data(), ddi, R * I * sizeof(float), cudaMemcpyDeviceToHost);
    cudaMemcpy(got_dw.data(), ddw, O * I * sizeof(float), cudaMemcpyDeviceToHost);
    cudaMemcpy(got_db.data(), ddb, O * sizeof(float), cudaMemcpyDeviceToHost);
    const float *xi = x.data() + 1;
    for (int r = 0; r < R; r++)
        for (int i = 0; i < I; i++) {
            float s = 0.f;
            for (int o = 0; o < O; o++) s += bf16r(g[r * O + o]) * bf16r(w[o * I + i]);
            CHECK(got_di[r * I + i] == s + di[r * I + i], "bf16 linear dinp[%d,%d] = %.9g, want %.9g", r, i,
                  got_di[r * I + i], s + di[r * I + i]);
        }
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) {
            float s = 0.f;
            for (int r = 0; r < R; r++) s += bf16r(xi[r * I + i]) * bf16r(g[r * O + o]);
            CHECK(got_dw[o * I + i] == s + dw[o * I + i], "bf16 linear dW[%d,%d] = %.9g, want %.9g", o, i,
                  got_dw[o * I + i], s + dw[o * I + i]);
        }
    for (int o = 0; o < O; o++) {
        float s = 0.f;   // fp32 dout, not its bf16 copy: db is not a GEMM
        for (int r = 0; r < R; r++) s += g[r * O + o];
        CHECK(fabsf(got_db[o] - (s + db[o])) <= 1e-5f * (1.f + fabsf(s)), "bf16 linear db[%d] = %.9g, want %.9g", o,
              got_db[o], s + db[o]);
    }
    // linear_backward_set: dinp written (beta 0), whatever it held; dW still accumulates.
    cudaMemcpy(ddi, di.data(), R * I * sizeof(float), cudaMemcpyHostToDevice);
    cuda_linear_backward_set(ddi, NULL, NULL, dg, dx, dw_, R, I, O);
    cudaMemcpy(got_di.data(), ddi, R * I * sizeof(float), cudaMemcpyDeviceToHost);
    for (int r = 0; r < R; r++)
        for (int i = 0; i < I; i++) {
            float s = 0.f;
            for (int o = 0; o < O; o++) s += bf16r(g[r * O + o]) * bf16r(w[o * I + i]);
            CHECK(got_di[r * I + i] == s, "bf16 linear_backward_set dinp[%d,%d] = %.9g, want %.9g", r, i,
                  got_di[r * I + i], s);
        }
    cudaFree(xbase), cudaFree(dw_), cudaFree(dg), cudaFree(ddi), cudaFree(ddw), cudaFree(ddb);
}

static void run_lt_gelu(void) {
    cublasLtMatmulDesc_t d;
    uint32_t e = CUBLASLT_EPILOGUE_GELU_BIAS;
    cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e);
}
static void run_lt_wrong_algo(void) {
    float *p = dev<float>(nullptr, 64), one = 1.f;
    Lt l, l2;
    lt_plan(&l, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, CUBLASLT_EPILOGUE_DEFAULT, nullptr);
    lt_plan(&l2, CUBLAS_OP_N, CUBLAS_OP_N, 4, 2, 4, CUBLASLT_EPILOGUE_DEFAULT, nullptr);
    cublasLtMatmul(l.h, l.d, &one, p, l.a, p, l.b, &one, p, l.c, p, l.c, &l2.r.algo, nullptr, 0, 0);
}
static void run_lt_bf16_tf32(void) {
    Lt l;   // bf16 operands under FAST_TF32: no such cuBLASLt kernel, not simulated
    lt_plan_typed(&l, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, CUBLASLT_EPILOGUE_DEFAULT, nullptr, CUDA_R_16BF, CUDA_R_32F,
                  CUBLAS_COMPUTE_32F_FAST_TF32);
}
static void run_lt_fp32_into_bf16(void) {
    Lt l;   // fp32 A/B into a bf16 D: dcal never asks for it (bf16 D comes with bf16 operands); not modelled
    lt_plan_typed(&l, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, CUBLASLT_EPILOGUE_DEFAULT, nullptr, CUDA_R_32F, CUDA_R_16BF,
                  CUBLAS_COMPUTE_32F);
}
static void run_lt_fp32_bias_bf16_out(void) {
    float *b = dev<float>(nullptr, 4);
    Lt l;   // an fp32 bias with a bf16 D: cublasLt.h gives a bias D's type; not modelled
    lt_plan_typed(&l, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, CUBLASLT_EPILOGUE_BIAS, b, CUDA_R_16BF, CUDA_R_16BF,
                  CUBLAS_COMPUTE_32F, CUDA_R_32F);
}
static void run_lt_algo_other_types(void) {
    __nv_bfloat16 *p = dev<__nv_bfloat16>(nullptr, 64);
    float *c = dev<float>(nullptr, 64), one = 1.f;
    Lt l, l32;   // an fp32 problem's algorithm run on the same shapes in bf16 (a cache key without the type)
    lt_plan_typed(&l, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, CUBLASLT_EPILOGUE_DEFAULT, nullptr, CUDA_R_16BF, CUDA_R_32F,
                  CUBLAS_COMPUTE_32F);
    lt_plan(&l32, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, CUBLASLT_EPILOGUE_DEFAULT, nullptr);
    cublasLtMatmul(l.h, l.d, &one, p, l.a, p, l.b, &one, c, l.c, c, l.c, &l32.r.algo, nullptr, 0, 0);
}
static void run_lt_misaligned(void) {
    float *p = dev<float>(nullptr, 64), one = 1.f;
    Lt l;
    lt_plan(&l, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, CUBLASLT_EPILOGUE_DEFAULT, nullptr);   // alignment left at 256
    cublasLtMatmul(l.h, l.d, &one, p + 1, l.a, p, l.b, &one, p + 32, l.c, p + 32, l.c, &l.r.algo, nullptr, 0, 0);
}

int main(void) {
    test_lt();
    test_linear_fallback();
    test_lt_bf16();
    test_lt_bf16_out();
    test_linear_forward_act();
    test_act_storage();
    test_linear_bf16_backward();
    expect_death("cuBLASLt GELU epilogue", run_lt_gelu, "epilogue 36 is not simulated");
    expect_death("cuBLASLt algorithm of another problem", run_lt_wrong_algo, "was not found by the heuristic for this problem");
    expect_death("cuBLASLt misaligned A", run_lt_misaligned, "is not 256-byte aligned");
    expect_death("cuBLASLt bf16 A/B under FAST_TF32", run_lt_bf16_tf32, "with compute type 77 is not simulated");
    expect_death("cuBLASLt fp32 A/B into a bf16 D", run_lt_fp32_into_bf16,
                 "A/B type 0, C/D type 14 with compute type 68 is not simulated");
    expect_death("cuBLASLt fp32 bias with a bf16 D", run_lt_fp32_bias_bf16_out,
                 "a bias vector of type 0 with D of type 14 is not simulated");
    expect_death("cuBLASLt fp32 algorithm run on bf16", run_lt_algo_other_types, "was not found by the heuristic for this problem");
    printf("%s\n", g_fail ? "sim_selftest_lt: FAILED" : "sim_selftest_lt: all checks passed");
    return g_fail;
}

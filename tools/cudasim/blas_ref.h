// blas_ref.h: the reference-GEMM pieces cublas.cpp and cublaslt.cpp share (cudasim internal).
#pragma once
#include <stdint.h>
#include <vector>
#include "cublas_v2.h"

namespace cudasim_blas {
// fp32 → TF32 as cvt.rna.tf32.f32: 10 mantissa bits, nearest, ties away from zero.
float tf32(float f);
float elem(const void *p, cudaDataType_t t, size_t i);
void store(void *p, cudaDataType_t t, size_t i, float v);
size_t esize(cudaDataType_t t);
// Elements a column-major operand spans: rows × cols with leading dimension ld.
size_t extent(int rows, int cols, int ld);
// True when [p, p + elems) of type t lies in one device allocation; else says so, naming fn.
bool in_device(const char *fn, const char *what, const void *p, size_t elems, cudaDataType_t t);
// op(X) as a dense row-major rows × cols float matrix, rounded to TF32 when `round`.
std::vector<float> operand(const void *X, cudaDataType_t t, int ld, bool trans, int rows, int cols, bool round);
}   // namespace cudasim_blas

// convert_int.h: what convert.c and npz.c share: a set of named fp32 tensors
// held in memory, in the order they were found.
#pragma once
#include <stdint.h>

typedef struct {
    char name[160];
    int ndim;
    int64_t shape[4];
    float *data;
} CvTensor;

typedef struct {
    const char *path;          // the source file, for error lines
    CvTensor *t;
    int n, cap;
} CvSet;

// Appends a tensor (takes ownership of data) and returns it.
CvTensor *cv_add(CvSet *s, const char *name, int ndim, const int64_t *shape, float *data);
CvTensor *cv_find(const CvSet *s, const char *name);
int64_t cv_numel(const CvTensor *t);
void cv_free(CvSet *s);
// An .npz (a zip of .npy arrays, stored or deflated; float32/float64/float16,
// C order) into s, names without ".npy". 0 after an error line naming the file and member.
int npz_read(const char *path, CvSet *s);
// The original ViT release's Flax names (and big_vision's) → timm's, with the
// kernels transposed to PyTorch's layouts. 0 after an error line.
int npz_to_timm(const CvSet *flax, CvSet *timm);

// safetensors.h: read and write the safetensors format (8-byte LE header
// length, JSON header, raw little-endian data). Used for checkpoints,
// pretrained weights (MODEL.md §6) and --dump-step files.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char name[160];
    char dtype[8];             // F32 F16 BF16 F64 I32 I64 U8 ...
    int ndim;
    int64_t shape[8];
    size_t begin, end;         // byte offsets into the data section
} StTensor;

// Caps on what a header may ask of the reader (hostile files): the reference
// implementation's 100 MiB header, and 2^18 tensors (real models hold a few
// thousand per file; 2^18 entries cost at most 64 MiB of StTensor).
#define ST_MAX_HEADER ((uint64_t)100 << 20)
#define ST_MAX_TENSORS (1 << 18)

typedef struct {
    char path[1024];
    int n;
    StTensor *t;
    int *by_name;                  // indices into t sorted by name (st_find's binary search)
    int n_meta;
    char **meta_key, **meta_val;   // __metadata__ (string → string)
    uint8_t *data;                 // data section
    size_t data_len;
    void *map; size_t map_len;     // whole file (owned)
} SafeTensors;

// Load and validate as the format's reference implementation does: header
// within ST_MAX_HEADER, at most ST_MAX_TENSORS tensors, unique names and
// metadata keys, exact dtype strings, shape × dtype size = byte length, and the
// tensors sorted by offset cover the data section from byte 0 to its end with no
// gap or overlap. 0 after one error line naming the file (and tensor).
int st_load(SafeTensors *st, const char *path);
const StTensor *st_find(const SafeTensors *st, const char *name);   // O(log n)
int64_t st_numel(const StTensor *t);
// Convert to fp32 (from F32, F16, BF16, F64). 0 after an error line on other dtypes.
int st_read_f32(const SafeTensors *st, const StTensor *t, float *out);
int st_read_i32(const SafeTensors *st, const StTensor *t, int32_t *out);  // from I32 / I64
// Drop t's pages of the mapped file from resident memory (read again from the file if touched):
// a loader that reads each tensor once then holds one tensor of the file, not the whole file.
void st_release(const SafeTensors *st, const StTensor *t);
const char *st_meta(const SafeTensors *st, const char *key);            // NULL when absent
// __metadata__ integer: plain decimal digits (no sign, space or leading zero),
// at most max. 0 after an error line naming the file and the key.
int st_meta_u64(const SafeTensors *st, const char *key, uint64_t max, uint64_t *out);
void st_free(SafeTensors *st);

typedef struct StWriter StWriter;
StWriter *stw_new(void);
// Data is copied. shape has ndim entries.
void stw_add_f32(StWriter *w, const char *name, const float *data, int ndim, const int64_t *shape);
void stw_add_i32(StWriter *w, const char *name, const int32_t *data, int ndim, const int64_t *shape);
// An F32 tensor whose bytes fill(ctx, dst) writes into dst when the file is written (nothing
// is copied here; ctx must live until stw_write). fill returns 0 after an error line, which
// stops the write (the old file stays).
typedef int (*StwFill)(void *ctx, void *dst);
void stw_add_f32_fill(StWriter *w, const char *name, int ndim, const int64_t *shape, StwFill fill, void *ctx);
// A malloc'd block (fill contexts) that stw_free frees.
void stw_own(StWriter *w, void *p);
void stw_meta(StWriter *w, const char *key, const char *value);
// Atomic write (temp + fsync + rename), streamed. 0 after an error line; the old file stays intact.
int stw_write(StWriter *w, const char *path);
void stw_free(StWriter *w);

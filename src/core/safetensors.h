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

typedef struct {
    char path[1024];
    int n;
    StTensor *t;
    int n_meta;
    char **meta_key, **meta_val;   // __metadata__ (string → string)
    uint8_t *data;                 // data section
    size_t data_len;
    void *map; size_t map_len;     // whole file (owned)
} SafeTensors;

// Load and validate (header bounds, offsets, dtype sizes × shape). 0 after an
// error line naming the file (and tensor) on failure: truncated, bad JSON, ...
int st_load(SafeTensors *st, const char *path);
const StTensor *st_find(const SafeTensors *st, const char *name);
int64_t st_numel(const StTensor *t);
// Convert to fp32 (from F32, F16, BF16, F64). 0 after an error line on other dtypes.
int st_read_f32(const SafeTensors *st, const StTensor *t, float *out);
int st_read_i32(const SafeTensors *st, const StTensor *t, int32_t *out);  // from I32 / I64
const char *st_meta(const SafeTensors *st, const char *key);            // NULL when absent
void st_free(SafeTensors *st);

typedef struct StWriter StWriter;
StWriter *stw_new(void);
// Data is copied. shape has ndim entries.
void stw_add_f32(StWriter *w, const char *name, const float *data, int ndim, const int64_t *shape);
void stw_add_i32(StWriter *w, const char *name, const int32_t *data, int ndim, const int64_t *shape);
void stw_meta(StWriter *w, const char *key, const char *value);
// Atomic write (temp + fsync + rename). 0 after an error line; the old file stays intact.
int stw_write(StWriter *w, const char *path);
void stw_free(StWriter *w);

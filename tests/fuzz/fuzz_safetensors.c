// fuzz_safetensors.c: the safetensors reader (st_load on a file, then every
// accessor a caller uses on what it accepted: lookups, conversions, metadata).
#include "core/safetensors.h"
#include "fuzz_util.h"

#define FUZZ_MAX_NUMEL (1 << 16)   // convert tensors up to this size (the input is small anyway)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[700];
    fuzz_path(path, sizeof path, "t.safetensors");
    fuzz_write(path, data, size);
    static SafeTensors st;
    if (!st_load(&st, path)) return 0;
    static float f[FUZZ_MAX_NUMEL];
    static int32_t i32[FUZZ_MAX_NUMEL];
    for (int k = 0; k < st.n; k++) {
        const StTensor *t = &st.t[k];
        if (st_find(&st, t->name) == NULL) abort();   // every listed tensor is found by name
        int64_t n = st_numel(t);
        if (n > FUZZ_MAX_NUMEL) continue;
        st_read_f32(&st, t, f);
        st_read_i32(&st, t, i32);
    }
    for (int k = 0; k < st.n_meta; k++) st_meta(&st, st.meta_key[k]);
    st_meta(&st, "params_sha256");
    st_free(&st);
    return 0;
}

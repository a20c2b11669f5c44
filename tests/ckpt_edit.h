// ckpt_edit.h: rewrite a safetensors file (a dcal checkpoint) with one edit, as a
// bad disk, a careless user or an attacker would: metadata dropped or changed,
// a tensor renamed, transposed or poked, or the whole header emptied. The
// result is a well-formed safetensors file, so only dcal's own checks catch it.
#pragma once
#include <string.h>
#include "core/common.h"
#include "core/safetensors.h"
#include "testutil.h"

typedef struct {
    const char *drop_meta;                  // remove this __metadata__ key
    const char *meta_key, *meta_val;        // set this key (added when absent)
    const char *rename_from, *rename_to;
    const char *transpose;                  // swap dims 0 and 1 of this 2-D tensor
    const char *poke;                       // set element poke_at of this tensor to poke_val
    long poke_at;
    float poke_val;
    int empty;                              // header "{}" and no data
} CkptEdit;

static void ckpt_edit_tensors(const SafeTensors *st, StWriter *w, const CkptEdit *e) {
    for (int i = 0; i < st->n; i++) {
        const StTensor *t = &st->t[i];
        float *x = xmalloc((size_t)st_numel(t) * sizeof(float) + 4);
        ck_assert(st_read_f32(st, t, x));
        int64_t sh[8];
        memcpy(sh, t->shape, sizeof sh);
        if (e->transpose && !strcmp(t->name, e->transpose)) { int64_t s0 = sh[0]; sh[0] = sh[1]; sh[1] = s0; }
        if (e->poke && !strcmp(t->name, e->poke)) x[e->poke_at] = e->poke_val;
        const char *name = e->rename_from && !strcmp(t->name, e->rename_from) ? e->rename_to : t->name;
        stw_add_f32(w, name, x, t->ndim, sh);
        free(x);
    }
}

static void ckpt_edit(const char *src, const char *dst, const CkptEdit *e) {
    SafeTensors st;
    ck_assert(st_load(&st, src));
    StWriter *w = stw_new();
    if (!e->empty) {
        for (int i = 0; i < st.n_meta; i++)
            if (!(e->drop_meta && !strcmp(st.meta_key[i], e->drop_meta)))
                stw_meta(w, st.meta_key[i], st.meta_val[i]);
        if (e->meta_key) stw_meta(w, e->meta_key, e->meta_val);
        ckpt_edit_tensors(&st, w, e);
    }
    ck_assert(stw_write(w, dst));
    stw_free(w);
    st_free(&st);
}

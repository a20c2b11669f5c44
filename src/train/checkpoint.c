// checkpoint.c: save and restore the whole training state, exactly: weights,
// AdamW moments and the data/RNG position, so a resumed run continues bit for
// bit (all randomness is keyed by seed and position, ARCHITECTURE.md §6).
#include "train/checkpoint.h"
#include <inttypes.h>
#include <string.h>
#include "core/safetensors.h"
#include "core/sha256.h"
#include "model/weights.h"

void checkpoint_params_sha256(const Model *m, char hex[65]) {
    float *h = xmalloc(m->n_params * sizeof(float));
    m->be->to_host(h, m->params, m->n_params * sizeof(float));
    sha256_hex(h, m->n_params * sizeof(float), hex);
    free(h);
}

int checkpoint_save(const char *path, const Model *m, const float *adam_m, const float *adam_v, const TrainPos *pos) {
    StWriter *w = stw_new();
    weights_add(m, w, "", m->params);
    if (adam_m) weights_add(m, w, "adam.m.", adam_m);
    if (adam_v) weights_add(m, w, "adam.v.", adam_v);
    char buf[64], hex[65];
    checkpoint_params_sha256(m, hex);
    stw_meta(w, "format", "dcal-checkpoint-1");
    stw_meta(w, "dcal_version", DCAL_VERSION);
    stw_meta(w, "params_sha256", hex);
    snprintf(buf, sizeof buf, "%" PRId64, pos->step); stw_meta(w, "step", buf);
    snprintf(buf, sizeof buf, "%" PRId64, pos->micro_step); stw_meta(w, "micro_step", buf);
    snprintf(buf, sizeof buf, "%d", pos->epoch); stw_meta(w, "epoch", buf);
    snprintf(buf, sizeof buf, "%d", pos->batch); stw_meta(w, "batch", buf);
    snprintf(buf, sizeof buf, "%" PRIu64, pos->seed); stw_meta(w, "seed", buf);
    int ok = stw_write(w, path);
    stw_free(w);
    return ok;
}

static int meta_i64(const SafeTensors *st, const char *key, int64_t *out) {
    const char *v = st_meta(st, key);
    char *end;
    if (!v || !*v) { dcal_err("%s: checkpoint metadata lacks '%s'", st->path, key); return 0; }
    long long x = strtoll(v, &end, 10);
    if (*end) { dcal_err("%s: checkpoint metadata '%s' is not an integer: '%s'", st->path, key, v); return 0; }
    *out = x;
    return 1;
}

// Load "prefix<name>" for every tensor into buf (backend memory).
static int load_prefixed(const SafeTensors *st, const Model *m, const char *prefix, float *buf) {
    float *h = xmalloc(m->n_params * sizeof(float));
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        char name[200];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        const StTensor *s = st_find(st, name);
        if (!s) { dcal_err("%s: tensor '%s' missing", st->path, name); free(h); return 0; }
        if ((size_t)st_numel(s) != t->numel) {
            dcal_err("%s: tensor '%s' has %" PRId64 " elements, model expects %zu", st->path, name, st_numel(s), t->numel);
            free(h);
            return 0;
        }
        if (!st_read_f32(st, s, h + t->offset)) { free(h); return 0; }
    }
    m->be->to_device(buf, h, m->n_params * sizeof(float));
    free(h);
    return 1;
}

int checkpoint_load(const char *path, Model *m, float *adam_m, float *adam_v, TrainPos *pos) {
    SafeTensors st;
    if (!st_load(&st, path)) return 0;
    int ok = weights_load_exact(m, &st, 1);
    if (ok && adam_m) ok = load_prefixed(&st, m, "adam.m.", adam_m);
    if (ok && adam_v) ok = load_prefixed(&st, m, "adam.v.", adam_v);
    if (ok && pos) {
        int64_t e = 0, b = 0, s = 0;
        ok = meta_i64(&st, "step", &pos->step) && meta_i64(&st, "micro_step", &pos->micro_step) &&
             meta_i64(&st, "epoch", &e) && meta_i64(&st, "batch", &b) && meta_i64(&st, "seed", &s);
        pos->epoch = (int)e;
        pos->batch = (int)b;
        pos->seed = (uint64_t)s;
    }
    if (ok) {   // the stored hash proves the weights are the ones written
        const char *want = st_meta(&st, "params_sha256");
        char hex[65];
        checkpoint_params_sha256(m, hex);
        if (want && strcmp(want, hex)) {
            dcal_err("%s: parameters do not match the checkpoint's params_sha256 (file corrupted?)", path);
            ok = 0;
        }
    }
    st_free(&st);
    return ok;
}

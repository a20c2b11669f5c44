// checkpoint.c: save and restore the whole training state, exactly: weights,
// AdamW moments and the data/RNG position, so a resumed run continues bit for
// bit (all randomness is keyed by seed and position, ARCHITECTURE.md §6).
// Everything read back is verified: a checkpoint is a file a user (or an
// attacker) can edit, and a resumed run trusts it.
#include "train/checkpoint.h"
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include "core/safetensors.h"
#include "core/sha256.h"
#include "model/weights.h"

#define CKPT_FORMAT "dcal-checkpoint-1"

static float *host_copy(const Model *m, const float *buf) {
    float *h = xmalloc(m->n_params * sizeof(float));
    m->be->to_host(h, buf, m->n_params * sizeof(float));
    return h;
}

void checkpoint_params_sha256(const Model *m, char hex[65]) {
    float *h = host_copy(m, m->params);
    sha256_hex(h, m->n_params * sizeof(float), hex);
    free(h);
}

static void adam_sha256(const Model *m, const float *hm, const float *hv, char hex[65]) {
    Sha256 *h = sha256_new();
    sha256_update(h, hm, m->n_params * sizeof(float));
    sha256_update(h, hv, m->n_params * sizeof(float));
    sha256_final(h, hex);
}

static void put_meta(StWriter *w, const TrainPos *pos, const char *params_hex, const char *adam_hex) {
    char buf[64];
    stw_meta(w, "format", CKPT_FORMAT);
    stw_meta(w, "dcal_version", DCAL_VERSION);
    stw_meta(w, "params_sha256", params_hex);
    if (adam_hex) stw_meta(w, "adam_sha256", adam_hex);
    snprintf(buf, sizeof buf, "%" PRId64, pos->step); stw_meta(w, "step", buf);
    snprintf(buf, sizeof buf, "%" PRId64, pos->micro_step); stw_meta(w, "micro_step", buf);
    snprintf(buf, sizeof buf, "%d", pos->epoch); stw_meta(w, "epoch", buf);
    snprintf(buf, sizeof buf, "%d", pos->batch); stw_meta(w, "batch", buf);
    snprintf(buf, sizeof buf, "%" PRIu64, pos->seed); stw_meta(w, "seed", buf);
}

int checkpoint_save(const char *path, const Model *m, const float *adam_m, const float *adam_v, const TrainPos *pos) {
    float *hp = host_copy(m, m->params), *hm = adam_m ? host_copy(m, adam_m) : NULL;
    float *hv = adam_v ? host_copy(m, adam_v) : NULL;
    char where[DCAL_PATH_MAX + 32], phex[65], ahex[65];
    // A non-finite state would resume into garbage: keep the last good file instead.
    snprintf(where, sizeof where, "%s: not saved", path);
    int ok = weights_check_finite(m, hp, where, "") && (!hm || weights_check_finite(m, hm, where, "adam.m.")) &&
             (!hv || weights_check_finite(m, hv, where, "adam.v."));
    if (ok) {
        StWriter *w = stw_new();
        weights_add_host(m, w, "", hp);
        if (hm) weights_add_host(m, w, "adam.m.", hm);
        if (hv) weights_add_host(m, w, "adam.v.", hv);
        sha256_hex(hp, m->n_params * sizeof(float), phex);
        if (hm && hv) adam_sha256(m, hm, hv, ahex);
        put_meta(w, pos, phex, hm && hv ? ahex : NULL);
        ok = stw_write(w, path);
        stw_free(w);
    }
    free(hp); free(hm); free(hv);
    return ok;
}

// ---- reading: metadata ------------------------------------------------------

typedef struct {
    TrainPos pos;
    char params_hex[65], adam_hex[65];
} CkptMeta;

// A sha256 in metadata: 64 lowercase hex digits.
static int meta_hex(const SafeTensors *st, const char *key, char hex[65]) {
    const char *v = st_meta(st, key);
    if (!v) { dcal_err("%s: metadata '%s' missing (not a dcal checkpoint, or edited?)", st->path, key); return 0; }
    size_t n = strspn(v, "0123456789abcdef");
    if (n != 64 || v[n]) { dcal_err("%s: metadata '%s': '%.70s' is not a sha256", st->path, key, v); return 0; }
    memcpy(hex, v, 65);
    return 1;
}

static int read_meta(const SafeTensors *st, int need_adam, CkptMeta *cm) {
    const char *fmt = st_meta(st, "format");
    if (!fmt || strcmp(fmt, CKPT_FORMAT)) {
        dcal_err("%s: metadata 'format' is %s%.40s%s, expected '" CKPT_FORMAT "' (not a dcal checkpoint)", st->path,
                 fmt ? "'" : "", fmt ? fmt : "missing", fmt ? "'" : "");
        return 0;
    }
    uint64_t step, micro, epoch, batch, seed;
    int ok = meta_hex(st, "params_sha256", cm->params_hex) && (!need_adam || meta_hex(st, "adam_sha256", cm->adam_hex)) &&
             st_meta_u64(st, "step", CKPT_MAX_STEP, &step) && st_meta_u64(st, "micro_step", CKPT_MAX_STEP, &micro) &&
             st_meta_u64(st, "epoch", CKPT_MAX_EPOCH, &epoch) && st_meta_u64(st, "batch", CKPT_MAX_BATCH, &batch) &&
             st_meta_u64(st, "seed", UINT64_MAX, &seed);
    if (ok) cm->pos = (TrainPos){.step = (int64_t)step, .micro_step = (int64_t)micro, .epoch = (int)epoch,
                                 .batch = (int)batch, .seed = seed};
    return ok;
}

// ---- reading: tensors -------------------------------------------------------

// Every tensor in the file is F32 and is a parameter or its adam.m./adam.v. twin
// (renamed or foreign tensors are refused, not skipped).
static int check_names(const SafeTensors *st, const Model *m) {
    for (int i = 0; i < st->n; i++) {
        const StTensor *t = &st->t[i];
        const char *base = t->name;
        if (!strncmp(base, "adam.m.", 7) || !strncmp(base, "adam.v.", 7)) base += 7;
        if (!model_find(m, base)) {
            dcal_err("%s: tensor '%s' is not part of a checkpoint of this model (config mismatch?)", st->path, t->name);
            return 0;
        }
        if (strcmp(t->dtype, "F32")) {
            dcal_err("%s: tensor '%s' is %s, checkpoints hold F32", st->path, t->name, t->dtype);
            return 0;
        }
    }
    return 1;
}

// A NaN or Inf parameter would only show up as a NaN loss after the resume.
static int params_finite(const SafeTensors *st, const Model *m) {
    float *h = xmalloc(m->n_params * sizeof(float));
    int ok = weights_read_prefixed(m, st, "", h) && weights_check_finite(m, h, st->path, "");
    free(h);
    return ok;
}

// AdamW's second moment is a running mean of squares: never negative.
static int check_nonneg(const Model *m, const SafeTensors *st, const float *hv) {
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        for (size_t j = 0; j < t->numel; j++)
            if (hv[t->offset + j] < 0) {
                dcal_err("%s: tensor 'adam.v.%s': element %zu is negative (%g)", st->path, t->name, j,
                         hv[t->offset + j]);
                return 0;
            }
    }
    return 1;
}

// m and v: exact shapes, finite, v >= 0, and together they hash to adam_sha256.
static int load_adam(const SafeTensors *st, const Model *m, const char *want, float *adam_m, float *adam_v) {
    float *hm = xmalloc(m->n_params * sizeof(float)), *hv = xmalloc(m->n_params * sizeof(float));
    int ok = weights_read_prefixed(m, st, "adam.m.", hm) && weights_read_prefixed(m, st, "adam.v.", hv) &&
             weights_check_finite(m, hm, st->path, "adam.m.") && weights_check_finite(m, hv, st->path, "adam.v.") &&
             check_nonneg(m, st, hv);
    if (ok) {
        char hex[65];
        adam_sha256(m, hm, hv, hex);
        if (strcmp(hex, want)) {
            dcal_err("%s: AdamW moments do not match the file's adam_sha256 (corrupted or edited?)", st->path);
            ok = 0;
        }
    }
    if (ok) {
        m->be->to_device(adam_m, hm, m->n_params * sizeof(float));
        m->be->to_device(adam_v, hv, m->n_params * sizeof(float));
    }
    free(hm); free(hv);
    return ok;
}

int checkpoint_load(const char *path, Model *m, float *adam_m, float *adam_v, TrainPos *pos) {
    SafeTensors st;
    if (!st_load(&st, path)) return 0;
    CkptMeta cm;
    int need_adam = adam_m || adam_v;
    if (need_adam && !(adam_m && adam_v)) dcal_die("checkpoint_load: adam_m and adam_v go together");
    // weights_load_exact checks the params against params_sha256 (required here).
    int ok = read_meta(&st, need_adam, &cm) && check_names(&st, m) && params_finite(&st, m) &&
             weights_load_exact(m, &st, 1) && (!need_adam || load_adam(&st, m, cm.adam_hex, adam_m, adam_v));
    if (ok && pos) *pos = cm.pos;
    st_free(&st);
    return ok;
}

int checkpoint_hashes(const char *path, char params_hex[65], char adam_hex[65], int64_t *step) {
    SafeTensors st;
    if (!st_load(&st, path)) return 0;
    CkptMeta cm;
    int ok = read_meta(&st, 1, &cm);
    if (ok) {
        memcpy(params_hex, cm.params_hex, 65);
        memcpy(adam_hex, cm.adam_hex, 65);
        *step = cm.pos.step;
    }
    st_free(&st);
    return ok;
}

int checkpoint_verify(const char *path, const DcalConfig *cfg, char *summary, size_t cap) {
    Model m;
    if (!model_build(&m, &cfg->model, &backend_cpu)) return 0;
    float *am = backend_cpu.alloc(m.n_params * sizeof(float)), *av = backend_cpu.alloc(m.n_params * sizeof(float));
    TrainPos pos;
    int ok = checkpoint_load(path, &m, am, av, &pos);
    if (ok && pos.seed != cfg->train.seed) {
        dcal_err("%s: metadata 'seed' is %" PRIu64 ", config.yaml's train.seed %" PRIu64, path, pos.seed,
                 (uint64_t)cfg->train.seed);
        ok = 0;
    }
    if (ok)
        snprintf(summary, cap, "step %" PRId64 ": %d tensors (params, adam.m, adam.v) match the model's names, "
                 "shapes and F32; params_sha256 matches, adam_sha256 matches; all finite", pos.step, 3 * m.n_tensors);
    backend_cpu.free(am);
    backend_cpu.free(av);
    model_free(&m);
    return ok;
}

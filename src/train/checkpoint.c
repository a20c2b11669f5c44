// checkpoint.c: save and restore the whole training state, exactly: weights,
// AdamW moments and the data/RNG position, so a resumed run continues bit for
// bit (all randomness is keyed by seed and position, ARCHITECTURE.md §6).
// Everything read back is verified: a checkpoint is a file a user (or an
// attacker) can edit, and a resumed run trusts it.
#include "train/checkpoint.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include "core/safetensors.h"
#include "core/sha256.h"
#include "model/weights.h"

#define CKPT_FORMAT "dcal-checkpoint-1"

// Hash buf's tensors in order into h, each checked finite first (where NULL: not checked).
static int scan(const Model *m, const float *buf, const char *where, const char *prefix, Sha256 *h, float *chunk) {
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        m->be->to_host(chunk, buf + t->offset, t->numel * sizeof(float));
        if (where && !weights_tensor_finite(t, chunk, where, prefix)) return 0;
        sha256_update(h, chunk, t->numel * sizeof(float));
    }
    return 1;
}

// Tensor by tensor through one tensor's buffer, as saving does: no host copy of the whole.
void checkpoint_params_sha256(const Model *m, char hex[65]) {
    float *chunk = xmalloc(model_largest_tensor(m) * sizeof(float));
    Sha256 *h = sha256_new();
    scan(m, m->params, NULL, "", h, chunk);
    sha256_final(h, hex);
    free(chunk);
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
    snprintf(buf, sizeof buf, "%" PRId64, pos->skipped); stw_meta(w, "skipped_images", buf);
    char win[160];   // hexadecimal floats: the sums come back bit for bit
    snprintf(win, sizeof win, "%d %a %a %a %a", pos->win_n, pos->win[0], pos->win[1], pos->win[2], pos->win[3]);
    stw_meta(w, "log_window", win);
}

// "log_window": "n s0 s1 s2 s3" (newer files; absent: an empty window).
static int read_window(const SafeTensors *st, TrainPos *pos) {
    const char *v = st_meta(st, "log_window");
    if (!v) return 1;
    char *end;
    long n = strtol(v, &end, 10);
    int ok = end != v && n >= 0 && n <= CKPT_MAX_BATCH;
    for (int i = 0; ok && i < 4; i++) {
        const char *p = end;
        pos->win[i] = strtod(p, &end);
        ok = end != p && isfinite(pos->win[i]);
    }
    if (!ok || *end) {
        dcal_err("%s: metadata 'log_window': '%.60s' is not a count and four finite sums", st->path, v);
        return 0;
    }
    pos->win_n = (int)n;
    return 1;
}

// Saving streams each buffer (params, m, v) tensor by tensor through a host buffer of the
// largest tensor, twice: first to check every value finite and hash the buffers (the tensors
// tile each buffer in table order, so this is the whole buffer's hash), then to write the file
// whose header carries those hashes (weights_add). A copy of the state on the host (three times
// over, with the writer's copies and an image of the file: +3.2 GB at a ViT-B checkpoint, more
// than the whole planned run) is never made.
//
// The file: params (+ m, v), the position and hashes, and extra metadata pairs (kv, n_kv pairs).
static int save_with(const char *path, const Model *m, const float *adam_m, const float *adam_v, const TrainPos *pos,
                     const char *const *kv, int n_kv) {
    char where[DCAL_PATH_MAX + 32], phex[65], ahex[65];
    float *chunk = xmalloc(model_largest_tensor(m) * sizeof(float));
    // A non-finite state would resume into garbage: keep the last good file instead.
    snprintf(where, sizeof where, "%s: not saved", path);
    Sha256 *hp = sha256_new(), *ha = sha256_new();
    int adam = adam_m && adam_v;
    int ok = scan(m, m->params, where, "", hp, chunk) && (!adam_m || scan(m, adam_m, where, "adam.m.", ha, chunk)) &&
             (!adam_v || scan(m, adam_v, where, "adam.v.", ha, chunk));
    sha256_final(hp, phex);
    sha256_final(ha, ahex);
    free(chunk);
    if (ok) {
        StWriter *w = stw_new();
        weights_add(m, w, "", m->params);
        if (adam_m) weights_add(m, w, "adam.m.", adam_m);
        if (adam_v) weights_add(m, w, "adam.v.", adam_v);
        put_meta(w, pos, phex, adam ? ahex : NULL);
        for (int i = 0; i < n_kv; i++) stw_meta(w, kv[2 * i], kv[2 * i + 1]);
        ok = stw_write(w, path);
        stw_free(w);
    }
    return ok;
}

int checkpoint_save(const char *path, const Model *m, const float *adam_m, const float *adam_v, const TrainPos *pos) {
    return save_with(path, m, adam_m, adam_v, pos, NULL, 0);
}

int checkpoint_save_best(const char *path, const Model *m, const TrainPos *pos, double val_acc, int val_n) {
    char acc[32], n[16];
    snprintf(acc, sizeof acc, "%.6f", val_acc);
    snprintf(n, sizeof n, "%d", val_n);
    const char *kv[] = {"selected_on", "val", "val_acc", acc, "val_n", n};
    return save_with(path, m, NULL, NULL, pos, kv, 3);
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
    uint64_t step, micro, epoch, batch, seed, skipped = 0;
    int ok = meta_hex(st, "params_sha256", cm->params_hex) && (!need_adam || meta_hex(st, "adam_sha256", cm->adam_hex)) &&
             st_meta_u64(st, "step", CKPT_MAX_STEP, &step) && st_meta_u64(st, "micro_step", CKPT_MAX_STEP, &micro) &&
             st_meta_u64(st, "epoch", CKPT_MAX_EPOCH, &epoch) && st_meta_u64(st, "batch", CKPT_MAX_BATCH, &batch) &&
             st_meta_u64(st, "seed", UINT64_MAX, &seed) &&
             (!st_meta(st, "skipped_images") || st_meta_u64(st, "skipped_images", INT32_MAX, &skipped));   // newer files
    if (ok) cm->pos = (TrainPos){.step = (int64_t)step, .micro_step = (int64_t)micro, .epoch = (int)epoch,
                                 .batch = (int)batch, .seed = seed, .skipped = (int64_t)skipped};
    return ok && read_window(st, &cm->pos);
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

// Loading streams too (weights_stream): each tensor read, checked, hashed and uploaded in turn,
// with its pages of the mapped file released, so a resume holds one tensor beyond the run's
// own memory. The hashes are compared at the end: a refused file leaves the model and moments
// holding part of it, and every caller stops. The params: finite (a NaN or Inf would only show
// up as a NaN loss after the resume), hashing to params_sha256 (read_meta requires it).
// m and v: exact shapes, finite, v >= 0 (AdamW's second moment is a running mean of squares),
// and together they hash to adam_sha256.
static int load_adam(const SafeTensors *st, const Model *m, const char *want, float *adam_m, float *adam_v) {
    Sha256 *h = sha256_new();
    char hex[65];
    int ok = weights_stream(m, st, "adam.m.", adam_m, WEIGHTS_FINITE, h) &&
             weights_stream(m, st, "adam.v.", adam_v, WEIGHTS_FINITE | WEIGHTS_NONNEG, h);
    sha256_final(h, hex);
    if (ok && strcmp(hex, want)) {
        dcal_err("%s: AdamW moments do not match the file's adam_sha256 (corrupted or edited?)", st->path);
        ok = 0;
    }
    return ok;
}

int checkpoint_load(const char *path, Model *m, float *adam_m, float *adam_v, TrainPos *pos) {
    SafeTensors st;
    if (!st_load(&st, path)) return 0;
    CkptMeta cm;
    int need_adam = adam_m || adam_v;
    if (need_adam && !(adam_m && adam_v)) dcal_die("checkpoint_load: adam_m and adam_v go together");
    int ok = read_meta(&st, need_adam, &cm) && check_names(&st, m) &&
             weights_load_exact(m, &st, 1, WEIGHTS_FINITE) &&
             (!need_adam || load_adam(&st, m, cm.adam_hex, adam_m, adam_v));
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

// best.safetensors holds weights only (a model to use, not a state to resume).
static bool is_best_file(const char *path) {
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    return !strcmp(base, CKPT_BEST_FILE);
}

int checkpoint_verify(const char *path, const DcalConfig *cfg, char *summary, size_t cap) {
    Model m;
    if (!model_build(&m, &cfg->model, &backend_cpu)) return 0;
    bool best = is_best_file(path);
    float *am = best ? NULL : backend_cpu.alloc(m.n_params * sizeof(float));
    float *av = best ? NULL : backend_cpu.alloc(m.n_params * sizeof(float));
    TrainPos pos;
    int ok = checkpoint_load(path, &m, am, av, &pos);
    if (ok && pos.seed != cfg->train.seed) {
        dcal_err("%s: metadata 'seed' is %" PRIu64 ", config.yaml's train.seed %" PRIu64, path, pos.seed,
                 (uint64_t)cfg->train.seed);
        ok = 0;
    }
    if (ok && best)
        snprintf(summary, cap, "step %" PRId64 ": %d tensors (params; the best on the validation split) match the "
                 "model's names, shapes and F32; params_sha256 matches; all finite", pos.step, m.n_tensors);
    else if (ok)
        snprintf(summary, cap, "step %" PRId64 ": %d tensors (params, adam.m, adam.v) match the model's names, "
                 "shapes and F32; params_sha256 matches, adam_sha256 matches; all finite", pos.step, 3 * m.n_tensors);
    if (am) backend_cpu.free(am);
    if (av) backend_cpu.free(av);
    model_free(&m);
    return ok;
}

int checkpoint_best_meta(const char *path, CkptBest *b) {
    SafeTensors st;
    if (!st_load(&st, path)) return 0;
    CkptMeta cm;
    const char *acc = st_meta(&st, "val_acc"), *on = st_meta(&st, "selected_on");
    char *end = NULL;
    double v = acc ? strtod(acc, &end) : NAN;
    uint64_t n = 0;
    int ok = read_meta(&st, 0, &cm);
    if (ok && (!on || strcmp(on, "val") || !acc || *end || !(v >= 0 && v <= 1) ||
               !st_meta_u64(&st, "val_n", INT32_MAX, &n))) {
        dcal_err("%s: metadata 'selected_on'/'val_acc'/'val_n' missing or not a validation accuracy (not written as "
                 "a best checkpoint?)", path);
        ok = 0;
    }
    if (ok) {
        *b = (CkptBest){.step = cm.pos.step, .epoch = cm.pos.epoch, .val_n = (int)n, .val_acc = v};
        memcpy(b->params_sha256, cm.params_hex, 65);
    }
    st_free(&st);
    return ok;
}

// ---- train.keep_last ---------------------------------------------------------

// "checkpoint-step<digits>.safetensors" → its step; 0 for any other name.
static int kept_step(const char *name, long long *step) {
    size_t pl = strlen(CKPT_STEP_PREFIX), sl = strlen(".safetensors"), n = strlen(name);
    if (n <= pl + sl || strncmp(name, CKPT_STEP_PREFIX, pl) || strcmp(name + n - sl, ".safetensors")) return 0;
    size_t digits = strspn(name + pl, "0123456789");
    if (digits != n - pl - sl || digits > 15) return 0;
    *step = atoll(name + pl);
    return 1;
}

static int cmp_desc(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) { fsync(fd); close(fd); }
}

// The newest checkpoint under its step's name: a hard link (no second write of
// a large file), or a copy where the filesystem has no links.
static int link_latest(const char *latest, const char *kept) {
    if (link(latest, kept) == 0) return 1;
    if (errno == EEXIST && unlink(kept) == 0 && link(latest, kept) == 0) return 1;   // the same step saved again
    return copy_file_atomic(latest, kept);   // streamed: not the whole checkpoint in memory
}

int checkpoint_keep_last(const char *dir, int64_t step, int keep_last) {
    if (keep_last <= 1) return 1;
    char latest[DCAL_PATH_MAX + 64], kept[DCAL_PATH_MAX + 64];
    snprintf(latest, sizeof latest, "%s/" CKPT_LATEST_FILE, dir);
    snprintf(kept, sizeof kept, "%s/" CKPT_STEP_PREFIX "%08lld.safetensors", dir, (long long)step);
    if (!link_latest(latest, kept)) return 0;
    fsync_dir(dir);   // the new file is durable before an older one goes
    DIR *d = opendir(dir);
    if (!d) { dcal_err("%s: cannot list (%s)", dir, strerror(errno)); return 0; }
    long long *steps = NULL, s;
    int n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (kept_step(e->d_name, &s)) {
            if (n == cap) steps = realloc(steps, sizeof *steps * (size_t)(cap = cap ? 2 * cap : 16));
            if (!steps) dcal_die("out of host memory");
            steps[n++] = s;
        }
    closedir(d);
    qsort(steps, (size_t)n, sizeof *steps, cmp_desc);
    int ok = 1;
    for (int i = keep_last; i < n; i++) {
        snprintf(kept, sizeof kept, "%s/" CKPT_STEP_PREFIX "%08lld.safetensors", dir, steps[i]);
        if (unlink(kept) != 0 && errno != ENOENT) { dcal_err("%s: cannot remove (%s)", kept, strerror(errno)); ok = 0; }
    }
    free(steps);
    fsync_dir(dir);
    return ok;
}

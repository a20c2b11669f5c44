// weights.c: model parameters ⇄ safetensors (MODEL.md §6). Exact loads for
// --init and checkpoints; timm ViT/DeiT pretrained loads with the pos_embed
// resized to the model's grid.
#include "model/weights.h"
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include "core/sha256.h"

// One tensor of a backend buffer, copied to the host when the writer writes the file.
typedef struct { const Model *m; const float *src; size_t n; } Part;

static int fill_part(void *ctx, void *dst) {
    const Part *p = ctx;
    p->m->be->to_host(dst, p->src, p->n * sizeof(float));
    return 1;
}

void weights_add(const Model *m, StWriter *w, const char *prefix, const float *buf) {
    Part *parts = xmalloc((size_t)(m->n_tensors ? m->n_tensors : 1) * sizeof *parts);
    stw_own(w, parts);
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        char name[200];
        int64_t shape[4];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
        parts[i] = (Part){m, buf + t->offset, t->numel};
        stw_add_f32_fill(w, name, t->ndim, shape, fill_part, &parts[i]);
    }
}

// "[96,32]" for error messages.
static const char *fmt_file_shape(const StTensor *s, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < s->ndim && n < cap; d++) n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, d ? "," : "", s->shape[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}
static const char *fmt_model_shape(const ParamTensor *t, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && n < cap; d++) n += (size_t)snprintf(buf + n, cap - n, "%s%d", d ? "," : "", t->shape[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

// Same rank and the same dims: a [3D·D] flat tensor with the right numel is
// still refused, since a silent reshape would scramble the rows.
static int same_shape(const StTensor *s, const ParamTensor *t) {
    if (s->ndim != t->ndim) return 0;
    for (int d = 0; d < t->ndim; d++)
        if (s->shape[d] != t->shape[d]) return 0;
    return 1;
}

static void shape_error(const char *path, const StTensor *s, const ParamTensor *t) {
    char a[96], b[96];
    dcal_err("%s: tensor '%s': shape %s in file, model expects %s", path, s->name, fmt_file_shape(s, a, sizeof a),
             fmt_model_shape(t, b, sizeof b));
}

// Every "<prefix><name>" present with the table's exact shape; every problem reported.
static int check_present(const Model *m, const SafeTensors *st, const char *prefix) {
    int bad = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        char name[200];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        const StTensor *s = st_find(st, name);
        if (!s) { dcal_err("%s: tensor '%s' missing (model expects it)", st->path, name); bad++; }
        else if (!same_shape(s, t)) { shape_error(st->path, s, t); bad++; }
    }
    return !bad;
}

int weights_stream(const Model *m, const SafeTensors *st, const char *prefix, float *buf, int checks, Sha256 *h) {
    if (!check_present(m, st, prefix)) return 0;
    float *x = xmalloc(model_largest_tensor(m) * sizeof(float));
    int ok = 1;
    for (int i = 0; i < m->n_tensors && ok; i++) {
        const ParamTensor *t = &m->tensors[i];
        char name[200];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        const StTensor *s = st_find(st, name);
        ok = st_read_f32(st, s, x) && (!(checks & WEIGHTS_FINITE) || weights_tensor_finite(t, x, st->path, prefix));
        for (size_t j = 0; ok && (checks & WEIGHTS_NONNEG) && j < t->numel; j++)
            if (x[j] < 0) {
                dcal_err("%s: tensor '%s': element %zu is negative (%g)", st->path, name, j, x[j]);
                ok = 0;
            }
        if (ok && h) sha256_update(h, x, t->numel * sizeof(float));
        if (ok) m->be->to_device(buf + t->offset, x, t->numel * sizeof(float));
        st_release(st, s);
    }
    free(x);
    return ok;
}

int weights_tensor_finite(const ParamTensor *t, const float *x, const char *where, const char *prefix) {
    for (size_t j = 0; j < t->numel; j++)
        if (!isfinite(x[j])) {
            dcal_err("%s: tensor '%s%s': element %zu is %s", where, prefix, t->name, j,
                     isnan(x[j]) ? "NaN" : x[j] > 0 ? "Inf" : "-Inf");
            return 0;
        }
    return 1;
}

// The stored hash proves the tensors are the ones written (checkpoints, and an
// --init file that carries one); files without the key (timm, dumps) pass.
int weights_load_exact(Model *m, const SafeTensors *st, int allow_extra, int checks) {
    int bad = 0;
    if (!allow_extra)
        for (int i = 0; i < st->n; i++)
            if (!model_find(m, st->t[i].name)) {
                dcal_err("%s: tensor '%s' is not a parameter of this model (config mismatch?)", st->path, st->t[i].name);
                bad++;
            }
    // The checks are the caller's choice: checkpoints refuse a NaN (WEIGHTS_FINITE), while a NaN
    // in --init weights is left to the trainer's loss check (tests/e2e_errors.sh).
    const char *want = st_meta(st, "params_sha256");
    Sha256 *h = want ? sha256_new() : NULL;
    int ok = weights_stream(m, st, "", m->params, checks, h) && !bad;
    if (h) {
        char hex[65];
        sha256_final(h, hex);
        if (ok && strcmp(want, hex)) {
            dcal_err("%s: tensors do not match the file's params_sha256 (corrupted or edited?)", st->path);
            ok = 0;
        }
    }
    return ok;
}

// ---- bicubic resize (PyTorch upsample_bicubic2d, align_corners=False) ------

// Cubic convolution kernel, A = -0.75 (PyTorch's get_cubic_upsample_coefficients).
static double cc1(double x, double A) { return ((A + 2) * x - (A + 3)) * x * x + 1; }          // |x| <= 1
static double cc2(double x, double A) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; }    // 1 < |x| < 2

// Taps and weights of output position o along one axis. Index arithmetic in
// float as PyTorch does for float tensors (opmath float), so floor() agrees:
// src = scale·(o+0.5) − 0.5, NOT clamped at 0 for cubic; index = min(floor(src), n−1),
// t = clamp(src − index, 0, 1); taps index−1..index+2 clamped to [0, n−1].
static void cubic_taps(int o, int n_in, int n_out, int idx[4], double w[4]) {
    const double A = -0.75;
    float scale = (float)n_in / (float)n_out;
    float src = scale * ((float)o + 0.5f) - 0.5f;
    int i0 = (int)floorf(src);
    if (i0 > n_in - 1) i0 = n_in - 1;
    float t = src - (float)i0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    w[0] = cc2(t + 1.0, A);
    w[1] = cc1(t, A);
    w[2] = cc1(1.0 - t, A);
    w[3] = cc2(2.0 - t, A);
    for (int k = 0; k < 4; k++) {
        int j = i0 - 1 + k;
        idx[k] = j < 0 ? 0 : j > n_in - 1 ? n_in - 1 : j;
    }
}

void pos_embed_resize(const float *in, int g_in, float *out, int g_out, int D) {
    if (g_in == g_out) {   // the kernel is exactly [0,1,0,0] there; skip the arithmetic
        memcpy(out, in, (size_t)g_in * g_in * D * sizeof(float));
        return;
    }
    int *ti = xmalloc((size_t)g_out * 4 * sizeof(int));
    double *tw = xmalloc((size_t)g_out * 4 * sizeof(double));
    for (int o = 0; o < g_out; o++) cubic_taps(o, g_in, g_out, ti + 4 * o, tw + 4 * o);   // same taps for y and x
    double *acc = xmalloc((size_t)D * sizeof(double));
    for (int y = 0; y < g_out; y++)
        for (int x = 0; x < g_out; x++) {
            for (int d = 0; d < D; d++) acc[d] = 0;
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++) {
                    double wgt = tw[4 * y + a] * tw[4 * x + b];
                    const float *src = in + ((size_t)ti[4 * y + a] * g_in + ti[4 * x + b]) * D;
                    for (int d = 0; d < D; d++) acc[d] += wgt * src[d];
                }
            float *dst = out + ((size_t)y * g_out + x) * D;
            for (int d = 0; d < D; d++) dst[d] = (float)acc[d];
        }
    free(acc); free(ti); free(tw);
}

// ---- pretrained (timm ViT/DeiT) --------------------------------------------

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

// Classifier-side tensors of timm models that DCAL replaces with its own heads.
static int ignored_name(const char *n) {
    return starts(n, "head.") || starts(n, "fc_norm.") || starts(n, "pre_logits.") || !strcmp(n, "dist_token") ||
           starts(n, "head_dist.");
}

// The backbone: what a pretrained file must provide.
static int backbone_name(const char *n) {
    return !strcmp(n, "cls_token") || !strcmp(n, "pos_embed") || starts(n, "patch_embed.") || starts(n, "blocks.") ||
           starts(n, "norm.");
}

// Prefix rows of a pretrained pos_embed: CLS, plus the distillation token's row
// in DeiT-distilled files (which carry dist_token); the latter is dropped.
static int pos_prefix(const SafeTensors *st) { return st_find(st, "dist_token") ? 2 : 1; }

// File grid side of a pretrained pos_embed [1, prefix+g_in², D]; 0 after an error line.
static int pos_embed_grid(const SafeTensors *st, const StTensor *s, const ParamTensor *t) {
    int D = t->shape[2], pre = pos_prefix(st);
    int64_t n_in = s->ndim == 3 ? s->shape[1] : 0;
    int g_in = (int)llround(sqrt((double)(n_in > pre ? n_in - pre : 0)));
    if (s->ndim != 3 || s->shape[0] != 1 || s->shape[2] != D || g_in < 1 || (int64_t)g_in * g_in != n_in - pre) {
        char a[96], b[96];
        dcal_err("%s: tensor 'pos_embed': shape %s in file, model expects %s or [1,%d+g*g,%d] for another grid g "
                 "(%s)", st->path, fmt_file_shape(s, a, sizeof a), fmt_model_shape(t, b, sizeof b), pre, D,
                 pre == 2 ? "CLS and distillation positions first" : "a CLS position first");
        return 0;
    }
    return g_in;
}

// pos_embed → model's [1, 1+g², D]: CLS row copied, the g_in² grid resized.
static int load_pos_embed(const SafeTensors *st, const StTensor *s, const ParamTensor *t, float *dst) {
    int D = t->shape[2], g_out = (int)lround(sqrt((double)(t->shape[1] - 1))), pre = pos_prefix(st);
    int g_in = pos_embed_grid(st, s, t);
    if (!g_in) return 0;
    float *h = xmalloc((size_t)(pre + g_in * g_in) * D * sizeof(float));
    if (!st_read_f32(st, s, h)) { free(h); return 0; }
    memcpy(dst, h, (size_t)D * sizeof(float));   // the CLS position is not part of the grid
    pos_embed_resize(h + (size_t)pre * D, g_in, dst + D, g_out, D);
    if (g_in != g_out) fprintf(stderr, "dcal: pretrained: pos_embed resized %dx%d -> %dx%d (bicubic)\n", g_in, g_in, g_out, g_out);
    free(h);
    return 1;
}

// A dcal checkpoint (or --dump-step / converted-with-heads file) has DCAL's own
// tensors: listing each as "not a backbone tensor" buried the point in 150 lines.
static int is_dcal_file(const SafeTensors *st) {
    const char *fmt = st_meta(st, "format");
    return (fmt && starts(fmt, "dcal-checkpoint")) || st_find(st, "loss_w") || st_find(st, "glca_head.weight");
}

#define MAX_NAME_ERRORS 5   // then one summary line: a wrong file should not print a screenful

// Pass 1: every tensor in the file is either ignored (its names listed in ign) or
// a backbone tensor of this model. Returns the problems found.
static int check_file_names(const Model *m, const SafeTensors *st, char *ign, size_t cap, int *n_ign) {
    int bad = 0;
    for (int i = 0; i < st->n; i++) {
        const char *n = st->t[i].name;
        if (ignored_name(n)) {
            size_t len = strlen(ign);
            if (len + strlen(n) + 8 < cap) snprintf(ign + len, cap - len, "%s%s", *n_ign ? ", " : "", n);
            else if (len + 5 < cap && strcmp(ign + len - 3, "...")) strcat(ign, ", ...");   // count stays exact
            (*n_ign)++;
            continue;
        }
        int blk, named = bad < MAX_NAME_ERRORS;
        if (sscanf(n, "blocks.%d.", &blk) == 1 && blk >= m->cfg.depth) {
            if (named) dcal_err("%s: tensor '%s': block %d beyond the model's depth %d (config model.depth mismatch?)",
                                st->path, n, blk, m->cfg.depth);
            bad++;
        } else if (!backbone_name(n) || !model_find(m, n)) {
            if (named) dcal_err("%s: tensor '%s' is not a ViT backbone tensor of this model (a dcal checkpoint goes to "
                                "--init)", st->path, n);
            bad++;
        }
    }
    if (bad > MAX_NAME_ERRORS) dcal_err("%s: ... and %d more tensors not in this model's backbone", st->path, bad - MAX_NAME_ERRORS);
    return bad;
}

// Pass 2: every backbone tensor of the model is in the file with its shape.
// At most `room` problems are named, then one summary line.
static int check_backbone(const Model *m, const SafeTensors *st, int room) {
    int bad = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        if (!backbone_name(t->name)) continue;
        const StTensor *s = st_find(st, t->name);
        int named = bad < room;
        if (!s) {
            if (named) dcal_err("%s: tensor '%s' missing (pretrained backbone must provide it)", st->path, t->name);
            bad++;
        } else if (!strcmp(t->name, "pos_embed")) {
            if (!pos_embed_grid(st, s, t)) bad++;   // one tensor: always named
        } else if (!same_shape(s, t)) {
            if (named) shape_error(st->path, s, t);
            bad++;
        }
    }
    if (bad > room) dcal_err("%s: ... and %d more backbone tensors missing or of another shape", st->path, bad - room);
    return bad;
}

int weights_load_pretrained(Model *m, const char *path) {
    SafeTensors st;
    if (!st_load(&st, path)) return 0;
    if (is_dcal_file(&st)) {
        dcal_err("%s: a dcal checkpoint, not pretrained ViT weights (start from its weights with `dcal train --init "
                 "FILE`, continue its run with `--resume RUN`)", path);
        st_free(&st);
        return 0;
    }
    int n_ign = 0;
    char ign[1024] = "";
    int bad = check_file_names(m, &st, ign, sizeof ign, &n_ign);
    if (bad <= MAX_NAME_ERRORS) bad += check_backbone(m, &st, MAX_NAME_ERRORS - bad);
    // Tensor by tensor through one tensor's buffer, each one's pages of the file released after
    // it (st_release): no host copy of the model, nor the whole file resident, beside the run's
    // own memory. Heads, GLCA and loss_w keep their init. A failure stops the run (the caller),
    // so the backbone tensors already uploaded do not matter.
    if (!bad) {
        float *x = xmalloc(model_largest_tensor(m) * sizeof(float));
        for (int i = 0; i < m->n_tensors && !bad; i++) {
            const ParamTensor *t = &m->tensors[i];
            if (!backbone_name(t->name)) continue;
            const StTensor *s = st_find(&st, t->name);
            int ok = !strcmp(t->name, "pos_embed") ? load_pos_embed(&st, s, t, x) : st_read_f32(&st, s, x);
            if (ok) m->be->to_device(m->params + t->offset, x, t->numel * sizeof(float));
            else bad++;
            st_release(&st, s);
        }
        free(x);
    }
    if (!bad) {
        model_copy_sa_to_glca(m);   // MODEL.md §2: GLCA starts as SA block L−M+1
        if (n_ign) fprintf(stderr, "dcal: pretrained: ignored %d tensors: %s\n", n_ign, ign);
    }
    st_free(&st);
    return !bad;
}

int weights_load_head(Model *m, const char *path) {
    SafeTensors st;
    if (!st_load(&st, path)) return 0;
    int ok = 1;
    for (const char *const *n = (const char *const[]){"head.weight", "head.bias", NULL}; *n && ok; n++) {
        const ParamTensor *t = model_find(m, *n);
        const StTensor *s = st_find(&st, *n);
        if (!s) { dcal_err("%s: tensor '%s' missing (convert with `dcal convert --keep-head`)", path, *n); ok = 0; }
        else if (!same_shape(s, t)) {
            shape_error(path, s, t);
            ok = 0;
        }
        float *h = ok ? xmalloc(t->numel * sizeof(float)) : NULL;
        if (ok && (ok = st_read_f32(&st, s, h))) m->be->to_device(m->params + t->offset, h, t->numel * sizeof(float));
        free(h);
    }
    st_free(&st);
    return ok;
}

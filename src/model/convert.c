// convert.c: timm-named (or ViT .npz) weights → dcal's pretrained file. dcal's
// backbone names are timm's (MODEL.md §6), so for timm files the work is to
// check that the file is a pre-LN ViT dcal can run (every block complete, the
// shapes consistent), cast to F32, and keep or drop the classifier.
#include "model/convert.h"
#include <stdio.h>
#include <string.h>
#include "core/common.h"
#include "core/safetensors.h"
#include "model/convert_int.h"

CvTensor *cv_add(CvSet *s, const char *name, int ndim, const int64_t *shape, float *data) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        CvTensor *grown = realloc(s->t, (size_t)s->cap * sizeof *s->t);
        if (!grown) dcal_die("out of host memory converting weights");
        s->t = grown;
    }
    CvTensor *t = &s->t[s->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->data = data;
    return t;
}

CvTensor *cv_find(const CvSet *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name)) return &s->t[i];
    return NULL;
}

int64_t cv_numel(const CvTensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

void cv_free(CvSet *s) {
    for (int i = 0; i < s->n; i++) free(s->t[i].data);
    free(s->t);
    memset(s, 0, sizeof *s);
}

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

// Parts of other ViT variants that dcal's model does not have: refusing them
// beats loading a backbone that silently computes something else.
static const char *unsupported(const char *n) {
    if (strstr(n, ".ls1.") || strstr(n, ".ls2.")) return "LayerScale (ls1/ls2) is not part of dcal's ViT";
    if (starts(n, "fc_norm.")) return "a global-average-pool model (fc_norm); dcal classifies the CLS token";
    if (starts(n, "norm_pre.")) return "a pre-norm before the blocks (CLIP-style) is not part of dcal's ViT";
    if (starts(n, "reg_token")) return "register tokens are not part of dcal's ViT";
    if (strstr(n, ".q_norm.") || strstr(n, ".k_norm.")) return "QK-norm is not part of dcal's ViT";
    return NULL;
}

static const char *const block_parts[] = {"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                                          "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
                                          "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"};
enum { N_PARTS = 12 };

// A backbone name dcal reads; *blk is the block number for blocks.* (else -1).
static int backbone(const char *n, int *blk) {
    *blk = -1;
    if (!strcmp(n, "cls_token") || !strcmp(n, "pos_embed") || !strcmp(n, "dist_token") ||
        !strcmp(n, "patch_embed.proj.weight") || !strcmp(n, "patch_embed.proj.bias") || !strcmp(n, "norm.weight") ||
        !strcmp(n, "norm.bias"))
        return 1;
    int len = 0;
    if (sscanf(n, "blocks.%d.%n", blk, &len) != 1 || len == 0 || *blk < 0 || *blk > 999) return 0;
    for (int k = 0; k < N_PARTS; k++)
        if (!strcmp(n + len, block_parts[k])) return 1;
    return 0;
}

static int classifier(const char *n) {
    return starts(n, "head.") || starts(n, "head_dist.") || starts(n, "pre_logits.");
}

static int shape_is(const CvTensor *t, int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t want[4] = {a, b, c, d};
    if (t->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (want[i] >= 0 && t->shape[i] != want[i]) return 0;
    return 1;
}

static int need(const CvSet *s, const char *name, int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    const CvTensor *t = cv_find(s, name);
    if (!t) { dcal_err("%s: tensor '%s' missing (a ViT backbone has it)", s->path, name); return 0; }
    if (shape_is(t, ndim, a, b, c, d)) return 1;
    char got[96];
    size_t n = (size_t)snprintf(got, sizeof got, "[");
    for (int i = 0; i < t->ndim && n < sizeof got; i++)
        n += (size_t)snprintf(got + n, sizeof got - n, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    dcal_err("%s: tensor '%s': shape %s] does not fit the backbone (D %lld)", s->path, name, got,
             (long long)cv_find(s, "cls_token")->shape[2]);
    return 0;
}

// One block's 12 tensors, shapes from D and the MLP width its fc1 has.
static int check_block(const CvSet *s, int i, int64_t D) {
    char n[N_PARTS][64];
    for (int k = 0; k < N_PARTS; k++) snprintf(n[k], sizeof n[k], "blocks.%d.%s", i, block_parts[k]);
    const CvTensor *fc1 = cv_find(s, n[9]);
    int64_t H = fc1 && fc1->ndim == 1 ? fc1->shape[0] : -1;
    return need(s, n[0], 1, D, 0, 0, 0) && need(s, n[1], 1, D, 0, 0, 0) && need(s, n[2], 2, 3 * D, D, 0, 0) &&
           need(s, n[3], 1, 3 * D, 0, 0, 0) && need(s, n[4], 2, D, D, 0, 0) && need(s, n[5], 1, D, 0, 0, 0) &&
           need(s, n[6], 1, D, 0, 0, 0) && need(s, n[7], 1, D, 0, 0, 0) && need(s, n[8], 2, H, D, 0, 0) &&
           need(s, n[9], 1, H, 0, 0, 0) && need(s, n[10], 2, D, H, 0, 0) && need(s, n[11], 1, D, 0, 0, 0);
}

// Every block 0..depth-1 complete and every shape consistent with D and the patch.
static int check_structure(const CvSet *s, int depth, ConvertInfo *info) {
    const CvTensor *cls = cv_find(s, "cls_token"), *pe = cv_find(s, "patch_embed.proj.weight");
    if (!cls || !shape_is(cls, 3, 1, 1, -1, 0)) {
        dcal_err("%s: tensor 'cls_token' [1,1,D] missing or of another shape (not a ViT with a CLS token?)", s->path);
        return 0;
    }
    int64_t D = cls->shape[2];
    if (!need(s, "patch_embed.proj.weight", 4, D, 3, -1, -1) || !need(s, "patch_embed.proj.bias", 1, D, 0, 0, 0) ||
        !need(s, "pos_embed", 3, 1, -1, D, 0) || !need(s, "norm.weight", 1, D, 0, 0, 0) ||
        !need(s, "norm.bias", 1, D, 0, 0, 0))
        return 0;
    if (depth < 1) { dcal_err("%s: no 'blocks.N.*' tensors (not a timm ViT state dict?)", s->path); return 0; }
    for (int i = 0; i < depth; i++)
        if (!check_block(s, i, D)) return 0;
    int64_t n_pos = cv_find(s, "pos_embed")->shape[1] - (cv_find(s, "dist_token") ? 2 : 1), g = 0;
    while ((g + 1) * (g + 1) <= n_pos) g++;
    if (g * g != n_pos) {
        dcal_err("%s: tensor 'pos_embed' has %lld patch positions, not a square grid", s->path, (long long)n_pos);
        return 0;
    }
    *info = (ConvertInfo){.dim = (int)D, .depth = depth, .patch = (int)pe->shape[2], .grid = (int)g};
    return 1;
}

// Sort the file's tensors: backbone (kept), classifier (kept with keep_head), else refused.
static int select_tensors(const CvSet *in, bool keep_head, CvSet *out, int *depth, ConvertInfo *info) {
    int bad = 0;
    if (cv_find(in, "loss_w") || cv_find(in, "glca_head.weight")) {
        dcal_err("%s: a dcal checkpoint, already in dcal's format (start from its weights with `dcal train --init FILE`)",
                 in->path);
        return 0;
    }
    for (int i = 0; i < in->n && !bad; i++) {
        const CvTensor *t = &in->t[i];
        const char *why = unsupported(t->name);
        int blk;
        if (why) { dcal_err("%s: tensor '%s': %s", in->path, t->name, why); bad++; }
        else if (backbone(t->name, &blk)) {
            if (blk + 1 > *depth) *depth = blk + 1;
            cv_add(out, t->name, t->ndim, t->shape, NULL);
        } else if (classifier(t->name)) {
            if (keep_head && starts(t->name, "head.")) cv_add(out, t->name, t->ndim, t->shape, NULL);
            else info->n_dropped++;
        } else {
            dcal_err("%s: tensor '%s' is not part of a timm ViT backbone (timm names expected: blocks.N.attn.qkv.weight, "
                     "...)", in->path, t->name);
            bad++;
        }
    }
    return !bad;
}

// Convert a timm-named set: check, then write F32 with the kept names.
static int write_timm(const CvSet *in, const char *out_path, bool keep_head, ConvertInfo *info) {
    CvSet keep = {.path = in->path};
    int depth = 0, n_dropped = 0;
    memset(info, 0, sizeof *info);
    int ok = select_tensors(in, keep_head, &keep, &depth, info);
    n_dropped = info->n_dropped;
    ok = ok && check_structure(in, depth, info);
    info->n_dropped = n_dropped;
    const CvTensor *hw = cv_find(&keep, "head.weight");
    if (ok && hw && !(hw->ndim == 2 && hw->shape[1] == info->dim && cv_find(&keep, "head.bias"))) {
        dcal_err("%s: tensor 'head.weight' is not [classes, %d] with a head.bias (a pre-logits head?)", in->path, info->dim);
        ok = 0;
    }
    if (ok) {
        StWriter *w = stw_new();
        char buf[32];
        for (int i = 0; i < keep.n; i++) {
            const CvTensor *t = cv_find(in, keep.t[i].name);
            stw_add_f32(w, t->name, t->data, t->ndim, t->shape);
        }
        info->n_tensors = keep.n;
        info->num_classes = hw ? (int)hw->shape[0] : 0;
        stw_meta(w, "format", "dcal-pretrained-1");
        snprintf(buf, sizeof buf, "%d", info->depth); stw_meta(w, "depth", buf);
        snprintf(buf, sizeof buf, "%d", info->dim); stw_meta(w, "dim", buf);
        snprintf(buf, sizeof buf, "%d", info->patch); stw_meta(w, "patch", buf);
        snprintf(buf, sizeof buf, "%d", info->grid); stw_meta(w, "grid", buf);
        ok = stw_write(w, out_path);
        stw_free(w);
    }
    cv_free(&keep);
    return ok;
}

// A safetensors file's tensors as fp32 (F16, BF16, F64 are widened).
static int read_safetensors(const char *path, CvSet *s) {
    SafeTensors st;
    if (!st_load(&st, path)) return 0;
    int ok = 1;
    for (int i = 0; i < st.n && ok; i++) {
        const StTensor *t = &st.t[i];
        if (t->ndim > 4) { dcal_err("%s: tensor '%s' has %d dimensions (a ViT has at most 4)", path, t->name, t->ndim); ok = 0; break; }
        float *d = xmalloc((size_t)(st_numel(t) ? st_numel(t) : 1) * sizeof(float));
        ok = st_read_f32(&st, t, d);
        cv_add(s, t->name, t->ndim, t->shape, d);
    }
    st_free(&st);
    return ok;
}

static int is_zip(const char *path) {
    unsigned char b[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(b, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(b, "PK\3\4", 4);
}

int convert_vit(const char *in_path, const char *out_path, bool keep_head, ConvertInfo *info) {
    CvSet src = {.path = in_path}, timm = {.path = in_path};
    FILE *f = fopen(in_path, "rb");
    if (!f) { dcal_err("%s: no such file", in_path); return 0; }
    fclose(f);
    int ok;
    if (is_zip(in_path)) {   // .npz; a .pth is a zip too, and npz_read names what it finds instead
        ok = npz_read(in_path, &src) && npz_to_timm(&src, &timm);
        ok = ok && write_timm(&timm, out_path, keep_head, info);
    } else {
        ok = read_safetensors(in_path, &src) && write_timm(&src, out_path, keep_head, info);
    }
    cv_free(&src);
    cv_free(&timm);
    return ok;
}

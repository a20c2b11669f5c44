// npz.c: the original ViT release's .npz (np.savez: a zip of stored .npy
// members) and its Flax names → timm's names and PyTorch layouts, the mapping
// timm's own _load_weights does. Every size read from the file is checked
// against the file's length before it is used.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "core/common.h"
#include "model/convert_int.h"

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const uint8_t *p) { return le16(p) | (uint32_t)le16(p + 2) << 16; }

// npy header: {'descr': '<f4', 'fortran_order': False, 'shape': (768, 3), }
static int npy_header(const char *h, size_t hl, int *esz, int *fortran, int *ndim, int64_t *shape) {
    char buf[512];
    if (hl >= sizeof buf) return 0;
    memcpy(buf, h, hl);
    buf[hl] = 0;
    const char *d = strstr(buf, "'descr'"), *f = strstr(buf, "'fortran_order'"), *s = strstr(buf, "'shape'");
    if (!d || !f || !s) return 0;
    *fortran = !strncmp(f + 15 + strcspn(f + 15, "TF"), "True", 4);
    d = strchr(d + 7, '\'');
    if (!d || (d[1] != '<' && d[1] != '|') || (d[2] != 'f') || (d[3] != '2' && d[3] != '4' && d[3] != '8')) return 0;
    *esz = d[3] - '0';
    s = strchr(s, '(');
    *ndim = 0;
    for (const char *p = s ? s + 1 : NULL; p && *p && *p != ')';) {
        if (*p == ' ' || *p == ',') { p++; continue; }
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0 || *ndim == 4) return 0;
        shape[(*ndim)++] = v;
        p = end;
    }
    return s != NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0) v = ldexpf((float)m, -24);   // subnormal
    else if (e == 31) v = m ? NAN : INFINITY;
    else {
        uint32_t bits = (e + 112) << 23 | m << 13;
        memcpy(&v, &bits, 4);
    }
    return h >> 15 ? -v : v;
}

// Where C-order element i lies in a Fortran-order (column-major) array of that shape.
static int64_t fortran_index(int64_t i, int ndim, const int64_t *shape) {
    int64_t j = 0, stride = 1, idx[4];
    for (int d = ndim - 1; d >= 0; d--) { idx[d] = i % shape[d]; i /= shape[d]; }
    for (int d = 0; d < ndim; d++) { j += idx[d] * stride; stride *= shape[d]; }
    return j;
}

// One member's bytes (an .npy) → a tensor. 0 after an error line.
static int npy_parse(const char *path, const char *name, const uint8_t *b, size_t n, CvSet *s) {
    if (n < 10 || memcmp(b, "\x93NUMPY", 6)) { dcal_err("%s: member '%s' is not an .npy array", path, name); return 0; }
    size_t hl = b[6] == 1 ? le16(b + 8) : n >= 12 ? le32(b + 8) : n, off = b[6] == 1 ? 10 : 12;
    int esz, ndim, fortran;
    int64_t shape[4];
    if (off + hl > n || !npy_header((const char *)b + off, hl, &esz, &fortran, &ndim, shape)) {
        dcal_err("%s: member '%s': unsupported .npy header (float16/32/64, at most 4 dimensions)", path, name);
        return 0;
    }
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++)   // bounded by the member's size, so a hostile shape cannot overflow
        numel = shape[d] && numel > (int64_t)n / shape[d] ? (int64_t)n + 1 : numel * shape[d];
    if ((n - off - hl) % (size_t)esz || (n - off - hl) / (size_t)esz != (size_t)numel) {
        dcal_err("%s: member '%s': %zu data bytes for %lld elements of %d bytes", path, name, n - off - hl,
                 (long long)numel, esz);
        return 0;
    }
    const uint8_t *p = b + off + hl;
    float *d = xmalloc((size_t)(numel ? numel : 1) * sizeof(float));
    for (int64_t i = 0; i < numel; i++) {
        int64_t j = fortran ? fortran_index(i, ndim, shape) : i;
        if (esz == 4) memcpy(&d[i], p + 4 * j, 4);
        else if (esz == 8) { double x; memcpy(&x, p + 8 * j, 8); d[i] = (float)x; }
        else d[i] = half_to_float((uint16_t)le16(p + 2 * j));
    }
    char nm[160];
    snprintf(nm, sizeof nm, "%.*s", (int)(strlen(name) > 4 ? strlen(name) - 4 : strlen(name)), name);   // drop ".npy"
    cv_add(s, nm, ndim, shape, d);
    return 1;
}

// Central directory entry at b[at]: member name and its bytes. 0 after an error line.
static int zip_member(const char *path, const uint8_t *b, size_t n, size_t *at, CvSet *s) {
    size_t c = *at;
    if (c + 46 > n || le32(b + c) != 0x02014b50) { dcal_err("%s: corrupt zip central directory", path); return 0; }
    uint32_t method = le16(b + c + 10), csize = le32(b + c + 20), usize = le32(b + c + 24);
    uint32_t nl = le16(b + c + 28), xl = le16(b + c + 30), cl = le16(b + c + 32), lo = le32(b + c + 42);
    char name[160];
    snprintf(name, sizeof name, "%.*s", (int)(nl < 159 ? nl : 159), (const char *)b + c + 46);
    *at = c + 46 + nl + xl + cl;
    if (nl > 4 && !memcmp(b + c + 46 + nl - 4, ".pkl", 4)) {   // torch.save's zip holds data.pkl
        dcal_err("%s: a PyTorch checkpoint, not an .npz: dump it first with tools/convert_timm.py (README)", path);
        return 0;
    }
    if (method != 0) {
        dcal_err("%s: member '%s' is compressed (np.savez_compressed); re-save it with np.savez", path, name);
        return 0;
    }
    if (csize == 0xffffffffu || lo == 0xffffffffu || (size_t)lo + 30 > n || le32(b + lo) != 0x04034b50) {
        dcal_err("%s: member '%s': zip64 or corrupt local header", path, name);
        return 0;
    }
    size_t data = (size_t)lo + 30 + le16(b + lo + 26) + le16(b + lo + 28);
    if (csize != usize || data + csize > n) { dcal_err("%s: member '%s' runs past the end of the file", path, name); return 0; }
    return npy_parse(path, name, b + data, csize, s);
}

int npz_read(const char *path, CvSet *s) {
    size_t n;
    uint8_t *b = (uint8_t *)read_file(path, &n);
    if (!b) { dcal_err("%s: cannot read", path); return 0; }
    size_t e = n >= 22 ? n - 22 : 0;
    while (e > 0 && le32(b + e) != 0x06054b50 && n - e < 22 + 65535) e--;   // end record (after a comment)
    if (n < 22 || le32(b + e) != 0x06054b50) { dcal_err("%s: a zip file without its end record (truncated?)", path); free(b); return 0; }
    uint32_t count = le16(b + e + 10), cd = le32(b + e + 16);
    size_t at = cd;
    int ok = 1;
    for (uint32_t i = 0; i < count && ok; i++) ok = zip_member(path, b, n, &at, s);
    free(b);
    return ok;
}

// ---- Flax names (vit_jax, big_vision) → timm ---------------------------------

// dst[r][c] = src[c][r] for a src of rows × cols.
static float *transposed(const float *src, int64_t rows, int64_t cols) {
    float *d = xmalloc((size_t)(rows * cols > 0 ? rows * cols : 1) * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) d[c * rows + r] = src[r * cols + c];
    return d;
}

static const CvTensor *flax(const CvSet *f, const char *name) {
    const CvTensor *t = cv_find(f, name);
    if (!t) dcal_err("%s: array '%s' missing (the original ViT .npz has it)", f->path, name);
    return t;
}

static float *copy_of(const CvTensor *t) {
    size_t n = (size_t)cv_numel(t);
    float *d = xmalloc((n ? n : 1) * sizeof(float));
    memcpy(d, t->data, n * sizeof(float));
    return d;
}

// Same data under the timm name, shape given.
static int put(CvSet *o, const CvSet *f, const char *from, const char *to, int ndim, const int64_t *shape) {
    const CvTensor *t = flax(f, from);
    if (!t) return 0;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    if (n != cv_numel(t)) { dcal_err("%s: array '%s' has %lld elements, expected %lld", f->path, from, (long long)cv_numel(t), (long long)n); return 0; }
    cv_add(o, to, ndim, shape, copy_of(t));
    return 1;
}

// A Flax Dense kernel [in, out] (any trailing split of either) → a PyTorch weight [out, in].
static int put_dense(CvSet *o, const CvSet *f, const char *from, const char *to, int64_t in, int64_t out) {
    const CvTensor *t = flax(f, from);
    if (!t) return 0;
    if (cv_numel(t) != in * out) { dcal_err("%s: array '%s' is not a %lldx%lld kernel", f->path, from, (long long)in, (long long)out); return 0; }
    cv_add(o, to, 2, (int64_t[]){out, in}, transposed(t->data, in, out));
    return 1;
}

// The three attention kernels [D, H, hd] into one qkv [3D, D] (rows q | k | v), biases [3D].
static int put_qkv(CvSet *o, const CvSet *f, const char *att, const char *to, int64_t D) {
    float *w = xmalloc((size_t)(3 * D * D) * sizeof(float)), *b = xmalloc((size_t)(3 * D) * sizeof(float));
    static const char *const qkv[] = {"query", "key", "value"};
    for (int k = 0; k < 3; k++) {
        char nk[256], nb[256];
        snprintf(nk, sizeof nk, "%s/%s/kernel", att, qkv[k]);
        snprintf(nb, sizeof nb, "%s/%s/bias", att, qkv[k]);
        const CvTensor *tk = flax(f, nk), *tb = tk ? flax(f, nb) : NULL;
        if (!tk || !tb || cv_numel(tk) != D * D || cv_numel(tb) != D) {
            if (tk && tb) dcal_err("%s: array '%s' is not [%lld, heads, %lld/heads]", f->path, nk, (long long)D, (long long)D);
            free(w); free(b);
            return 0;
        }
        float *t = transposed(tk->data, D, D);
        memcpy(w + k * D * D, t, (size_t)(D * D) * sizeof(float));
        memcpy(b + k * D, tb->data, (size_t)D * sizeof(float));
        free(t);
    }
    char n[200];
    snprintf(n, sizeof n, "%s.weight", to); cv_add(o, n, 2, (int64_t[]){3 * D, D}, w);
    snprintf(n, sizeof n, "%s.bias", to); cv_add(o, n, 1, (int64_t[]){3 * D}, b);
    return 1;
}

// LayerNorm scale/bias → weight/bias.
static int put_ln(CvSet *o, const CvSet *f, const char *from, const char *to, int64_t D) {
    char a[256], b[200];
    snprintf(a, sizeof a, "%s/scale", from); snprintf(b, sizeof b, "%s.weight", to);
    if (!put(o, f, a, b, 1, &D)) return 0;
    snprintf(a, sizeof a, "%s/bias", from); snprintf(b, sizeof b, "%s.bias", to);
    return put(o, f, a, b, 1, &D);
}

// Block i. vit_jax numbers the sub-modules LayerNorm_0, MHDPA_1, LayerNorm_2, MlpBlock_3; big_vision 0, 0, 1, 0.
static int put_block(CvSet *o, const CvSet *f, int i, int64_t D, bool bv) {
    char p[96], s[160], d[128];
    snprintf(p, sizeof p, "Transformer/encoderblock_%d", i);
    snprintf(d, sizeof d, "blocks.%d", i);
    const char *att = bv ? "MultiHeadDotProductAttention_0" : "MultiHeadDotProductAttention_1";
    const char *mlp = bv ? "MlpBlock_0" : "MlpBlock_3";
    snprintf(s, sizeof s, "%s/%s/Dense_0/bias", p, mlp);
    const CvTensor *b1 = flax(f, s);
    if (!b1) return 0;
    int64_t H = cv_numel(b1);
    char a[512], t[160], sa[200];
    snprintf(sa, sizeof sa, "%s/%s", p, att);
#define PUT_LN(from, to) (snprintf(a, sizeof a, "%s/%s", p, from), snprintf(t, sizeof t, "%s.%s", d, to), put_ln(o, f, a, t, D))
#define PUT_DENSE(from, to, in, out) (snprintf(a, sizeof a, "%s/%s", p, from), snprintf(t, sizeof t, "%s.%s", d, to), put_dense(o, f, a, t, in, out))
#define PUT_BIAS(from, to, n) (snprintf(a, sizeof a, "%s/%s", p, from), snprintf(t, sizeof t, "%s.%s", d, to), put(o, f, a, t, 1, (int64_t[]){n}))
    char qkv[160];
    snprintf(qkv, sizeof qkv, "%s.attn.qkv", d);
    int ok = PUT_LN("LayerNorm_0", "norm1") && put_qkv(o, f, sa, qkv, D) &&
             PUT_DENSE(bv ? "MultiHeadDotProductAttention_0/out/kernel" : "MultiHeadDotProductAttention_1/out/kernel", "attn.proj.weight", D, D) &&
             PUT_BIAS(bv ? "MultiHeadDotProductAttention_0/out/bias" : "MultiHeadDotProductAttention_1/out/bias", "attn.proj.bias", D) &&
             PUT_LN(bv ? "LayerNorm_1" : "LayerNorm_2", "norm2");
    snprintf(s, sizeof s, "%s/Dense_0/kernel", mlp);
    ok = ok && PUT_DENSE(s, "mlp.fc1.weight", D, H) && (snprintf(s, sizeof s, "%s/Dense_0/bias", mlp), PUT_BIAS(s, "mlp.fc1.bias", H));
    snprintf(s, sizeof s, "%s/Dense_1/kernel", mlp);
    ok = ok && PUT_DENSE(s, "mlp.fc2.weight", H, D) && (snprintf(s, sizeof s, "%s/Dense_1/bias", mlp), PUT_BIAS(s, "mlp.fc2.bias", D));
#undef PUT_LN
#undef PUT_DENSE
#undef PUT_BIAS
    return ok;
}

// embedding/kernel [p, p, 3, D] (HWIO) → patch_embed.proj.weight [D, 3, p, p].
static int put_patch(CvSet *o, const CvSet *f, int64_t D) {
    const CvTensor *k = flax(f, "embedding/kernel");
    if (!k) return 0;
    if (k->ndim != 4 || k->shape[2] != 3 || k->shape[3] != D || k->shape[0] != k->shape[1]) {
        dcal_err("%s: array 'embedding/kernel' is not [p, p, 3, %lld]", f->path, (long long)D);
        return 0;
    }
    int64_t p = k->shape[0];
    float *w = xmalloc((size_t)(D * 3 * p * p) * sizeof(float));
    for (int64_t y = 0; y < p; y++)
        for (int64_t x = 0; x < p; x++)
            for (int64_t c = 0; c < 3; c++)
                for (int64_t d = 0; d < D; d++) w[((d * 3 + c) * p + y) * p + x] = k->data[((y * p + x) * 3 + c) * D + d];
    cv_add(o, "patch_embed.proj.weight", 4, (int64_t[]){D, 3, p, p}, w);
    return put(o, f, "embedding/bias", "patch_embed.proj.bias", 1, &D);
}

int npz_to_timm(const CvSet *f, CvSet *o) {
    const CvTensor *cls = flax(f, "cls");
    if (!cls) return 0;
    int64_t D = cls->shape[cls->ndim - 1];
    const CvTensor *pos = flax(f, "Transformer/posembed_input/pos_embedding");
    if (!pos || pos->ndim != 3) return pos ? (dcal_err("%s: 'Transformer/posembed_input/pos_embedding' is not [1, N, D]", f->path), 0) : 0;
    bool bv = cv_find(f, "Transformer/encoderblock_0/MlpBlock_0/Dense_0/bias") != NULL;
    int ok = put(o, f, "cls", "cls_token", 3, (int64_t[]){1, 1, D}) && put_patch(o, f, D) &&
             put(o, f, "Transformer/posembed_input/pos_embedding", "pos_embed", 3, pos->shape);
    char n[96];
    for (int i = 0; ok && (snprintf(n, sizeof n, "Transformer/encoderblock_%d/LayerNorm_0/scale", i), cv_find(f, n)); i++)
        ok = put_block(o, f, i, D, bv);
    ok = ok && put_ln(o, f, "Transformer/encoder_norm", "norm", D);
    const CvTensor *hk = cv_find(f, "head/kernel");
    // A representation layer (pre_logits, ImageNet-21k releases) sits under the head: dcal has
    // none, so that head cannot be kept; the backbone alone is what fine-tuning needs.
    if (ok && hk && hk->ndim == 2 && hk->shape[0] == D && !cv_find(f, "pre_logits/kernel"))
        ok = put_dense(o, f, "head/kernel", "head.weight", D, hk->shape[1]) &&
             put(o, f, "head/bias", "head.bias", 1, &hk->shape[1]);
    return ok;
}

// safetensors.c: reader (mmap; the JSON header is parsed by core/json.c) and writer.
// Format: u64 LE header length n, n bytes of JSON, then the data section that
// the header's data_offsets index (relative to the end of the header).
#include "core/safetensors.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/common.h"
#include "core/json.h"

static int dtype_size(const char *d) {
    static const struct { const char *n; int sz; } tab[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
        {"I8", 1}, {"U8", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8}, {"BOOL", 1},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(d, tab[i].n)) return tab[i].sz;
    return 0;
}

// ----------------------------------------------------------------------------
// Header: parsed by core/json.c, then read into StTensor entries. JSON errors
// name the byte offset into the header; content errors name the tensor.

static int hdr_fail(const SafeTensors *st, const Json *at, const char *what) {
    dcal_err("%s: bad header JSON at byte %ld: %s", st->path, (long)at->pos, what);
    return 0;
}

// [int, int, ...] into v (at most max entries).
static int int_array(const SafeTensors *st, const Json *a, int64_t *v, int max, int *n) {
    if (a->type != JSON_ARRAY) return hdr_fail(st, a, "expected '['");
    if (a->len > max) return hdr_fail(st, &a->items[max], "array too long");
    for (int i = 0; i < a->len; i++) {
        const Json *x = &a->items[i];
        if (x->type != JSON_NUMBER) return hdr_fail(st, x, "expected an integer");
        if (!x->is_int) return hdr_fail(st, x, "integer out of range or not an integer");
        v[i] = x->i;
    }
    *n = a->len;
    return 1;
}

static int tensor_dtype(const SafeTensors *st, const Json *d, StTensor *t) {
    if (d->type != JSON_STRING) return hdr_fail(st, d, "expected a string");
    if (d->slen >= sizeof t->dtype || strlen(d->s) != d->slen) {
        dcal_err("%s: tensor '%s': unknown dtype '%s'", st->path, t->name, d->s);
        return 0;
    }
    snprintf(t->dtype, sizeof t->dtype, "%s", d->s);
    return 1;
}

static int tensor_offsets(const SafeTensors *st, const Json *a, StTensor *t) {
    int64_t o[2];
    int n;
    if (!int_array(st, a, o, 2, &n)) return 0;
    if (n != 2 || o[0] < 0 || o[1] < o[0]) {
        dcal_err("%s: tensor '%s': data_offsets must be [begin, end] with 0 <= begin <= end", st->path, t->name);
        return 0;
    }
    t->begin = (size_t)o[0];
    t->end = (size_t)o[1];
    return 1;
}

// One tensor entry; keys other than dtype, shape and data_offsets are allowed and ignored.
static int parse_tensor(const SafeTensors *st, const Json *e, StTensor *t) {
    if (e->type != JSON_OBJECT) return hdr_fail(st, e, "expected '{' for a tensor entry");
    if (!e->len) return hdr_fail(st, e, "empty tensor entry");
    int d = json_dup_key(e);
    if (d >= 0) return hdr_fail(st, &e->items[d], "duplicate key in a tensor entry");
    const Json *dt = json_get(e, "dtype"), *sh = json_get(e, "shape"), *off = json_get(e, "data_offsets");
    if (dt && !tensor_dtype(st, dt, t)) return 0;
    if (sh && !int_array(st, sh, t->shape, 8, &t->ndim)) return 0;
    if (off && !tensor_offsets(st, off, t)) return 0;
    if (!dt || !sh || !off) {
        dcal_err("%s: tensor '%s': needs dtype, shape and data_offsets", st->path, t->name);
        return 0;
    }
    return 1;
}

// __metadata__: string → string, keys unique.
static int parse_meta(SafeTensors *st, const Json *m) {
    if (m->type != JSON_OBJECT) return hdr_fail(st, m, "__metadata__ must be an object of strings");
    int d = json_dup_key(m);
    if (d >= 0) return hdr_fail(st, &m->items[d], "duplicate key in __metadata__");
    if (!m->len) return 1;
    st->meta_key = xcalloc((size_t)m->len, sizeof(char *));
    st->meta_val = xcalloc((size_t)m->len, sizeof(char *));
    for (int i = 0; i < m->len; i++) {
        const Json *v = &m->items[i];
        if (v->type != JSON_STRING) return hdr_fail(st, v, "__metadata__ must be an object of strings");
        if (strlen(v->s) != v->slen) return hdr_fail(st, v, "\\u0000 in a __metadata__ value");
        st->meta_key[i] = xstrdup(m->keys[i]);
        st->meta_val[i] = xstrdup(v->s);
        st->n_meta = i + 1;
    }
    return 1;
}

static int header_entries(SafeTensors *st, const Json *root) {
    if (root->type != JSON_OBJECT) return hdr_fail(st, root, "header must be a JSON object");
    int d = json_dup_key(root);
    if (d >= 0) {
        dcal_err("%s: tensor '%s' appears twice in the header", st->path, root->keys[d]);
        return 0;
    }
    int n_tensors = root->len - (json_get(root, "__metadata__") != NULL);
    if (n_tensors > ST_MAX_TENSORS) {
        dcal_err("%s: header lists %d tensors, over the limit of %d", st->path, n_tensors, ST_MAX_TENSORS);
        return 0;
    }
    st->t = xcalloc((size_t)root->len + 1, sizeof(StTensor));
    for (int i = 0; i < root->len; i++) {
        const char *k = root->keys[i];
        if (!strcmp(k, "__metadata__")) {
            if (!parse_meta(st, &root->items[i])) return 0;
            continue;
        }
        if (strlen(k) >= sizeof st->t[0].name) {
            dcal_err("%s: tensor name too long (%zu bytes): '%.40s...'", st->path, strlen(k), k);
            return 0;
        }
        StTensor *t = &st->t[st->n++];
        snprintf(t->name, sizeof t->name, "%s", k);
        if (!parse_tensor(st, &root->items[i], t)) return 0;
    }
    return 1;
}

static int parse_header(SafeTensors *st, const char *hdr, size_t len) {
    Json root;
    JsonError err;
    // Repeated keys are let through here so a repeated tensor gets its own message.
    if (!json_parse(hdr, len, JSON_ALLOW_DUP_KEYS, &root, &err)) {
        dcal_err("%s: bad header JSON at byte %ld: %s", st->path, (long)err.offset, err.msg);
        return 0;
    }
    int ok = header_entries(st, &root);
    json_free(&root);
    return ok;
}

// ----------------------------------------------------------------------------
// Validation against the data section.

static int check_tensor(const SafeTensors *st, const StTensor *t) {
    int es = dtype_size(t->dtype);
    if (!es) { dcal_err("%s: tensor '%s': unknown dtype '%s'", st->path, t->name, t->dtype); return 0; }
    int64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0 || (t->shape[d] && numel > INT64_MAX / 8 / t->shape[d])) {
            dcal_err("%s: tensor '%s': bad shape", st->path, t->name);
            return 0;
        }
        numel *= t->shape[d];
    }
    if (t->end > st->data_len) {
        dcal_err("%s: tensor '%s': offsets out of range ([%zu, %zu) but the data section has %zu bytes; truncated?)",
                 st->path, t->name, t->begin, t->end, st->data_len);
        return 0;
    }
    if ((uint64_t)(t->end - t->begin) != (uint64_t)numel * (uint64_t)es) {
        dcal_err("%s: tensor '%s': data_offsets span %zu bytes but shape x %s needs %lld", st->path, t->name,
                 t->end - t->begin, t->dtype, (long long)numel * es);
        return 0;
    }
    return 1;
}

static int by_begin(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    return x->begin != y->begin ? (x->begin > y->begin) - (x->begin < y->begin) : (x->end > y->end) - (x->end < y->end);
}

// The format's rule (reference Metadata::validate): sorted by offset, each tensor
// starts where the previous ended, and the last ends at the end of the data
// section, so no byte is shared by two tensors or belongs to none.
static int check_layout(const SafeTensors *st) {
    const StTensor **s = xmalloc(sizeof *s * (size_t)(st->n + 1));
    for (int i = 0; i < st->n; i++) s[i] = &st->t[i];
    qsort(s, (size_t)st->n, sizeof *s, by_begin);
    size_t at = 0;
    int ok = 1;
    for (int i = 0; i < st->n && ok; i++) {
        if (s[i]->begin < at) {
            dcal_err("%s: tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap in the data section", st->path,
                     s[i - 1]->name, s[i - 1]->begin, s[i - 1]->end, s[i]->name, s[i]->begin, s[i]->end);
            ok = 0;
        } else if (s[i]->begin > at) {
            dcal_err("%s: tensor '%s': data_offsets [%zu, %zu) leave bytes [%zu, %zu) unused (the format needs "
                     "contiguous data)", st->path, s[i]->name, s[i]->begin, s[i]->end, at, s[i]->begin);
            ok = 0;
        }
        at = s[i]->end;
    }
    if (ok && at != st->data_len) {
        dcal_err("%s: tensors cover %zu of the data section's %zu bytes (trailing bytes; the format forbids them)",
                 st->path, at, st->data_len);
        ok = 0;
    }
    free(s);
    return ok;
}

static const SafeTensors *sort_st;   // qsort has no context argument; loads are single-threaded
static int by_name(const void *a, const void *b) {
    return strcmp(sort_st->t[*(const int *)a].name, sort_st->t[*(const int *)b].name);
}

// The name index st_find searches (names are unique: the header check saw to it).
static void index_names(SafeTensors *st) {
    st->by_name = xmalloc(sizeof(int) * (size_t)(st->n + 1));
    for (int i = 0; i < st->n; i++) st->by_name[i] = i;
    sort_st = st;
    qsort(st->by_name, (size_t)st->n, sizeof(int), by_name);
    sort_st = NULL;
}

// What a file that fails as safetensors really is, from its first bytes: users
// hand dcal PyTorch and NumPy files. Asked only once the header length is already
// impossible, since a valid header length may begin with the same bytes.
static const char *foreign_format(const uint8_t *b, size_t n) {
    if (n >= 4 && !memcmp(b, "PK\3\4", 4)) return "a zip archive, as PyTorch .pth/.bin and NumPy .npz files are";
    if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5) return "a Python pickle, as legacy PyTorch .pth/.bin files are";
    if (n >= 6 && !memcmp(b, "\x93NUMPY", 6)) return "a NumPy .npy array";
    return NULL;
}

// One error line for an impossible header: the foreign format when recognised, else what.
static void bad_header(const char *path, const uint8_t *b, size_t size, const char *what) {
    const char *kind = foreign_format(b, size);
    if (kind) dcal_err("%s: not a safetensors file (%s); convert ViT weights with `dcal convert`", path, kind);
    else dcal_err("%s: %s", path, what);
}

// Map the whole file and read the header length; 0 after an error line (nothing held).
static int st_map(SafeTensors *st, const char *path, uint64_t *hlen) {
    int fd = open(path, O_RDONLY);
    if (fd < 0 && errno == ENOENT) { dcal_err("%s: no such file", path); return 0; }
    if (fd < 0) { dcal_err("%s: cannot open (%s)", path, strerror(errno)); return 0; }
    struct stat sb;
    if (fstat(fd, &sb) != 0) { dcal_err("%s: cannot stat (%s)", path, strerror(errno)); close(fd); return 0; }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        dcal_err("%s: truncated (%zu bytes; a safetensors file starts with an 8-byte header length)", path, size);
        close(fd);
        return 0;
    }
    // mmap: pretrained weights are hundreds of MB and are read once.
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) { dcal_err("%s: cannot mmap (%s)", path, strerror(errno)); return 0; }
    const uint8_t *b = m;
    *hlen = 0;
    for (int i = 7; i >= 0; i--) *hlen = *hlen << 8 | b[i];
    char what[160];
    if (*hlen > size - 8)
        snprintf(what, sizeof what, "truncated (header says %llu bytes, file has %zu)", (unsigned long long)*hlen, size);
    else if (*hlen > ST_MAX_HEADER)
        snprintf(what, sizeof what, "header of %llu bytes is over the 100 MiB limit (not a safetensors file?)",
                 (unsigned long long)*hlen);
    if (*hlen > size - 8 || *hlen > ST_MAX_HEADER) {
        bad_header(path, b, size, what);
        munmap(m, size);
        return 0;
    }
    st->map = m;
    st->map_len = size;
    return 1;
}

int st_load(SafeTensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    snprintf(st->path, sizeof st->path, "%s", path);
    uint64_t hlen;
    if (!st_map(st, path, &hlen)) return 0;
    const char *hdr = (const char *)st->map + 8;
    const char *nul = memchr(hdr, 0, (size_t)hlen);
    if (nul) {   // a NUL inside the header: not text
        dcal_err("%s: bad header JSON (NUL byte at %zu; not a safetensors file?)", path, (size_t)(nul - hdr));
        st_free(st);
        return 0;
    }
    st->data = (uint8_t *)st->map + 8 + hlen;
    st->data_len = st->map_len - 8 - (size_t)hlen;
    int ok = parse_header(st, hdr, (size_t)hlen);
    for (int i = 0; ok && i < st->n; i++) ok = check_tensor(st, &st->t[i]);
    if (ok) ok = check_layout(st);
    if (ok) index_names(st);
    else st_free(st);
    return ok;
}

const StTensor *st_find(const SafeTensors *st, const char *name) {
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(st->t[st->by_name[mid]].name, name);
        if (!c) return &st->t[st->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

int64_t st_numel(const StTensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = h >> 10 & 31, man = h & 1023, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else {   // subnormal: renormalise
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 1024));
            u = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 1023) << 13;
        }
    } else if (exp == 31) u = sign | 0x7F800000u | man << 13;   // inf / nan
    else u = sign | (exp + 127 - 15) << 23 | man << 13;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// Data is little-endian and may be unaligned inside the mmap: memcpy per element.
int st_read_f32(const SafeTensors *st, const StTensor *t, float *out) {
    const uint8_t *p = st->data + t->begin;
    int64_t n = st_numel(t);
    if (!strcmp(t->dtype, "F32")) memcpy(out, p, (size_t)n * 4);
    else if (!strcmp(t->dtype, "F16"))
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); out[i] = f16_to_f32(h); }
    else if (!strcmp(t->dtype, "BF16"))   // bf16 is the top half of an fp32
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); uint32_t u = (uint32_t)h << 16; memcpy(&out[i], &u, 4); }
    else if (!strcmp(t->dtype, "F64"))
        for (int64_t i = 0; i < n; i++) { double d; memcpy(&d, p + 8 * i, 8); out[i] = (float)d; }
    else {
        dcal_err("%s: tensor '%s': dtype %s cannot be read as float (F32, F16, BF16, F64 only)", st->path, t->name, t->dtype);
        return 0;
    }
    return 1;
}

// The file is mapped read-only and never written, so dropping pages only costs a re-read.
void st_release(const SafeTensors *st, const StTensor *t) {
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)(st->data + t->begin) & ~(pg - 1);
    uintptr_t b = (uintptr_t)(st->data + t->end);
    if (st->map && b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

int st_read_i32(const SafeTensors *st, const StTensor *t, int32_t *out) {
    const uint8_t *p = st->data + t->begin;
    int64_t n = st_numel(t);
    if (!strcmp(t->dtype, "I32")) { memcpy(out, p, (size_t)n * 4); return 1; }
    if (strcmp(t->dtype, "I64")) {
        dcal_err("%s: tensor '%s': dtype %s cannot be read as int32 (I32, I64 only)", st->path, t->name, t->dtype);
        return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t v;
        memcpy(&v, p + 8 * i, 8);
        if (v < INT32_MIN || v > INT32_MAX) {
            dcal_err("%s: tensor '%s': element %lld = %lld does not fit int32", st->path, t->name, (long long)i, (long long)v);
            return 0;
        }
        out[i] = (int32_t)v;
    }
    return 1;
}

const char *st_meta(const SafeTensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta_key[i], key)) return st->meta_val[i];
    return NULL;
}

// Digits only: strtoull would take a sign, spaces and hex, and wrap "-1" to 2^64-1.
int st_meta_u64(const SafeTensors *st, const char *key, uint64_t max, uint64_t *out) {
    const char *v = st_meta(st, key);
    if (!v) { dcal_err("%s: metadata '%s' missing", st->path, key); return 0; }
    uint64_t x = 0;
    int ok = *v && (v[0] != '0' || !v[1]);
    for (const char *p = v; ok && *p; p++) {
        ok = *p >= '0' && *p <= '9' && x <= (UINT64_MAX - (uint64_t)(*p - '0')) / 10;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    if (!ok) { dcal_err("%s: metadata '%s': '%.40s' is not a decimal integer", st->path, key, v); return 0; }
    if (x > max) {
        dcal_err("%s: metadata '%s': %llu is out of range [0, %llu]", st->path, key, (unsigned long long)x,
                 (unsigned long long)max);
        return 0;
    }
    *out = x;
    return 1;
}

void st_free(SafeTensors *st) {
    if (st->map) munmap(st->map, st->map_len);
    free(st->by_name);
    for (int i = 0; i < st->n_meta; i++) { free(st->meta_key[i]); free(st->meta_val[i]); }
    free(st->meta_key); free(st->meta_val); free(st->t);
    memset(st, 0, sizeof *st);
}

// ----------------------------------------------------------------------------
// Writer: tensors laid out in the order added, no gaps (the format forbids holes).

// data: the tensor's bytes, copied when added; or NULL and fill(ctx, dst) writes them at stw_write.
typedef struct {
    char *name;
    char dtype[8];
    int ndim;
    int64_t shape[8];
    void *data;
    size_t bytes;
    StwFill fill;
    void *ctx;
} StwEntry;
struct StWriter {
    int n, cap;
    StwEntry *e;
    int n_meta;
    char **mk, **mv;
    void **owned;   // stw_own's blocks, freed with the writer
    int n_owned;
};

StWriter *stw_new(void) { return xcalloc(1, sizeof(StWriter)); }

static StwEntry *stw_entry(StWriter *w, const char *name, const char *dtype, int es, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > 8) dcal_die("safetensors: tensor '%s': %d dims (max 8)", name, ndim);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->e = realloc(w->e, sizeof(StwEntry) * (size_t)w->cap);
        if (!w->e) dcal_die("out of host memory");
    }
    StwEntry *e = &w->e[w->n++];
    memset(e, 0, sizeof *e);
    e->name = xstrdup(name);
    snprintf(e->dtype, sizeof e->dtype, "%s", dtype);
    e->ndim = ndim;
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) { e->shape[d] = shape[d]; numel *= (size_t)shape[d]; }
    e->bytes = numel * (size_t)es;
    return e;
}

static void stw_add(StWriter *w, const char *name, const char *dtype, int es, const void *data, int ndim, const int64_t *shape) {
    StwEntry *e = stw_entry(w, name, dtype, es, ndim, shape);
    e->data = xmalloc(e->bytes);
    memcpy(e->data, data, e->bytes);
}

void stw_own(StWriter *w, void *p) {
    void **o = realloc(w->owned, sizeof(void *) * (size_t)(w->n_owned + 1));
    if (!o) dcal_die("out of host memory");
    w->owned = o;
    w->owned[w->n_owned++] = p;
}

void stw_add_f32_fill(StWriter *w, const char *name, int ndim, const int64_t *shape, StwFill fill, void *ctx) {
    StwEntry *e = stw_entry(w, name, "F32", 4, ndim, shape);
    e->fill = fill, e->ctx = ctx;
}

void stw_add_f32(StWriter *w, const char *name, const float *data, int ndim, const int64_t *shape) {
    stw_add(w, name, "F32", 4, data, ndim, shape);
}
void stw_add_i32(StWriter *w, const char *name, const int32_t *data, int ndim, const int64_t *shape) {
    stw_add(w, name, "I32", 4, data, ndim, shape);
}

void stw_meta(StWriter *w, const char *key, const char *value) {
    for (int i = 0; i < w->n_meta; i++)   // a repeated key replaces the value
        if (!strcmp(w->mk[i], key)) { free(w->mv[i]); w->mv[i] = xstrdup(value); return; }
    w->mk = realloc(w->mk, sizeof(char *) * (size_t)(w->n_meta + 1));
    w->mv = realloc(w->mv, sizeof(char *) * (size_t)(w->n_meta + 1));
    if (!w->mk || !w->mv) dcal_die("out of host memory");
    w->mk[w->n_meta] = xstrdup(key);
    w->mv[w->n_meta++] = xstrdup(value);
}

// The header: {"__metadata__":{...},"name":{"dtype":..,"shape":[..],"data_offsets":[b,e]},...},
// compact, in the order added (checkpoint files diff cleanly between runs).
static void header_json(const StWriter *w, JsonW *h, size_t *data_len) {
    jw_begin_object(h);
    if (w->n_meta) {
        jw_key(h, "__metadata__");
        jw_begin_object(h);
        for (int i = 0; i < w->n_meta; i++) jw_kv_string(h, w->mk[i], w->mv[i]);
        jw_end_object(h);
    }
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const StwEntry *e = &w->e[i];
        jw_key(h, e->name);
        jw_begin_object(h);
        jw_kv_string(h, "dtype", e->dtype);
        jw_key(h, "shape");
        jw_begin_array(h);
        for (int d = 0; d < e->ndim; d++) jw_int(h, e->shape[d]);
        jw_end_array(h);
        jw_key(h, "data_offsets");
        jw_begin_array(h);
        jw_uint(h, off);
        jw_uint(h, off + e->bytes);
        jw_end_array(h);
        jw_end_object(h);
        off += e->bytes;
    }
    jw_end_object(h);
    // Pad with spaces so the data section starts 8-byte aligned (allowed by the format).
    size_t n;
    while (jw_text(h, &n), (8 + n) % 8) jw_append(h, " ");
    *data_len = off;
}

// Streamed to the temp file, header then tensors in order: a filled tensor passes through one
// buffer of the largest such tensor's size, so writing a checkpoint costs one tensor of memory,
// not the file's size (which a contiguous image of the file did, on top of the copies).
int stw_write(StWriter *w, const char *path) {
    JsonW h;
    size_t off, hn, most = 0;
    jw_init(&h, false, 0);
    header_json(w, &h, &off);
    const char *hs = jw_text(&h, &hn);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hn >> (8 * i));
    for (int i = 0; i < w->n; i++)
        if (w->e[i].fill && w->e[i].bytes > most) most = w->e[i].bytes;
    void *buf = most ? xmalloc(most) : NULL;
    AtomicFile f;
    int ok = atomic_open(&f, path) && atomic_write(&f, len8, 8) && atomic_write(&f, hs, hn);
    for (int i = 0; ok && i < w->n; i++) {
        const StwEntry *e = &w->e[i];
        if (e->fill && !e->fill(e->ctx, buf)) {
            atomic_abort(&f);   // fill's error line names the tensor
            ok = 0;
        } else {
            ok = atomic_write(&f, e->fill ? buf : e->data, e->bytes);
        }
    }
    ok = ok && atomic_commit(&f);
    free(buf);
    jw_free(&h);
    return ok;
}

void stw_free(StWriter *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) { free(w->e[i].name); free(w->e[i].data); }
    for (int i = 0; i < w->n_meta; i++) { free(w->mk[i]); free(w->mv[i]); }
    for (int i = 0; i < w->n_owned; i++) free(w->owned[i]);
    free(w->e); free(w->mk); free(w->mv); free(w->owned); free(w);
}

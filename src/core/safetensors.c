// safetensors.c: reader (mmap + a small JSON parser for the header) and writer.
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
// JSON: just enough for safetensors headers. The cursor walks a NUL-terminated
// copy of the header; every failure reports the byte offset into the header.

typedef struct { const char *s, *p, *path; } Js;

static int js_fail(Js *j, const char *what) {
    dcal_err("%s: bad header JSON at byte %ld: %s", j->path, (long)(j->p - j->s), what);
    return 0;
}
static void js_ws(Js *j) { while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r') j->p++; }
static int js_eat(Js *j, char c) {
    js_ws(j);
    if (*j->p != c) return 0;
    j->p++;
    return 1;
}
static void put_utf8(char **o, unsigned cp) {
    char *q = *o;
    if (cp < 0x80) *q++ = (char)cp;
    else if (cp < 0x800) { *q++ = (char)(0xC0 | cp >> 6); *q++ = (char)(0x80 | (cp & 63)); }
    else if (cp < 0x10000) { *q++ = (char)(0xE0 | cp >> 12); *q++ = (char)(0x80 | (cp >> 6 & 63)); *q++ = (char)(0x80 | (cp & 63)); }
    else { *q++ = (char)(0xF0 | cp >> 18); *q++ = (char)(0x80 | (cp >> 12 & 63)); *q++ = (char)(0x80 | (cp >> 6 & 63)); *q++ = (char)(0x80 | (cp & 63)); }
    *o = q;
}
static int hex4(const char *p, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        *v = *v * 16 + (unsigned)d;
    }
    return 1;
}
// Parse a string; returns a malloc'd UTF-8 copy (escapes decoded) or NULL after an error.
static char *js_str(Js *j) {
    js_ws(j);
    if (*j->p != '"') { js_fail(j, "expected a string"); return NULL; }
    j->p++;
    const char *e = j->p;
    while (*e && *e != '"') e += (*e == '\\' && e[1]) ? 2 : 1;
    if (!*e) { js_fail(j, "unterminated string"); return NULL; }
    char *out = xmalloc((size_t)(e - j->p) + 1), *o = out;   // decoded is never longer
    while (j->p < e) {
        char c = *j->p++;
        if ((unsigned char)c < 0x20) { free(out); js_fail(j, "control character in string"); return NULL; }
        if (c != '\\') { *o++ = c; continue; }
        c = *j->p++;
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (e - j->p < 4 || !hex4(j->p, &cp)) { free(out); js_fail(j, "bad \\u escape"); return NULL; }
            j->p += 4;
            // A surrogate pair encodes one code point above U+FFFF.
            if (cp >= 0xD800 && cp < 0xDC00 && e - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u' &&
                hex4(j->p + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                j->p += 6;
            }
            put_utf8(&o, cp);
            break;
        }
        default: free(out); js_fail(j, "bad escape"); return NULL;
        }
    }
    *o = 0;
    j->p = e + 1;
    return out;
}
static int js_int(Js *j, int64_t *v) {
    js_ws(j);
    const char *p = j->p;
    if (*p == '-') p++;
    if (*p < '0' || *p > '9') return js_fail(j, "expected an integer");
    char *end;
    errno = 0;
    long long x = strtoll(j->p, &end, 10);
    if (errno || *end == '.' || *end == 'e' || *end == 'E') return js_fail(j, "integer out of range or not an integer");
    j->p = end;
    *v = x;
    return 1;
}
// Skip any value (unknown keys are allowed by the format).
static int js_skip(Js *j, int depth) {
    js_ws(j);
    if (depth > 64) return js_fail(j, "nested too deeply");
    char c = *j->p;
    if (c == '"') { char *s = js_str(j); free(s); return s != NULL; }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        if (js_eat(j, close)) return 1;
        do {
            if (c == '{') {
                char *k = js_str(j);
                if (!k) return 0;
                free(k);
                if (!js_eat(j, ':')) return js_fail(j, "expected ':'");
            }
            if (!js_skip(j, depth + 1)) return 0;
        } while (js_eat(j, ','));
        return js_eat(j, close) ? 1 : js_fail(j, "expected ',' or a closing bracket");
    }
    const char *s = j->p;
    while (*j->p && strchr("+-.0123456789eEtruefalsn", *j->p)) j->p++;
    return j->p > s ? 1 : js_fail(j, "expected a value");
}
// [int, int, ...] into v (at most max entries).
static int js_int_array(Js *j, int64_t *v, int max, int *n) {
    *n = 0;
    if (!js_eat(j, '[')) return js_fail(j, "expected '['");
    if (js_eat(j, ']')) return 1;
    do {
        if (*n >= max) return js_fail(j, "array too long");
        if (!js_int(j, &v[(*n)++])) return 0;
    } while (js_eat(j, ','));
    return js_eat(j, ']') ? 1 : js_fail(j, "expected ',' or ']'");
}

static int parse_tensor(Js *j, SafeTensors *st, StTensor *t) {
    int have_dtype = 0, have_shape = 0, have_off = 0;
    if (!js_eat(j, '{')) return js_fail(j, "expected '{' for a tensor entry");
    if (js_eat(j, '}')) return js_fail(j, "empty tensor entry");
    do {
        char *k = js_str(j);
        if (!k) return 0;
        if (!js_eat(j, ':')) { free(k); return js_fail(j, "expected ':'"); }
        int ok = 1;
        if (!strcmp(k, "dtype")) {
            char *d = js_str(j);
            ok = d != NULL;
            if (ok && strlen(d) >= sizeof t->dtype) {
                dcal_err("%s: tensor '%s': unknown dtype '%s'", st->path, t->name, d);
                ok = 0;
            }
            if (ok) snprintf(t->dtype, sizeof t->dtype, "%s", d);
            free(d);
            have_dtype = 1;
        } else if (!strcmp(k, "shape")) {
            ok = js_int_array(j, t->shape, 8, &t->ndim);
            have_shape = 1;
        } else if (!strcmp(k, "data_offsets")) {
            int64_t o[2]; int n;
            ok = js_int_array(j, o, 2, &n);
            if (ok && (n != 2 || o[0] < 0 || o[1] < o[0])) {
                dcal_err("%s: tensor '%s': data_offsets must be [begin, end] with 0 <= begin <= end", st->path, t->name);
                ok = 0;
            }
            if (ok) { t->begin = (size_t)o[0]; t->end = (size_t)o[1]; }
            have_off = 1;
        } else {
            ok = js_skip(j, 1);
        }
        free(k);
        if (!ok) return 0;
    } while (js_eat(j, ','));
    if (!js_eat(j, '}')) return js_fail(j, "expected ',' or '}'");
    if (!have_dtype || !have_shape || !have_off) {
        dcal_err("%s: tensor '%s': needs dtype, shape and data_offsets", st->path, t->name);
        return 0;
    }
    return 1;
}

static int parse_meta(Js *j, SafeTensors *st) {
    if (!js_eat(j, '{')) return js_fail(j, "__metadata__ must be an object of strings");
    if (js_eat(j, '}')) return 1;
    do {
        char *k = js_str(j);
        if (!k) return 0;
        if (!js_eat(j, ':')) { free(k); return js_fail(j, "expected ':'"); }
        char *v = js_str(j);
        if (!v) { free(k); return 0; }
        st->meta_key = realloc(st->meta_key, sizeof(char *) * (size_t)(st->n_meta + 1));
        st->meta_val = realloc(st->meta_val, sizeof(char *) * (size_t)(st->n_meta + 1));
        if (!st->meta_key || !st->meta_val) dcal_die("out of host memory");
        st->meta_key[st->n_meta] = k;
        st->meta_val[st->n_meta++] = v;
    } while (js_eat(j, ','));
    return js_eat(j, '}') ? 1 : js_fail(j, "expected ',' or '}'");
}

static int parse_header(SafeTensors *st, const char *hdr) {
    Js j = {hdr, hdr, st->path};
    int cap = 0;
    if (!js_eat(&j, '{')) return js_fail(&j, "header must be a JSON object");
    if (js_eat(&j, '}')) goto end;
    do {
        char *k = js_str(&j);
        if (!k) return 0;
        if (!js_eat(&j, ':')) { free(k); return js_fail(&j, "expected ':'"); }
        if (!strcmp(k, "__metadata__")) {
            free(k);
            if (!parse_meta(&j, st)) return 0;
            continue;
        }
        if (strlen(k) >= sizeof st->t[0].name) {
            dcal_err("%s: tensor name too long (%zu bytes): '%.40s...'", st->path, strlen(k), k);
            free(k);
            return 0;
        }
        if (st->n == cap) {
            cap = cap ? 2 * cap : 64;
            st->t = realloc(st->t, sizeof(StTensor) * (size_t)cap);
            if (!st->t) dcal_die("out of host memory");
        }
        StTensor *t = &st->t[st->n++];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", k);
        free(k);
        if (!parse_tensor(&j, st, t)) return 0;
    } while (js_eat(&j, ','));
    if (!js_eat(&j, '}')) return js_fail(&j, "expected ',' or '}'");
end:
    js_ws(&j);
    if (*j.p) return js_fail(&j, "trailing characters after the header object");
    return 1;
}

// ----------------------------------------------------------------------------

int st_load(SafeTensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    snprintf(st->path, sizeof st->path, "%s", path);
    int fd = open(path, O_RDONLY);
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
    st->map = m; st->map_len = size;
    const uint8_t *b = m;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
    if (hlen > size - 8) {
        dcal_err("%s: truncated (header says %llu bytes, file has %zu)", path, (unsigned long long)hlen, size);
        st_free(st);
        return 0;
    }
    char *hdr = xmalloc((size_t)hlen + 1);
    memcpy(hdr, b + 8, (size_t)hlen);
    hdr[hlen] = 0;
    if (strlen(hdr) != hlen) {   // a NUL inside the header: not text
        dcal_err("%s: bad header JSON (NUL byte at %zu; not a safetensors file?)", path, strlen(hdr));
        free(hdr); st_free(st);
        return 0;
    }
    int ok = parse_header(st, hdr);
    free(hdr);
    if (!ok) { st_free(st); return 0; }
    st->data = (uint8_t *)b + 8 + hlen;
    st->data_len = size - 8 - (size_t)hlen;
    for (int i = 0; i < st->n; i++) {
        StTensor *t = &st->t[i];
        int es = dtype_size(t->dtype);
        if (!es) { dcal_err("%s: tensor '%s': unknown dtype '%s'", path, t->name, t->dtype); st_free(st); return 0; }
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 || (t->shape[d] && numel > INT64_MAX / 8 / t->shape[d])) {
                dcal_err("%s: tensor '%s': bad shape", path, t->name); st_free(st); return 0;
            }
            numel *= t->shape[d];
        }
        if (t->end > st->data_len) {
            dcal_err("%s: tensor '%s': offsets out of range ([%zu, %zu) but the data section has %zu bytes; truncated?)",
                     path, t->name, t->begin, t->end, st->data_len);
            st_free(st); return 0;
        }
        if ((uint64_t)(t->end - t->begin) != (uint64_t)numel * (uint64_t)es) {
            dcal_err("%s: tensor '%s': data_offsets span %zu bytes but shape x %s needs %lld", path, t->name,
                     t->end - t->begin, t->dtype, (long long)numel * es);
            st_free(st); return 0;
        }
        for (int k = 0; k < i; k++)
            if (!strcmp(st->t[k].name, t->name)) {
                dcal_err("%s: tensor '%s' appears twice in the header", path, t->name); st_free(st); return 0;
            }
    }
    return 1;
}

const StTensor *st_find(const SafeTensors *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->t[i].name, name)) return &st->t[i];
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

void st_free(SafeTensors *st) {
    if (st->map) munmap(st->map, st->map_len);
    for (int i = 0; i < st->n_meta; i++) { free(st->meta_key[i]); free(st->meta_val[i]); }
    free(st->meta_key); free(st->meta_val); free(st->t);
    memset(st, 0, sizeof *st);
}

// ----------------------------------------------------------------------------
// Writer: tensors laid out in the order added, no gaps (the format forbids holes).

typedef struct { char *name; char dtype[8]; int ndim; int64_t shape[8]; void *data; size_t bytes; } StwEntry;
struct StWriter {
    int n, cap;
    StwEntry *e;
    int n_meta;
    char **mk, **mv;
};

StWriter *stw_new(void) { return xcalloc(1, sizeof(StWriter)); }

static void stw_add(StWriter *w, const char *name, const char *dtype, int es, const void *data, int ndim, const int64_t *shape) {
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
    e->data = xmalloc(e->bytes);
    memcpy(e->data, data, e->bytes);
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

// Growable text buffer for the header.
typedef struct { char *s; size_t n, cap; } Buf;
static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (!b->s) dcal_die("out of host memory");
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void buf_puts(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }
static void buf_json_str(Buf *b, const char *s) {
    buf_puts(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        if (c == '"' || c == '\\') { tmp[0] = '\\'; tmp[1] = (char)c; buf_put(b, tmp, 2); }
        else if (c < 0x20) { snprintf(tmp, sizeof tmp, "\\u%04x", c); buf_puts(b, tmp); }
        else buf_put(b, (const char *)s, 1);
    }
    buf_puts(b, "\"");
}

int stw_write(StWriter *w, const char *path) {
    Buf h = {0};
    char tmp[128];
    buf_puts(&h, "{");
    if (w->n_meta) {
        buf_puts(&h, "\"__metadata__\":{");
        for (int i = 0; i < w->n_meta; i++) {
            if (i) buf_puts(&h, ",");
            buf_json_str(&h, w->mk[i]);
            buf_puts(&h, ":");
            buf_json_str(&h, w->mv[i]);
        }
        buf_puts(&h, "}");
    }
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        StwEntry *e = &w->e[i];
        if (i || w->n_meta) buf_puts(&h, ",");
        buf_json_str(&h, e->name);
        snprintf(tmp, sizeof tmp, ":{\"dtype\":\"%s\",\"shape\":[", e->dtype);
        buf_puts(&h, tmp);
        for (int d = 0; d < e->ndim; d++) {
            snprintf(tmp, sizeof tmp, "%s%lld", d ? "," : "", (long long)e->shape[d]);
            buf_puts(&h, tmp);
        }
        snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%zu,%zu]}", off, off + e->bytes);
        buf_puts(&h, tmp);
        off += e->bytes;
    }
    buf_puts(&h, "}");
    // Pad with spaces so the data section starts 8-byte aligned (allowed by the format).
    while ((8 + h.n) % 8) buf_puts(&h, " ");
    size_t total = 8 + h.n + off;
    uint8_t *out = xmalloc(total);
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    memcpy(out + 8, h.s, h.n);
    size_t p = 8 + h.n;
    for (int i = 0; i < w->n; i++) { memcpy(out + p, w->e[i].data, w->e[i].bytes); p += w->e[i].bytes; }
    int ok = write_file_atomic(path, out, total);
    free(out);
    free(h.s);
    return ok;
}

void stw_free(StWriter *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) { free(w->e[i].name); free(w->e[i].data); }
    for (int i = 0; i < w->n_meta; i++) { free(w->mk[i]); free(w->mv[i]); }
    free(w->e); free(w->mk); free(w->mv); free(w);
}

// json.c: strict JSON reader (recursive descent into a Json tree) and the
// JsonW writer. See json.h for what is accepted and how output is laid out.
#include "core/json.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include "core/common.h"

// ---- shared by reader and writer -----------------------------------------------

// Length of the valid UTF-8 sequence at s (avail bytes left), 0 when invalid:
// overlong forms, UTF-16 surrogates and code points above U+10FFFF are invalid.
static size_t utf8_seq(const unsigned char *s, size_t avail) {
    unsigned c = s[0], cp;
    size_t n;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
    else return 0;
    if (avail < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

// End of the RFC 8259 number starting at s[p] (s has n bytes); 0 with *why set
// when the text there is not one.
static size_t number_end(const char *s, size_t n, size_t p, const char **why) {
    if (p < n && s[p] == '-') p++;
    if (p >= n || !is_digit(s[p])) { *why = "expected a digit"; return 0; }
    if (s[p] == '0') {
        p++;
        if (p < n && is_digit(s[p])) { *why = "leading zero in a number"; return 0; }
    } else
        while (p < n && is_digit(s[p])) p++;
    if (p < n && s[p] == '.') {
        p++;
        if (p >= n || !is_digit(s[p])) { *why = "expected a digit after '.'"; return 0; }
        while (p < n && is_digit(s[p])) p++;
    }
    if (p < n && (s[p] == 'e' || s[p] == 'E')) {
        p++;
        if (p < n && (s[p] == '+' || s[p] == '-')) p++;
        if (p >= n || !is_digit(s[p])) { *why = "expected a digit in the exponent"; return 0; }
        while (p < n && is_digit(s[p])) p++;
    }
    return p;
}

// ---- reader --------------------------------------------------------------------

typedef struct {
    const char *s;
    size_t n, p;
    int flags;
    JsonError *err;
} Parser;

static int fail_at(Parser *ps, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(Parser *ps, size_t at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ps->err->offset = at;
    vsnprintf(ps->err->msg, sizeof ps->err->msg, fmt, ap);
    va_end(ap);
    return 0;
}

static int peek(const Parser *ps) { return ps->p < ps->n ? (unsigned char)ps->s[ps->p] : -1; }
static void skip_ws(Parser *ps) {
    while (ps->p < ps->n && (ps->s[ps->p] == ' ' || ps->s[ps->p] == '\t' || ps->s[ps->p] == '\n' || ps->s[ps->p] == '\r'))
        ps->p++;
}

static void put_utf8(char **o, unsigned cp) {
    char *q = *o;
    if (cp < 0x80) *q++ = (char)cp;
    else if (cp < 0x800) { *q++ = (char)(0xC0 | cp >> 6); *q++ = (char)(0x80 | (cp & 63)); }
    else if (cp < 0x10000) { *q++ = (char)(0xE0 | cp >> 12); *q++ = (char)(0x80 | (cp >> 6 & 63)); *q++ = (char)(0x80 | (cp & 63)); }
    else { *q++ = (char)(0xF0 | cp >> 18); *q++ = (char)(0x80 | (cp >> 12 & 63)); *q++ = (char)(0x80 | (cp >> 6 & 63)); *q++ = (char)(0x80 | (cp & 63)); }
    *o = q;
}

static int hex4(const char *s, size_t avail, unsigned *v) {
    *v = 0;
    if (avail < 4) return 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = is_digit(c) ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        *v = *v * 16 + (unsigned)d;
    }
    return 1;
}

// \uXXXX at ps->p (just after the 'u'), a surrogate pair taken as one code point.
static int unicode_escape(Parser *ps, size_t end, char **o) {
    size_t at = ps->p - 2;
    unsigned cp, lo;
    if (!hex4(ps->s + ps->p, end - ps->p, &cp)) return fail_at(ps, at, "bad \\u escape (four hex digits expected)");
    ps->p += 4;
    if (cp >= 0xDC00 && cp < 0xE000) return fail_at(ps, at, "lone low surrogate \\u%04X", cp);
    if (cp >= 0xD800 && cp < 0xDC00) {
        if (end - ps->p < 6 || ps->s[ps->p] != '\\' || ps->s[ps->p + 1] != 'u' ||
            !hex4(ps->s + ps->p + 2, end - ps->p - 2, &lo) || lo < 0xDC00 || lo >= 0xE000)
            return fail_at(ps, at, "lone high surrogate \\u%04X", cp);
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        ps->p += 6;
    }
    put_utf8(o, cp);
    return 1;
}

static int escape(Parser *ps, size_t end, char **o) {
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    char c = ps->p + 1 < end ? ps->s[ps->p + 1] : 0;
    const char *k = c ? strchr(from, c) : NULL;
    if (c == 'u') { ps->p += 2; return unicode_escape(ps, end, o); }
    if (!k) return fail_at(ps, ps->p, "bad escape '\\%c'", c >= 0x20 && c < 0x7f ? c : '?');
    *(*o)++ = to[k - from];
    ps->p += 2;
    return 1;
}

// String at ps->p (on the opening quote) into a malloc'd decoded copy.
static int parse_string(Parser *ps, char **out, size_t *olen) {
    size_t start = ps->p++, end = ps->p;
    while (end < ps->n && ps->s[end] != '"') end += ps->s[end] == '\\' ? 2 : 1;
    if (end >= ps->n) return fail_at(ps, start, "unterminated string");
    char *buf = xmalloc(end - ps->p + 1), *o = buf;   // decoding never lengthens
    while (ps->p < end) {
        unsigned char c = (unsigned char)ps->s[ps->p];
        size_t k;
        if (c < 0x20) { free(buf); return fail_at(ps, ps->p, "control character 0x%02x in a string", c); }
        if (c == '\\') {
            if (!escape(ps, end, &o)) { free(buf); return 0; }
            continue;
        }
        if (!(k = utf8_seq((const unsigned char *)ps->s + ps->p, end - ps->p))) {
            free(buf);
            return fail_at(ps, ps->p, "invalid UTF-8 byte 0x%02x in a string", c);
        }
        memcpy(o, ps->s + ps->p, k);
        o += k;
        ps->p += k;
    }
    *o = 0;
    ps->p = end + 1;
    *out = buf;
    *olen = (size_t)(o - buf);
    return 1;
}

static int parse_number(Parser *ps, Json *v) {
    const char *why = NULL;
    size_t end = number_end(ps->s, ps->n, ps->p, &why);
    if (!end) return fail_at(ps, ps->p, "%s", why);
    v->type = JSON_NUMBER;
    size_t len = end - ps->p;
    v->raw = xmalloc(len + 1);
    memcpy(v->raw, ps->s + ps->p, len);
    v->raw[len] = 0;
    v->num = strtod(v->raw, NULL);
    if (isinf(v->num)) return fail_at(ps, ps->p, "number %.40s out of range", v->raw);
    if (!strpbrk(v->raw, ".eE")) {   // integer syntax: keep the exact value when it fits
        errno = 0;
        long long x = strtoll(v->raw, NULL, 10);
        if (!errno) { v->is_int = true; v->i = x; }
    }
    ps->p = end;
    return 1;
}

static int parse_literal(Parser *ps, Json *v) {
    static const struct { const char *word; JsonType t; bool b; } lit[] = {
        {"true", JSON_BOOL, true}, {"false", JSON_BOOL, false}, {"null", JSON_NULL, false}};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lit[i].word);
        if (ps->n - ps->p >= n && !memcmp(ps->s + ps->p, lit[i].word, n)) {
            v->type = lit[i].t;
            v->b = lit[i].b;
            ps->p += n;
            return 1;
        }
    }
    int c = peek(ps);
    if (c >= 0x20 && c < 0x7f) return fail_at(ps, ps->p, "unexpected character '%c', expected a value", c);
    return fail_at(ps, ps->p, "unexpected byte 0x%02x, expected a value", c);
}

static int parse_value(Parser *ps, Json *v, int depth);

// Append a parsed member (and its key, for objects) to a container.
static void push(Json *v, int *cap, char *key, const Json *item) {
    if (v->len == *cap) {
        *cap = *cap ? 2 * *cap : 4;
        v->items = realloc(v->items, sizeof(Json) * (size_t)*cap);
        if (v->type == JSON_OBJECT) v->keys = realloc(v->keys, sizeof(char *) * (size_t)*cap);
        if (!v->items || (v->type == JSON_OBJECT && !v->keys)) dcal_die("out of host memory");
    }
    if (v->type == JSON_OBJECT) v->keys[v->len] = key;
    v->items[v->len++] = *item;
}

// Object or array at ps->p (on the opening bracket). On failure the members
// parsed so far stay in v for json_free.
static int parse_container(Parser *ps, Json *v, int depth) {
    bool obj = ps->s[ps->p] == '{';
    char close = obj ? '}' : ']';
    if (depth >= JSON_MAX_DEPTH) return fail_at(ps, ps->p, "nested deeper than %d levels", JSON_MAX_DEPTH);
    v->type = obj ? JSON_OBJECT : JSON_ARRAY;
    ps->p++;
    skip_ws(ps);
    if (peek(ps) == close) { ps->p++; return 1; }
    for (int cap = 0;;) {
        char *key = NULL;
        size_t klen;
        Json item;
        skip_ws(ps);
        if (obj) {
            if (peek(ps) != '"') return fail_at(ps, ps->p, "expected a string key");
            size_t at = ps->p;
            if (!parse_string(ps, &key, &klen)) return 0;
            if (klen != strlen(key)) { free(key); return fail_at(ps, at, "\\u0000 in an object key"); }
            skip_ws(ps);
            if (peek(ps) != ':') { free(key); return fail_at(ps, ps->p, "expected ':' after a key"); }
            ps->p++;
        }
        if (!parse_value(ps, &item, depth + 1)) { free(key); return 0; }
        push(v, &cap, key, &item);
        skip_ws(ps);
        int c = peek(ps);
        ps->p++;
        if (c == ',') continue;
        if (c == close) return 1;
        return fail_at(ps, ps->p - 1, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int parse_value(Parser *ps, Json *v, int depth) {
    memset(v, 0, sizeof *v);
    skip_ws(ps);
    v->pos = ps->p;
    int c = peek(ps), ok;
    if (c < 0) return fail_at(ps, ps->p, "unexpected end of text, expected a value");
    if (c == '{' || c == '[') ok = parse_container(ps, v, depth);
    else if (c == '"') { v->type = JSON_STRING; ok = parse_string(ps, &v->s, &v->slen); }
    else if (c == '-' || is_digit(c)) ok = parse_number(ps, v);
    else ok = parse_literal(ps, v);
    if (ok && v->type == JSON_OBJECT && !(ps->flags & JSON_ALLOW_DUP_KEYS)) {
        int d = json_dup_key(v);
        if (d >= 0) ok = fail_at(ps, v->items[d].pos, "duplicate key \"%.60s\"", v->keys[d]);
    }
    if (!ok) json_free(v);
    return ok;
}

int json_parse(const char *text, size_t len, int flags, Json *out, JsonError *err) {
    JsonError local;
    Parser ps = {text, len, 0, flags, err ? err : &local};
    memset(ps.err, 0, sizeof *ps.err);
    if (!parse_value(&ps, out, 0)) return 0;
    skip_ws(&ps);
    if (ps.p < len) {
        json_free(out);
        return fail_at(&ps, ps.p, "trailing characters after the JSON value");
    }
    return 1;
}

void json_free(Json *v) {
    for (int i = 0; i < v->len; i++) {
        json_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items); free(v->keys); free(v->s); free(v->raw);
    memset(v, 0, sizeof *v);
}

const Json *json_get(const Json *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    for (int i = 0; i < obj->len; i++)
        if (!strcmp(obj->keys[i], key)) return &obj->items[i];
    return NULL;
}

const char *json_str(const Json *obj, const char *key) {
    const Json *v = json_get(obj, key);
    return v && v->type == JSON_STRING ? v->s : NULL;
}

const Json *json_at(const Json *arr, int i) {
    return arr && arr->type == JSON_ARRAY && i >= 0 && i < arr->len ? &arr->items[i] : NULL;
}

typedef struct { const char *key; int i; } KeyIx;
static int keyix_cmp(const void *a, const void *b) {
    const KeyIx *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

// Sorted, so a header with thousands of tensors costs n log n, not n^2.
int json_dup_key(const Json *obj) {
    if (!obj || obj->type != JSON_OBJECT || obj->len < 2) return -1;
    KeyIx *ix = xmalloc(sizeof(KeyIx) * (size_t)obj->len);
    for (int i = 0; i < obj->len; i++) ix[i] = (KeyIx){obj->keys[i], i};
    qsort(ix, (size_t)obj->len, sizeof *ix, keyix_cmp);
    int dup = -1;
    for (int i = 1; i < obj->len; i++)
        if (!strcmp(ix[i - 1].key, ix[i].key) && (dup < 0 || ix[i].i < dup)) dup = ix[i].i;
    free(ix);
    return dup;
}

const char *json_type_name(JsonType t) {
    static const char *names[] = {"null", "bool", "number", "string", "array", "object"};
    return t <= JSON_OBJECT ? names[t] : "?";
}

// ---- writer --------------------------------------------------------------------

void jw_init(JsonW *w, bool spaced, int lines) {
    memset(w, 0, sizeof *w);
    w->spaced = spaced;
    w->lines = lines;
}

void jw_free(JsonW *w) {
    free(w->s);
    memset(w, 0, sizeof *w);
}

static void put(JsonW *w, const char *s, size_t n) {
    if (w->n + n + 1 > w->cap) {
        w->cap = (w->n + n + 1) * 2;
        w->s = realloc(w->s, w->cap);
        if (!w->s) dcal_die("out of host memory");
    }
    memcpy(w->s + w->n, s, n);
    w->n += n;
    w->s[w->n] = 0;
}
static void puts_(JsonW *w, const char *s) { put(w, s, strlen(s)); }

static void newline_indent(JsonW *w, int depth) {
    put(w, "\n", 1);
    for (int i = 0; i < depth; i++) put(w, "  ", 2);
}

// Before a key (objects) or a value (arrays): the separator and, in a
// one-member-per-line container, the line break.
static void separator(JsonW *w) {
    int d = w->depth - 1;
    if (w->count[d]) puts_(w, w->spaced && !w->multiline[d] ? ", " : ",");
    if (w->multiline[d]) newline_indent(w, w->depth);
}

static void before_value(JsonW *w) {
    if (!w->depth) {
        if (w->n) dcal_die("json writer: a second top-level value");
        return;
    }
    int d = w->depth - 1;
    if (w->is_obj[d]) {
        if (!w->after_key) dcal_die("json writer: a value inside an object needs a key first");
        w->after_key = false;
    } else
        separator(w);
    w->count[d]++;
}

static void open_container(JsonW *w, bool obj) {
    before_value(w);
    if (w->depth >= JSON_MAX_DEPTH) dcal_die("json writer: nested deeper than %d levels", JSON_MAX_DEPTH);
    put(w, obj ? "{" : "[", 1);
    w->count[w->depth] = 0;
    w->multiline[w->depth] = w->depth < w->lines || w->next_multiline;
    w->next_multiline = false;
    w->is_obj[w->depth++] = obj;
}

static void close_container(JsonW *w, bool obj) {
    if (!w->depth || w->is_obj[w->depth - 1] != obj || w->after_key)
        dcal_die("json writer: %s closed out of order", obj ? "object" : "array");
    w->depth--;
    if (w->multiline[w->depth] && w->count[w->depth]) newline_indent(w, w->depth);
    put(w, obj ? "}" : "]", 1);
}

void jw_begin_object(JsonW *w) { open_container(w, true); }
void jw_end_object(JsonW *w) { close_container(w, true); }
void jw_begin_array(JsonW *w) { open_container(w, false); }
void jw_end_array(JsonW *w) { close_container(w, false); }

static void string_body(JsonW *w, const char *str) {
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    const unsigned char *e = s + strlen((const char *)s);
    put(w, "\"", 1);
    while (s < e) {
        size_t k;
        char tmp[8];
        if (*s == '"' || *s == '\\') { tmp[0] = '\\'; tmp[1] = (char)*s; put(w, tmp, 2); k = 1; }
        else if (*s < 0x20) { snprintf(tmp, sizeof tmp, "\\u%04x", *s); put(w, tmp, 6); k = 1; }
        else if ((k = utf8_seq(s, (size_t)(e - s)))) put(w, (const char *)s, k);
        else { put(w, "\xEF\xBF\xBD", 3); k = 1; }   // U+FFFD: JSON text must be UTF-8
        s += k;
    }
    put(w, "\"", 1);
}

void jw_key(JsonW *w, const char *key) {
    if (!w->depth || !w->is_obj[w->depth - 1] || w->after_key) dcal_die("json writer: key '%s' outside an object", key);
    separator(w);
    string_body(w, key);
    puts_(w, w->spaced ? ": " : ":");
    w->after_key = true;
}

void jw_string(JsonW *w, const char *s) { before_value(w); string_body(w, s); }

void jw_int(JsonW *w, int64_t v) {
    char tmp[32];
    before_value(w);
    snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    puts_(w, tmp);
}

void jw_uint(JsonW *w, uint64_t v) {
    char tmp[32];
    before_value(w);
    snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    puts_(w, tmp);
}

void jw_double(JsonW *w, const char *fmt, double v) {
    char tmp[64];
    const char *why = NULL;
    if (!isfinite(v)) { jw_null(w); return; }   // JSON has no NaN or infinity
    int n = snprintf(tmp, sizeof tmp, fmt, v);
    if (n <= 0 || n >= (int)sizeof tmp || number_end(tmp, (size_t)n, 0, &why) != (size_t)n)
        dcal_die("json writer: format '%s' gave '%s', not a JSON number", fmt, tmp);
    before_value(w);
    puts_(w, tmp);
}

void jw_multiline_next(JsonW *w) { w->next_multiline = true; }

void jw_bool(JsonW *w, bool v) { before_value(w); puts_(w, v ? "true" : "false"); }
void jw_null(JsonW *w) { before_value(w); puts_(w, "null"); }
void jw_raw(JsonW *w, const char *json) { before_value(w); puts_(w, json); }
void jw_append(JsonW *w, const char *text) { puts_(w, text); }

void jw_kv_string(JsonW *w, const char *key, const char *s) { jw_key(w, key); jw_string(w, s); }
void jw_kv_int(JsonW *w, const char *key, int64_t v) { jw_key(w, key); jw_int(w, v); }
void jw_kv_double(JsonW *w, const char *key, const char *fmt, double v) { jw_key(w, key); jw_double(w, fmt, v); }

const char *jw_text(const JsonW *w, size_t *len) {
    if (len) *len = w->n;
    return w->s ? w->s : "";
}

int jw_fwrite(const JsonW *w, FILE *f) { return fwrite(w->s ? w->s : "", 1, w->n, f) == w->n; }

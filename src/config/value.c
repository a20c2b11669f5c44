// value.c: the text of one value → the typed field, one parser per type.
// Shared by the YAML loader and --set; `where` prefixes every error line
// ("file:line:col" or "--set k=v"), so both report the same way.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "config/fields.h"

// The number grammar, checked before strtol/strtod convert: those also take
// " 42", "0448" (YAML 1.1 reads it as octal, 1.2 as text), hex and "1e5 " and
// would then silently give a value the user did not write.
//   integer: [-+]? (0 | [1-9][0-9]*)        number: integer (. [0-9]*)? ([eE] [-+]? [0-9]+)?
static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

// The end of "[sign] digits" at s with no leading zero, or NULL.
static const char *int_end(const char *s, int sign) {
    if (sign && (*s == '-' || *s == '+')) s++;
    if (!is_digit(*s) || (s[0] == '0' && is_digit(s[1]))) return NULL;
    while (is_digit(*s)) s++;
    return s;
}

static int is_int_text(const char *s, int sign) {
    const char *e = int_end(s, sign);
    return e && !*e;
}

static int is_number_text(const char *s) {
    const char *p = int_end(s, 1);
    if (!p) return 0;
    if (*p == '.') for (p++; is_digit(*p); p++) {}
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+') p++;
        if (!is_digit(*p)) return 0;
        while (is_digit(*p)) p++;
    }
    return !*p;
}

// Why a rejected number was rejected, for the error's hint ("" when plainly not a number).
static const char *number_hint(const char *s) {
    size_t n = strlen(s);
    if (n && (strchr(" \t\r\n", s[0]) || strchr(" \t\r\n", s[n - 1])))
        return " (no spaces around a number)";
    if (*s == '-' || *s == '+') s++;
    if (s[0] == '0' && is_digit(s[1])) return " (no leading zeros: YAML 1.1 reads them as octal)";
    return "";
}

// A finite number in [lo, hi]; out of range says so with the range.
static int parse_number(const Field *f, const char *where, const char *s, double *out) {
    errno = 0;
    double x = is_number_text(s) ? strtod(s, NULL) : NAN;
    if (errno || !isfinite(x)) {   // ERANGE: 1e999, or 1e-999 that would read as 0
        dcal_err("%s: %s: expected a number, got '%s'%s", where, f->key, s, number_hint(s));
        return 0;
    }
    if (x < f->lo || x > f->hi) {
        dcal_err("%s: %s: %g out of range [%g, %g]", where, f->key, x, f->lo, f->hi);
        return 0;
    }
    *out = x;
    return 1;
}

static int set_f3(const Field *f, char *base, const char *where, const char *const *items, int n_items) {
    if (n_items != 3) {
        dcal_err("%s: %s: expected a list of 3 numbers, got %d item(s)", where, f->key, n_items);
        return 0;
    }
    float v[3];
    for (int i = 0; i < 3; i++) {
        double x;
        if (!parse_number(f, where, items[i], &x)) return 0;
        v[i] = (float)x;
    }
    memcpy(base, v, sizeof v);
    return 1;
}

static int set_int(const Field *f, char *base, const char *where, const char *s) {
    if (!is_int_text(s, 1)) {
        dcal_err("%s: %s: expected an integer, got '%s'%s", where, f->key, s, number_hint(s));
        return 0;
    }
    errno = 0;
    long x = strtol(s, NULL, 10);
    if (errno || x < f->lo || x > f->hi) {   // ERANGE: beyond long, so beyond any field's range
        dcal_err("%s: %s: %s out of range [%g, %g]", where, f->key, s, f->lo, f->hi);
        return 0;
    }
    *(int *)base = (int)x;
    return 1;
}

static int set_u64(const Field *f, char *base, const char *where, const char *s) {
    if (!is_int_text(s, 0)) {   // no sign: strtoull would take "-1" as 2^64-1
        dcal_err("%s: %s: expected a non-negative integer, got '%s'%s", where, f->key, s, number_hint(s));
        return 0;
    }
    errno = 0;
    unsigned long long x = strtoull(s, NULL, 10);
    if (errno) {
        dcal_err("%s: %s: %s out of range [0, %llu]", where, f->key, s, (unsigned long long)UINT64_MAX);
        return 0;
    }
    *(uint64_t *)base = x;
    return 1;
}

static int set_bool(const Field *f, char *base, const char *where, const char *s) {
    if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) *(bool *)base = true;
    else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) *(bool *)base = false;
    else {
        dcal_err("%s: %s: expected true or false, got '%s'", where, f->key, s);
        return 0;
    }
    return 1;
}

// s is one of the '|'-separated choices.
static int is_choice(const char *choices, const char *s) {
    size_t n = strlen(s);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, s, n)) return 1;
        p += len + (bar ? 1 : 0);
    }
    return 0;
}

// Config text goes into the resolved config.yaml (written inside double quotes
// as it is), logs and one-line reports, and must read back the same: so valid
// UTF-8 with no control characters, no BOM and no YAML line break (NEL,
// U+2028/9), which a reload would fold into a space. NULL when s is fine.
static const char *text_problem(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        unsigned c = *p;
        int n = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0) return "is not UTF-8";
        c &= n ? 0x7Fu >> (n + 1) : 0x7Fu;   // the lead byte's payload bits
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80) return "is not UTF-8";
            c = c << 6 | (p[i] & 0x3Fu);
        }
        static const unsigned least[4] = {0, 0x80, 0x800, 0x10000};   // shorter forms are overlong
        if (c < least[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return "is not UTF-8";
        if (c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == 0x2028 || c == 0x2029 || c == 0xFEFF || c == 0xFFFE ||
            c == 0xFFFF)
            return "contains a control character or line break";
        p += n + 1;
    }
    return NULL;
}

static int set_str(DcalConfig *c, const Field *f, char *base, const char *where, const char *s) {
    if (strlen(s) >= f->size) {
        dcal_err("%s: %s: value longer than %zu characters", where, f->key, f->size - 1);
        return 0;
    }
    const char *bad = text_problem(s);
    if (bad) {
        dcal_err("%s: %s: the value %s (write it on one line, as UTF-8 text)", where, f->key, bad);
        return 0;
    }
    if (f->choices && !is_choice(f->choices, s)) {
        dcal_err("%s: %s: '%s' is not one of %s", where, f->key, s, f->choices);
        return 0;
    }
    strcpy(base, s);
    const Preset *p = !strcmp(f->key, "model.preset") ? config_preset(s) : NULL;
    if (p) {   // a named preset fixes the backbone shape
        c->model.dim = p->dim; c->model.heads = p->heads;
        c->model.depth = p->depth; c->model.mlp_dim = p->mlp;
    }
    return 1;
}

// A retired key: its one harmless value (0) loads and changes nothing.
static int set_retired(const Field *f, const char *where, const char *s) {
    char *end;
    double x = strtod(s, &end);
    if (end != s && !*end && x == 0) return 1;
    dcal_err("%s: %s: %s (remove the key)", where, f->key, f->choices);
    return 0;
}

int config_field_set(DcalConfig *c, const Field *f, const char *where, const char *const *items, int n_items) {
    char *base = (char *)c + f->off;
    if (f->type == F_F3) return set_f3(f, base, where, items, n_items);
    if (n_items != 1) {
        dcal_err("%s: %s: expected a single value, got a list", where, f->key);
        return 0;
    }
    const char *s = items[0];
    switch (f->type) {
    case F_INT: return set_int(f, base, where, s);
    case F_U64: return set_u64(f, base, where, s);
    case F_DBL: {
        double x;
        if (!parse_number(f, where, s, &x)) return 0;
        *(double *)base = x;
        return 1;
    }
    case F_BOOL: return set_bool(f, base, where, s);
    case F_STR: return set_str(c, f, base, where, s);
    case F_RETIRED: return set_retired(f, where, s);
    case F_F3: break;
    }
    return 0;
}

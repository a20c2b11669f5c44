// value.c: the text of one value → the typed field, one parser per type.
// Shared by the YAML loader and --set; `where` prefixes every error line
// ("file:line:col" or "--set k=v"), so both report the same way.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "config/fields.h"

// A finite number in [lo, hi]; out of range says so with the range.
static int parse_number(const Field *f, const char *where, const char *s, double *out) {
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(x)) {
        dcal_err("%s: %s: expected a number, got '%s'", where, f->key, s);
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
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end || errno) {
        dcal_err("%s: %s: expected an integer, got '%s'", where, f->key, s);
        return 0;
    }
    if (x < f->lo || x > f->hi) {
        dcal_err("%s: %s: %ld out of range [%g, %g]", where, f->key, x, f->lo, f->hi);
        return 0;
    }
    *(int *)base = (int)x;
    return 1;
}

static int set_u64(const Field *f, char *base, const char *where, const char *s) {
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (end == s || *end || errno || s[0] == '-') {   // strtoull accepts "-1" as a huge value
        dcal_err("%s: %s: expected a non-negative integer, got '%s'", where, f->key, s);
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

static int set_str(DcalConfig *c, const Field *f, char *base, const char *where, const char *s) {
    if (strlen(s) >= f->size) {
        dcal_err("%s: %s: value longer than %zu characters", where, f->key, f->size - 1);
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
    case F_F3: break;
    }
    return 0;
}

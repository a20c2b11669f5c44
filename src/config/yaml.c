// yaml.c: YAML file → DcalConfig over libyaml's event stream. Every error is
// "file:line:col: message" with the libyaml mark (1-based); unknown keys and
// sections get a "did you mean" from the field table.
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>
#include "config/fields.h"

typedef struct {
    const char *path;
    yaml_parser_t p;
    yaml_event_t ev;
    int have_ev;
    char seen[CONFIG_MAX_KEYS][64];   // sections and keys already given (duplicates are errors)
    int n_seen;
} Reader;

typedef char Where[DCAL_PATH_MAX + 32];

static void where_of(const Reader *r, yaml_mark_t m, Where w) {
    snprintf(w, sizeof(Where), "%s:%zu:%zu", r->path, m.line + 1, m.column + 1);
}

static const char *scalar(const Reader *r) { return (const char *)r->ev.data.scalar.value; }

// Fetch the next event into r->ev (freeing the previous one).
static int next(Reader *r) {
    if (r->have_ev) yaml_event_delete(&r->ev);
    r->have_ev = 0;
    if (!yaml_parser_parse(&r->p, &r->ev)) {
        dcal_err("%s:%zu:%zu: YAML syntax error: %s", r->path, r->p.problem_mark.line + 1,
                 r->p.problem_mark.column + 1, r->p.problem ? r->p.problem : "unknown");
        return 0;
    }
    r->have_ev = 1;
    // A quoted "\0" would end the C string early: "12\0junk" must not read as 12.
    if (r->ev.type == YAML_SCALAR_EVENT && strlen(scalar(r)) != r->ev.data.scalar.length) {
        dcal_err("%s:%zu:%zu: value contains a NUL character (\\0 is not allowed in a config)", r->path, r->ev.start_mark.line + 1,
                 r->ev.start_mark.column + 1);
        return 0;
    }
    return 1;
}

static int expect_mapping(Reader *r, const char *what) {
    if (r->ev.type == YAML_MAPPING_START_EVENT) return 1;
    Where w;
    where_of(r, r->ev.start_mark, w);
    dcal_err("%s: %s must be a mapping of 'key: value' lines", w, what);
    return 0;
}

// Record name as given; 0 (after the error) when it was given before.
static int first_time(Reader *r, const char *w, const char *what, const char *name) {
    for (int i = 0; i < r->n_seen; i++)
        if (!strcmp(r->seen[i], name)) { dcal_err("%s: duplicate %s '%s'", w, what, name); return 0; }
    if (r->n_seen < CONFIG_MAX_KEYS) snprintf(r->seen[r->n_seen++], sizeof r->seen[0], "%s", name);
    return 1;
}

// ---- deviations: [{rule: id, reason: text}, ...] ---------------------------

// One "rule:" or "reason:" line of a deviation (the key event is current).
// The text goes through the string fields' parser (length, one line of
// UTF-8) as if it were a field "deviations.KEY" at dst.
static int load_deviation_key(DcalConfig *c, Reader *r, Deviation *dv, int *have_rule, int *have_reason) {
    Where w;
    where_of(r, r->ev.start_mark, w);
    if (r->ev.type != YAML_SCALAR_EVENT) { dcal_err("%s: expected a key", w); return 0; }
    char key[64];
    snprintf(key, sizeof key, "%s", scalar(r));
    if (!next(r)) return 0;
    if (r->ev.type != YAML_SCALAR_EVENT) { dcal_err("%s: deviation %s must be text", w, key); return 0; }
    const char *val = scalar(r);
    int *seen;
    char *dst;
    size_t cap;
    if (!strcmp(key, "rule")) { seen = have_rule; dst = dv->rule; cap = sizeof dv->rule; }
    else if (!strcmp(key, "reason")) { seen = have_reason; dst = dv->reason; cap = sizeof dv->reason; }
    else { dcal_err("%s: unknown key 'deviations.%s' (expected rule and reason)", w, key); return 0; }
    if (*seen) { dcal_err("%s: duplicate key 'deviations.%s'", w, key); return 0; }
    *seen = 1;
    char name[80], *text = xstrdup(val);
    snprintf(name, sizeof name, "deviations.%s", key);
    size_t n = strlen(text);
    while (n && text[n - 1] == '\n') text[--n] = 0;   // a block scalar's (">") final newline
    Field f = {name, F_STR, (size_t)(dst - (char *)c), cap, 0, 0, NULL};
    int ok = config_field_set(c, &f, w, (const char *const *)&text, 1);
    free(text);
    return ok;
}

// One {rule, reason} mapping (its start event is current) → c->deviations.
static int load_deviation(DcalConfig *c, Reader *r) {
    Where w;
    if (!expect_mapping(r, "each deviation")) return 0;
    yaml_mark_t start = r->ev.start_mark;
    where_of(r, start, w);
    if (c->n_deviations >= DCAL_MAX_DEVIATIONS) {
        dcal_err("%s: more than %d deviations", w, DCAL_MAX_DEVIATIONS);
        return 0;
    }
    Deviation *dv = &c->deviations[c->n_deviations];
    memset(dv, 0, sizeof *dv);
    dv->line = (int)start.line + 1;
    dv->col = (int)start.column + 1;
    int have_rule = 0, have_reason = 0;
    for (;;) {
        if (!next(r)) return 0;
        if (r->ev.type == YAML_MAPPING_END_EVENT) break;
        if (!load_deviation_key(c, r, dv, &have_rule, &have_reason)) return 0;
    }
    if (!have_rule || !have_reason || !dv->reason[0]) {
        dcal_err("%s: a deviation needs both 'rule' and a non-empty 'reason'", w);
        return 0;
    }
    for (int i = 0; i < c->n_deviations; i++)
        if (!strcmp(c->deviations[i].rule, dv->rule)) {
            dcal_err("%s: deviation '%s' declared twice", w, dv->rule);
            return 0;
        }
    c->n_deviations++;
    return 1;
}

static int load_deviations(DcalConfig *c, Reader *r) {
    if (r->ev.type != YAML_SEQUENCE_START_EVENT) {
        Where w;
        where_of(r, r->ev.start_mark, w);
        dcal_err("%s: deviations must be a list of {rule: ID, reason: TEXT}", w);
        return 0;
    }
    for (;;) {
        if (!next(r)) return 0;
        if (r->ev.type == YAML_SEQUENCE_END_EVENT) return 1;
        if (!load_deviation(c, r)) return 0;
    }
}

// ---- model/loss/data/optim/train: key → scalar (or a flow list for F_F3) ---

// The key event is current: the field it names, or NULL after the error.
static const Field *section_key(Reader *r, const char *section, const char *w) {
    if (r->ev.type != YAML_SCALAR_EVENT) { dcal_err("%s: expected a key in '%s'", w, section); return NULL; }
    char key[64];
    if (snprintf(key, sizeof key, "%s.%s", section, scalar(r)) >= (int)sizeof key) {
        dcal_err("%s: unknown key '%s.%s'", w, section, scalar(r));
        return NULL;
    }
    const Field *f = config_field(key);
    if (!f) {
        const char *s = config_suggest(key);
        if (s) dcal_err("%s: unknown key '%s' (did you mean '%s'?)", w, key, s);
        else dcal_err("%s: unknown key '%s' (see 'dcal verify-config --help' for the keys)", w, key);
        return NULL;
    }
    return first_time(r, w, "key", key) ? f : NULL;
}

// A flow list value (its start event is current) → f, which must be F_F3.
// Items are copied whole (each event frees the last one's text): a fixed
// buffer would cut a long number short and parse what was left.
static int section_list(DcalConfig *c, Reader *r, const Field *f, const char *w) {
    char *items[8];
    int n = 0, ok = 0;
    for (;;) {
        if (!next(r)) goto out;
        if (r->ev.type == YAML_SEQUENCE_END_EVENT) break;
        if (r->ev.type != YAML_SCALAR_EVENT || n == 8) {
            dcal_err("%s: %s: expected a flat list of numbers", w, f->key);
            goto out;
        }
        items[n++] = xstrdup(scalar(r));
    }
    if (f->type != F_F3) { dcal_err("%s: %s: expected a single value, got a list", w, f->key); goto out; }
    ok = config_field_set(c, f, w, (const char *const *)items, n);
out:
    for (int i = 0; i < n; i++) free(items[i]);
    return ok;
}

static int load_section(DcalConfig *c, Reader *r, const char *section) {
    Where w;
    if (!expect_mapping(r, section)) return 0;
    for (;;) {
        if (!next(r)) return 0;
        if (r->ev.type == YAML_MAPPING_END_EVENT) return 1;
        where_of(r, r->ev.start_mark, w);
        const Field *f = section_key(r, section, w);
        if (!f || !next(r)) return 0;
        where_of(r, r->ev.start_mark, w);
        if (r->ev.type == YAML_SCALAR_EVENT) {
            const char *v = scalar(r);
            if (!config_field_set(c, f, w, &v, 1)) return 0;
        } else if (r->ev.type == YAML_SEQUENCE_START_EVENT) {
            if (!section_list(c, r, f, w)) return 0;
        } else {
            dcal_err("%s: %s: expected a value", w, f->key);
            return 0;
        }
    }
}

// ---- the document ----------------------------------------------------------

// The section-name event is current: load what follows it.
static int load_top_entry(DcalConfig *c, Reader *r) {
    Where w;
    where_of(r, r->ev.start_mark, w);
    if (r->ev.type != YAML_SCALAR_EVENT) { dcal_err("%s: expected a section name", w); return 0; }
    char sec[64];
    snprintf(sec, sizeof sec, "%s", scalar(r));
    int known = 0;
    for (int i = 0; i < config_n_sections; i++) known |= !strcmp(sec, config_sections[i]);
    if (!known) {
        const char *s = config_suggest_section(sec);
        if (s) dcal_err("%s: unknown section '%s' (did you mean '%s'?)", w, sec, s);
        else dcal_err("%s: unknown section '%s' (expected model, loss, data, optim, train, deviations)", w, sec);
        return 0;
    }
    if (!first_time(r, w, "section", sec) || !next(r)) return 0;
    return !strcmp(sec, "deviations") ? load_deviations(c, r) : load_section(c, r, sec);
}

// Stream start to stream end: one document holding one top-level mapping.
// An empty file or document leaves the defaults.
static int load_document(DcalConfig *c, Reader *r) {
    if (!next(r) || !next(r)) return 0;                        // stream start, document start
    if (r->ev.type == YAML_STREAM_END_EVENT) return 1;
    if (!next(r)) return 0;
    if (r->ev.type == YAML_DOCUMENT_END_EVENT) return 1;
    if (!expect_mapping(r, "the top level")) return 0;
    for (;;) {
        if (!next(r)) return 0;
        if (r->ev.type == YAML_MAPPING_END_EVENT) break;
        if (!load_top_entry(c, r)) return 0;
    }
    if (!next(r) || r->ev.type != YAML_DOCUMENT_END_EVENT) return 0;
    if (!next(r)) return 0;
    if (r->ev.type != YAML_STREAM_END_EVENT) {
        Where w;
        where_of(r, r->ev.start_mark, w);
        dcal_err("%s: only one YAML document is allowed", w);
        return 0;
    }
    return 1;
}

int config_load(DcalConfig *c, const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        dcal_err("%s: cannot open config (%s)", path, strerror(errno));
        return 0;
    }
    snprintf(c->source, sizeof c->source, "%s", path);
    Reader r = {.path = path};
    yaml_parser_initialize(&r.p);
    yaml_parser_set_input_file(&r.p, fp);
    int ok = load_document(c, &r);
    if (r.have_ev) yaml_event_delete(&r.ev);
    yaml_parser_delete(&r.p);
    fclose(fp);
    return ok;
}

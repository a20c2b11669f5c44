// config.c: YAML → DcalConfig. One field table drives the loader, the --set
// overrides and the YAML writer, so the three can never disagree on a key.
// Errors are "file:line:col: message" with the libyaml mark (1-based).
#include "config/config.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <yaml.h>

typedef enum { F_INT, F_U64, F_DBL, F_BOOL, F_STR, F_F3 } FieldType;

typedef struct {
    const char *key;           // "section.name"
    FieldType type;
    size_t off, size;          // offset in DcalConfig; size for strings
    double lo, hi;             // inclusive range for numbers
    const char *choices;       // "a|b|c" for enumerated strings, NULL = free text
} Field;

#define OFF(f) offsetof(DcalConfig, f)
#define I(k, f, lo, hi) {k, F_INT, OFF(f), 0, lo, hi, NULL}
#define D(k, f, lo, hi) {k, F_DBL, OFF(f), 0, lo, hi, NULL}
#define B(k, f) {k, F_BOOL, OFF(f), 0, 0, 0, NULL}
#define S(k, f, ch) {k, F_STR, OFF(f), sizeof(((DcalConfig *)0)->f), 0, 0, ch}

static const Field fields[] = {
    S("model.preset", model.preset, "vit_b16|deit_t|deit_s|deit_b|custom"),
    I("model.img_size", model.img_size, 8, 4096),
    I("model.patch", model.patch, 1, 64),
    I("model.dim", model.dim, 1, 8192),
    I("model.heads", model.heads, 1, 128),
    I("model.depth", model.depth, 1, 64),
    I("model.mlp_dim", model.mlp_dim, 1, 65536),
    I("model.glca_blocks", model.glca_blocks, 0, 64),
    I("model.pwca_blocks", model.pwca_blocks, 0, 64),
    D("model.top_r", model.top_r, 0, 1),
    D("model.drop_path", model.drop_path, 0, 0.99),
    I("model.num_classes", model.num_classes, 2, 100000),
    B("model.glca_shares_sa_weights", model.glca_shares_sa_weights),
    B("model.pwca_shares_sa_weights", model.pwca_shares_sa_weights),
    D("model.ln_eps", model.ln_eps, 1e-12, 1e-2),
    D("loss.label_smoothing", loss.label_smoothing, 0, 0.99),
    B("loss.uncertainty_weighting", loss.uncertainty_weighting),
    S("data.dataset", data.dataset, "cub|cars|aircraft|synthetic"),
    S("data.root", data.root, NULL),
    I("data.resize", data.resize, 8, 8192),
    I("data.crop", data.crop, 8, 8192),
    S("data.train_crop", data.train_crop, "random|center"),
    S("data.test_crop", data.test_crop, "center|random"),
    B("data.hflip", data.hflip),
    {"data.mean", F_F3, OFF(data.mean), 0, -10, 10, NULL},
    {"data.std", F_F3, OFF(data.std), 0, 1e-6, 10, NULL},
    I("data.banner_px", data.banner_px, 0, 1000),
    I("data.workers", data.workers, 0, 64),
    B("data.skip_bad", data.skip_bad),
    I("data.synth_classes", data.synth_classes, 2, 1000),
    I("data.synth_per_class", data.synth_per_class, 1, 100000),
    I("data.synth_test_per_class", data.synth_test_per_class, 1, 100000),
    S("optim.name", optim.name, "adamw"),
    D("optim.base_lr", optim.base_lr, 0, 10),
    I("optim.lr_ref_batch", optim.lr_ref_batch, 1, 1 << 20),
    D("optim.lr", optim.lr, 0, 10),
    D("optim.weight_decay", optim.weight_decay, 0, 10),
    D("optim.beta1", optim.beta1, 0, 0.999999),
    D("optim.beta2", optim.beta2, 0, 0.999999999),
    D("optim.eps", optim.eps, 1e-30, 1),
    S("optim.schedule", optim.schedule, "cosine|constant"),
    I("optim.epochs", optim.epochs, 1, 100000),
    I("optim.warmup_epochs", optim.warmup_epochs, 0, 100000),
    D("optim.warmup_lr", optim.warmup_lr, 0, 10),
    D("optim.min_lr", optim.min_lr, 0, 10),
    I("train.micro_batch", train.micro_batch, 1, 65536),
    I("train.accum_steps", train.accum_steps, 1, 65536),
    I("train.devices", train.devices, 1, 1024),
    {"train.seed", F_U64, OFF(train.seed), 0, 0, 0, NULL},
    S("train.device", train.device, "auto|cpu|cuda"),
    B("train.checkpoint_blocks", train.checkpoint_blocks),
    S("train.precision", train.precision, "auto|fp32|bf16"),
    S("train.pretrained", train.pretrained, NULL),
    S("train.out_dir", train.out_dir, NULL),
    S("train.run_name", train.run_name, NULL),
    I("train.eval_every", train.eval_every, 0, 100000),
    I("train.save_every", train.save_every, 0, 100000),
    I("train.max_steps", train.max_steps, 0, 1 << 30),
    I("train.threads", train.threads, 0, 1024),
};
#define N_FIELDS (int)(sizeof fields / sizeof fields[0])
static const char *sections[] = {"model", "loss", "data", "optim", "train", "deviations"};
#define N_SECTIONS (int)(sizeof sections / sizeof sections[0])

typedef struct {
    const char *name;
    int dim, heads, depth, mlp;
} Preset;
static const Preset presets[] = {
    {"vit_b16", 768, 12, 12, 3072}, {"deit_b", 768, 12, 12, 3072},
    {"deit_s", 384, 6, 12, 1536},   {"deit_t", 192, 3, 12, 768},
};

void config_defaults(DcalConfig *c) {
    memset(c, 0, sizeof *c);
    ModelConfig *m = &c->model;
    strcpy(m->preset, "vit_b16");
    m->img_size = 448; m->patch = 16; m->dim = 768; m->heads = 12; m->depth = 12; m->mlp_dim = 3072;
    m->glca_blocks = 1; m->pwca_blocks = 12; m->top_r = 0.10; m->drop_path = 0.1; m->num_classes = 200;
    m->glca_shares_sa_weights = false; m->pwca_shares_sa_weights = true; m->ln_eps = 1e-6;
    c->loss.label_smoothing = 0; c->loss.uncertainty_weighting = true;
    DataConfig *d = &c->data;
    strcpy(d->dataset, "cub");
    strcpy(d->root, "data/CUB_200_2011");
    d->resize = 550; d->crop = 448;
    strcpy(d->train_crop, "random"); strcpy(d->test_crop, "center");
    d->hflip = true;
    for (int i = 0; i < 3; i++) { d->mean[i] = 0.5f; d->std[i] = 0.5f; }   // Google ViT-21k weights
    d->banner_px = 0; d->workers = 2; d->skip_bad = false;
    d->synth_classes = 10; d->synth_per_class = 30; d->synth_test_per_class = 10;
    OptimConfig *o = &c->optim;
    strcpy(o->name, "adamw");
    o->base_lr = 5e-4; o->lr_ref_batch = 512; o->lr = 0;    // 0: derive from the effective batch
    o->weight_decay = 0.05; o->beta1 = 0.9; o->beta2 = 0.999; o->eps = 1e-8;
    strcpy(o->schedule, "cosine");
    o->epochs = 100; o->warmup_epochs = 5; o->warmup_lr = 1e-6; o->min_lr = 0;
    TrainConfig *t = &c->train;
    t->micro_batch = 16; t->accum_steps = 1; t->devices = 1; t->seed = 42;
    strcpy(t->device, "auto"); t->checkpoint_blocks = false; strcpy(t->precision, "auto");
    strcpy(t->out_dir, "runs");
    t->eval_every = 1; t->save_every = 1; t->max_steps = 0; t->threads = 0;
}

int config_topk(const ModelConfig *m) {
    int k = (int)floor(m->top_r * (config_tokens(m) - 1) + 1e-9);   // guard 0.1·784 = 78.4 style roundoff
    return k < 1 ? 1 : k;
}

static const Field *find_field(const char *key) {
    for (int i = 0; i < N_FIELDS; i++)
        if (!strcmp(fields[i].key, key)) return &fields[i];
    return NULL;
}

static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

// A near miss in the same section, or the same leaf name in another section.
const char *config_suggest(const char *key) {
    const char *best = NULL;
    int bestd = 99;
    const char *dot = strchr(key, '.');
    for (int i = 0; i < N_FIELDS; i++) {
        int d = edit_distance(key, fields[i].key);
        const char *fdot = strchr(fields[i].key, '.');
        if (dot && !strcmp(dot, fdot)) d = 1;   // right name, wrong section
        if (d < bestd) { bestd = d; best = fields[i].key; }
    }
    int limit = (int)strlen(key) / 3 > 2 ? (int)strlen(key) / 3 : 2;
    return bestd <= limit ? best : NULL;
}

static const char *suggest_section(const char *name) {
    for (int i = 0; i < N_SECTIONS; i++)
        if (edit_distance(name, sections[i]) <= 2) return sections[i];
    return NULL;
}

// Parse the text of one value into field f. where = "file:line:col" or "--set k=v".
// A sequence value (F_F3) arrives as 3 items.
static int set_value(DcalConfig *c, const Field *f, const char *where, const char *const *items, int n_items) {
    char *base = (char *)c + f->off;
    if (f->type == F_F3) {
        if (n_items != 3) {
            dcal_err("%s: %s: expected a list of 3 numbers, got %d item(s)", where, f->key, n_items);
            return 0;
        }
        float v[3];
        for (int i = 0; i < 3; i++) {
            char *end;
            errno = 0;
            double x = strtod(items[i], &end);
            if (end == items[i] || *end || errno || !isfinite(x)) {
                dcal_err("%s: %s: expected a number, got '%s'", where, f->key, items[i]);
                return 0;
            }
            if (x < f->lo || x > f->hi) {
                dcal_err("%s: %s: %g out of range [%g, %g]", where, f->key, x, f->lo, f->hi);
                return 0;
            }
            v[i] = (float)x;
        }
        memcpy(base, v, sizeof v);
        return 1;
    }
    if (n_items != 1) {
        dcal_err("%s: %s: expected a single value, got a list", where, f->key);
        return 0;
    }
    const char *s = items[0];
    switch (f->type) {
    case F_INT: {
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
    case F_U64: {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(s, &end, 10);
        if (end == s || *end || errno || s[0] == '-') {
            dcal_err("%s: %s: expected a non-negative integer, got '%s'", where, f->key, s);
            return 0;
        }
        *(uint64_t *)base = x;
        return 1;
    }
    case F_DBL: {
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
        *(double *)base = x;
        return 1;
    }
    case F_BOOL:
        if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) *(bool *)base = true;
        else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) *(bool *)base = false;
        else {
            dcal_err("%s: %s: expected true or false, got '%s'", where, f->key, s);
            return 0;
        }
        return 1;
    case F_STR:
        if (strlen(s) >= f->size) {
            dcal_err("%s: %s: value longer than %zu characters", where, f->key, f->size - 1);
            return 0;
        }
        if (f->choices) {
            size_t n = strlen(s);
            const char *p = f->choices;
            int ok = 0;
            while (*p) {
                const char *bar = strchr(p, '|');
                size_t len = bar ? (size_t)(bar - p) : strlen(p);
                if (len == n && !strncmp(p, s, n)) ok = 1;
                p += len + (bar ? 1 : 0);
            }
            if (!ok) {
                dcal_err("%s: %s: '%s' is not one of %s", where, f->key, s, f->choices);
                return 0;
            }
        }
        strcpy(base, s);
        if (!strcmp(f->key, "model.preset"))   // a named preset fixes the backbone shape
            for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
                if (!strcmp(presets[i].name, s)) {
                    c->model.dim = presets[i].dim; c->model.heads = presets[i].heads;
                    c->model.depth = presets[i].depth; c->model.mlp_dim = presets[i].mlp;
                }
        return 1;
    case F_F3: break;
    }
    return 0;
}

// ---- YAML loading ----------------------------------------------------------

typedef struct {
    const char *path;
    yaml_parser_t p;
    yaml_event_t ev;
    int have_ev;
} Reader;

static void where_of(const Reader *r, yaml_mark_t m, char *buf, size_t n) {
    snprintf(buf, n, "%s:%zu:%zu", r->path, m.line + 1, m.column + 1);
}

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
    return 1;
}

static int expect_mapping(Reader *r, const char *what) {
    if (r->ev.type == YAML_MAPPING_START_EVENT) return 1;
    char w[DCAL_PATH_MAX + 32];
    where_of(r, r->ev.start_mark, w, sizeof w);
    dcal_err("%s: %s must be a mapping of 'key: value' lines", w, what);
    return 0;
}

// deviations: [{rule: id, reason: text}, ...]
static int load_deviations(DcalConfig *c, Reader *r) {
    char w[DCAL_PATH_MAX + 32];
    if (r->ev.type != YAML_SEQUENCE_START_EVENT) {
        where_of(r, r->ev.start_mark, w, sizeof w);
        dcal_err("%s: deviations must be a list of {rule: ID, reason: TEXT}", w);
        return 0;
    }
    for (;;) {
        if (!next(r)) return 0;
        if (r->ev.type == YAML_SEQUENCE_END_EVENT) return 1;
        if (!expect_mapping(r, "each deviation")) return 0;
        if (c->n_deviations >= DCAL_MAX_DEVIATIONS) {
            where_of(r, r->ev.start_mark, w, sizeof w);
            dcal_err("%s: more than %d deviations", w, DCAL_MAX_DEVIATIONS);
            return 0;
        }
        Deviation *dv = &c->deviations[c->n_deviations];
        memset(dv, 0, sizeof *dv);
        yaml_mark_t start = r->ev.start_mark;
        dv->line = (int)start.line + 1;
        dv->col = (int)start.column + 1;
        int have_rule = 0, have_reason = 0;
        for (;;) {
            if (!next(r)) return 0;
            if (r->ev.type == YAML_MAPPING_END_EVENT) break;
            where_of(r, r->ev.start_mark, w, sizeof w);
            if (r->ev.type != YAML_SCALAR_EVENT) { dcal_err("%s: expected a key", w); return 0; }
            char key[64];
            snprintf(key, sizeof key, "%s", (char *)r->ev.data.scalar.value);
            if (!next(r)) return 0;
            if (r->ev.type != YAML_SCALAR_EVENT) { dcal_err("%s: deviation %s must be text", w, key); return 0; }
            const char *val = (const char *)r->ev.data.scalar.value;
            int *seen;
            char *dst;
            size_t cap;
            if (!strcmp(key, "rule")) { seen = &have_rule; dst = dv->rule; cap = sizeof dv->rule; }
            else if (!strcmp(key, "reason")) { seen = &have_reason; dst = dv->reason; cap = sizeof dv->reason; }
            else { dcal_err("%s: unknown key 'deviations.%s' (expected rule and reason)", w, key); return 0; }
            if (*seen) { dcal_err("%s: duplicate key 'deviations.%s'", w, key); return 0; }
            if (strlen(val) >= cap) { dcal_err("%s: deviation %s longer than %zu characters", w, key, cap - 1); return 0; }
            *seen = 1;
            strcpy(dst, val);
        }
        where_of(r, start, w, sizeof w);
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
    }
}

// A section's mapping: key → scalar (or a flow list for F_F3).
static int load_section(DcalConfig *c, Reader *r, const char *section, char (*seen)[64], int *n_seen) {
    char w[DCAL_PATH_MAX + 32];
    if (!expect_mapping(r, section)) return 0;
    for (;;) {
        if (!next(r)) return 0;
        if (r->ev.type == YAML_MAPPING_END_EVENT) return 1;
        where_of(r, r->ev.start_mark, w, sizeof w);
        if (r->ev.type != YAML_SCALAR_EVENT) { dcal_err("%s: expected a key in '%s'", w, section); return 0; }
        char key[64];
        if (snprintf(key, sizeof key, "%s.%s", section, (char *)r->ev.data.scalar.value) >= (int)sizeof key) {
            dcal_err("%s: unknown key '%s.%s'", w, section, (char *)r->ev.data.scalar.value);
            return 0;
        }
        const Field *f = find_field(key);
        if (!f) {
            const char *s = config_suggest(key);
            if (s) dcal_err("%s: unknown key '%s' (did you mean '%s'?)", w, key, s);
            else dcal_err("%s: unknown key '%s' (see 'dcal verify-config --help' for the keys)", w, key);
            return 0;
        }
        for (int i = 0; i < *n_seen; i++)
            if (!strcmp(seen[i], key)) { dcal_err("%s: duplicate key '%s'", w, key); return 0; }
        if (*n_seen < N_FIELDS) strcpy(seen[(*n_seen)++], key);
        if (!next(r)) return 0;
        where_of(r, r->ev.start_mark, w, sizeof w);
        if (r->ev.type == YAML_SCALAR_EVENT) {
            const char *v = (const char *)r->ev.data.scalar.value;
            if (!set_value(c, f, w, &v, 1)) return 0;
        } else if (r->ev.type == YAML_SEQUENCE_START_EVENT) {
            char items[8][64];
            const char *ptrs[8];
            int n = 0;
            for (;;) {
                if (!next(r)) return 0;
                if (r->ev.type == YAML_SEQUENCE_END_EVENT) break;
                if (r->ev.type != YAML_SCALAR_EVENT || n == 8) {
                    dcal_err("%s: %s: expected a flat list of numbers", w, key);
                    return 0;
                }
                snprintf(items[n], sizeof items[n], "%s", (char *)r->ev.data.scalar.value);
                ptrs[n] = items[n];
                n++;
            }
            if (f->type != F_F3) { dcal_err("%s: %s: expected a single value, got a list", w, key); return 0; }
            if (!set_value(c, f, w, ptrs, n)) return 0;
        } else {
            dcal_err("%s: %s: expected a value", w, key);
            return 0;
        }
    }
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
    char seen[N_FIELDS + N_SECTIONS][64];
    int n_seen = 0, ok = 0;
    char w[DCAL_PATH_MAX + 32];
    if (!next(&r) || !next(&r)) goto out;                 // stream start, document start
    if (r.ev.type == YAML_STREAM_END_EVENT) { ok = 1; goto out; }   // empty file: defaults
    if (!next(&r)) goto out;
    if (r.ev.type == YAML_DOCUMENT_END_EVENT) { ok = 1; goto out; }
    if (!expect_mapping(&r, "the top level")) goto out;
    for (;;) {
        if (!next(&r)) goto out;
        if (r.ev.type == YAML_MAPPING_END_EVENT) break;
        where_of(&r, r.ev.start_mark, w, sizeof w);
        if (r.ev.type != YAML_SCALAR_EVENT) { dcal_err("%s: expected a section name", w); goto out; }
        char sec[64];
        snprintf(sec, sizeof sec, "%s", (char *)r.ev.data.scalar.value);
        int known = 0;
        for (int i = 0; i < N_SECTIONS; i++) known |= !strcmp(sec, sections[i]);
        if (!known) {
            const char *s = suggest_section(sec);
            if (s) dcal_err("%s: unknown section '%s' (did you mean '%s'?)", w, sec, s);
            else dcal_err("%s: unknown section '%s' (expected model, loss, data, optim, train, deviations)", w, sec);
            goto out;
        }
        for (int i = 0; i < n_seen; i++)
            if (!strcmp(seen[i], sec)) { dcal_err("%s: duplicate section '%s'", w, sec); goto out; }
        strcpy(seen[n_seen++], sec);
        if (!next(&r)) goto out;
        if (!strcmp(sec, "deviations") ? !load_deviations(c, &r) : !load_section(c, &r, sec, seen, &n_seen)) goto out;
    }
    if (!next(&r)) goto out;
    if (r.ev.type != YAML_DOCUMENT_END_EVENT) goto out;
    if (!next(&r)) goto out;
    if (r.ev.type != YAML_STREAM_END_EVENT) {
        where_of(&r, r.ev.start_mark, w, sizeof w);
        dcal_err("%s: only one YAML document is allowed", w);
        goto out;
    }
    ok = 1;
out:
    if (r.have_ev) yaml_event_delete(&r.ev);
    yaml_parser_delete(&r.p);
    fclose(fp);
    return ok;
}

int config_set(DcalConfig *c, const char *assignment) {
    char where[300];
    snprintf(where, sizeof where, "--set %s", assignment);
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment) {
        dcal_err("%s: expected key.sub=value", where);
        return 0;
    }
    char key[64];
    size_t kl = (size_t)(eq - assignment);
    if (kl >= sizeof key) { dcal_err("%s: key too long", where); return 0; }
    memcpy(key, assignment, kl);
    key[kl] = 0;
    const Field *f = find_field(key);
    if (!f) {
        const char *s = config_suggest(key);
        if (s) dcal_err("%s: unknown key '%s' (did you mean '%s'?)", where, key, s);
        else dcal_err("%s: unknown key '%s'", where, key);
        return 0;
    }
    const char *val = eq + 1;
    int ok;
    if (f->type == F_F3) {   // "a,b,c"
        char buf[192], *items[3] = {0};
        snprintf(buf, sizeof buf, "%s", val);
        int n = 0;
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            if (n < 3) items[n] = tok;
            n++;
        }
        ok = set_value(c, f, where, (const char *const *)items, n);
    } else {
        ok = set_value(c, f, where, &val, 1);
    }
    if (!ok) return 0;
    if (c->n_overrides >= DCAL_MAX_OVERRIDES) { dcal_err("%s: too many --set overrides", where); return 0; }
    snprintf(c->overrides[c->n_overrides++], sizeof c->overrides[0], "%s", assignment);
    return 1;
}

int config_finalize(DcalConfig *c) {
    ModelConfig *m = &c->model;
    const char *src = c->source[0] ? c->source : "config";
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        const Preset *p = &presets[i];
        if (strcmp(p->name, m->preset)) continue;
        if (m->dim != p->dim || m->heads != p->heads || m->depth != p->depth || m->mlp_dim != p->mlp) {
            dcal_err("%s: model.preset '%s' fixes dim/heads/depth/mlp_dim = %d/%d/%d/%d but the config gives %d/%d/%d/%d "
                     "(set model.preset: custom to choose them)", src, p->name, p->dim, p->heads, p->depth, p->mlp,
                     m->dim, m->heads, m->depth, m->mlp_dim);
            return 0;
        }
    }
    if (m->dim % m->heads) {
        dcal_err("%s: model.dim %d is not divisible by model.heads %d", src, m->dim, m->heads);
        return 0;
    }
    if (m->img_size % m->patch) {
        dcal_err("%s: model.img_size %d is not a multiple of model.patch %d", src, m->img_size, m->patch);
        return 0;
    }
    if (m->glca_blocks > m->depth) {   // 0 = no GLCA (an SA-only baseline)
        dcal_err("%s: model.glca_blocks %d must be in [0, model.depth=%d]", src, m->glca_blocks, m->depth);
        return 0;
    }
    if (m->pwca_blocks > m->depth) {
        dcal_err("%s: model.pwca_blocks %d exceeds model.depth %d (PWCA shares the SA blocks)", src, m->pwca_blocks,
                 m->depth);
        return 0;
    }
    if (c->data.crop != m->img_size) {
        dcal_err("%s: data.crop %d differs from model.img_size %d (the crop is the model's input)", src,
                 c->data.crop, m->img_size);
        return 0;
    }
    if (c->data.resize < c->data.crop) {
        dcal_err("%s: data.resize %d is smaller than data.crop %d", src, c->data.resize, c->data.crop);
        return 0;
    }
    if (c->optim.warmup_epochs > c->optim.epochs) {
        dcal_err("%s: optim.warmup_epochs %d exceeds optim.epochs %d", src, c->optim.warmup_epochs, c->optim.epochs);
        return 0;
    }
    if (c->optim.lr == 0)   // SPEC §4: linear scaling rule from the reference batch
        c->optim.lr = c->optim.base_lr / c->optim.lr_ref_batch * config_effective_batch(c);
    return 1;
}

// ---- YAML writing ----------------------------------------------------------

static void write_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int config_write_yaml(const DcalConfig *c, FILE *f) {
    fprintf(f, "# dcal resolved config (source: %s)\n", c->source[0] ? c->source : "defaults");
    for (int i = 0; i < c->n_overrides; i++) fprintf(f, "# --set %s\n", c->overrides[i]);
    char section[16] = "";
    for (int i = 0; i < N_FIELDS; i++) {
        const Field *fd = &fields[i];
        const char *dot = strchr(fd->key, '.');
        size_t sl = (size_t)(dot - fd->key);
        if (strncmp(section, fd->key, sl) || section[sl]) {
            memcpy(section, fd->key, sl);
            section[sl] = 0;
            fprintf(f, "%s:\n", section);
        }
        const char *base = (const char *)c + fd->off;
        fprintf(f, "  %s: ", dot + 1);
        switch (fd->type) {
        case F_INT: fprintf(f, "%d", *(const int *)base); break;
        case F_U64: fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)base); break;
        case F_DBL: fprintf(f, "%.17g", *(const double *)base); break;
        case F_BOOL: fputs(*(const bool *)base ? "true" : "false", f); break;
        case F_STR: write_str(f, base); break;
        case F_F3: {
            const float *v = (const float *)base;
            fprintf(f, "[%.9g, %.9g, %.9g]", v[0], v[1], v[2]);
            break;
        }
        }
        fputc('\n', f);
    }
    if (c->n_deviations) {
        fputs("deviations:\n", f);
        for (int i = 0; i < c->n_deviations; i++) {
            fputs("  - rule: ", f);
            write_str(f, c->deviations[i].rule);
            fputs("\n    reason: ", f);
            write_str(f, c->deviations[i].reason);
            fputc('\n', f);
        }
    }
    return ferror(f) ? 0 : 1;
}

// cli.c: table-driven option parsing. The common options are rows of the same
// CliOpt table type as each command's own, so lookup, value taking and the
// usage text are one loop over the tables: common, the command's, --help.
#include "cmd/cli.h"
#include "backend/backend.h"
#include <string.h>
#include <unistd.h>
#include "compliance/compliance.h"
#include "dist/reduce.h"
#include "model/plan.h"

static int add_set(CliArgs *a, const char *val) {
    if (a->n_sets == DCAL_MAX_OVERRIDES) { dcal_err("%s: too many --set options", a->cmd); return DCAL_EXIT_USAGE; }
    a->sets[a->n_sets++] = val;
    return CLI_OK;
}

static int add_allowed(CliArgs *a, const char *val) {
    if (a->n_allowed == CLI_MAX_ALLOWED || strlen(val) >= 48) {
        dcal_err("%s: bad --allow-deviation '%s'", a->cmd, val);
        return DCAL_EXIT_USAGE;
    }
    if (!compliance_check_allowed(a->cmd, val)) return DCAL_EXIT_USAGE;
    a->allowed[a->n_allowed++] = val;
    return CLI_OK;
}

// The options every config-taking command shares (before the command's own in --help).
#define COMMON_ROWS(a)                                                                                            \
    {"--config", "F", "YAML config (default configs/fgvc/cub.yaml)", &(a)->config, NULL, NULL},                  \
    {"--dataset", "NAME", "shorthand for --config configs/fgvc/NAME.yaml (cub, cars, aircraft, synthetic, tiny)", \
     &(a)->dataset, NULL, NULL},                                                                                  \
    {"--data-root", "DIR", "dataset directory (same as --set data.root=DIR)", &(a)->data_root, NULL, NULL},      \
    {"--set", "key.sub=value", "override one config value; repeatable; recorded in the run", NULL, NULL, add_set}, \
    {"--allow-deviation", "RULE", "accept one failing compliance rule; repeatable", NULL, NULL, add_allowed},    \
    {NULL, NULL, NULL, NULL, NULL, NULL}

// --help is a row too (last in the usage text); -h is its short form.
static const CliOpt help_rows[] = {
    {"--help", NULL, "this text", NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};

typedef struct {
    const char *cmd, *summary;
    const CliOpt *tables[3];   // common, the command's (may be NULL), help
} Parser;

static void usage(FILE *f, const Parser *p) {
    fprintf(f, "usage: dcal %s [options]\n\n%s\n\noptions:\n", p->cmd, p->summary);
    for (int t = 0; t < 3; t++)
        for (const CliOpt *o = p->tables[t]; o && o->flag; o++) {
            char left[64];
            snprintf(left, sizeof left, "%s%s%s", o->flag, o->metavar ? " " : "", o->metavar ? o->metavar : "");
            fprintf(f, "  %-26s %s\n", left, o->help);
        }
}

static const CliOpt *find_opt(const Parser *p, const char *flag) {
    if (!strcmp(flag, "-h")) return &help_rows[0];
    for (int t = 0; t < 3; t++)
        for (const CliOpt *o = p->tables[t]; o && o->flag; o++)
            if (!strcmp(o->flag, flag)) return o;
    return NULL;
}

const char *cli_dataset_config(const char *name) {
    static char path[DCAL_PATH_MAX];
    if (strchr(name, '/')) return NULL;
    snprintf(path, sizeof path, "configs/fgvc/%s.yaml", name);
    if (access(path, R_OK) == 0) return path;
    snprintf(path, sizeof path, "%s/configs/fgvc/%s.yaml", DCAL_SOURCE_DIR, name);
    if (access(path, R_OK) == 0) return path;
    return NULL;
}

// argv[*i] (and for "--flag VALUE" the next word): find its row, take its value.
static int parse_one(const Parser *p, CliArgs *a, int argc, char **argv, int *i) {
    char flag[64];
    const char *arg = argv[*i], *val = NULL;
    const CliOpt *pos = arg[0] != '-' ? find_opt(p, "") : NULL;   // a command's positional row has flag ""
    if (pos && pos->add) return pos->add(a, arg);
    const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
    if (eq && (size_t)(eq - arg) < sizeof flag) {   // --flag=value
        snprintf(flag, sizeof flag, "%.*s", (int)(eq - arg), arg);
        val = eq + 1;
    } else {
        snprintf(flag, sizeof flag, "%s", arg);
    }
    const CliOpt *o = find_opt(p, flag);
    if (o == &help_rows[0]) { usage(stdout, p); return CLI_HELP; }
    if (!o) {
        dcal_err("%s: unknown option '%s'", p->cmd, arg);
        usage(stderr, p);
        return DCAL_EXIT_USAGE;
    }
    if (o->metavar && !val) {
        if (*i + 1 >= argc) {
            dcal_err("%s: option '%s' needs a value", p->cmd, flag);
            usage(stderr, p);
            return DCAL_EXIT_USAGE;
        }
        val = argv[++*i];
    } else if (!o->metavar && val) {
        dcal_err("%s: option '%s' takes no value", p->cmd, flag);
        return DCAL_EXIT_USAGE;
    }
    if (o->present) *o->present = 1;
    if (o->add) return o->add(a, val);
    if (o->value) *o->value = val;
    return CLI_OK;
}

// After the loop: one config file (default cub's), --data-root first among the overrides.
static int finish(CliArgs *a) {
    if (a->config && a->dataset) {
        dcal_err("%s: give --config or --dataset, not both", a->cmd);
        return DCAL_EXIT_USAGE;
    }
    if (!a->config) {
        const char *name = a->dataset ? a->dataset : "cub";
        a->config = cli_dataset_config(name);
        if (!a->config) {
            dcal_err("%s: no config for dataset '%s' (expected configs/fgvc/%s.yaml; known: cub, cars, aircraft, "
                     "synthetic, tiny)", a->cmd, name, name);
            return DCAL_EXIT_USAGE;
        }
    }
    if (a->data_root) {
        snprintf(a->data_root_set, sizeof a->data_root_set, "data.root=%s", a->data_root);
        memmove(&a->sets[1], &a->sets[0], sizeof a->sets[0] * (size_t)a->n_sets);
        a->sets[0] = a->data_root_set;
        a->n_sets++;
    }
    return CLI_OK;
}

int cli_parse(int argc, char **argv, const char *summary, const CliOpt *extra, CliArgs *out) {
    memset(out, 0, sizeof *out);
    out->cmd = argv[0];
    const CliOpt common[] = {COMMON_ROWS(out)};
    const Parser p = {argv[0], summary, {common, extra, help_rows}};
    for (int i = 1; i < argc; i++) {
        int rc = parse_one(&p, out, argc, argv, &i);
        if (rc != CLI_OK) return rc;
    }
    return finish(out);
}

ConfigRequest cli_request(const CliArgs *a) {
    return (ConfigRequest){.who = a->cmd, .config_path = a->config, .sets = a->sets, .n_sets = a->n_sets,
                           .allowed = a->allowed, .n_allowed = a->n_allowed};
}

int cli_device_facts(const char *device, size_t *free_bytes, const char **precisions, const char **backend,
                     const char **precision_note) {
    const Backend *be = backend_get(device);
    if (!be) return 0;
    *free_bytes = be->free_memory();
    *precisions = be->precisions;
    *backend = be->name;
    *precision_note = be->precision_note ? be->precision_note() : NULL;
    return 1;
}

// cli.c: the options every config-taking command shares, then its own table.
// Order of resolution: config file → --data-root → --set (in order) → derived values.
#include "cmd/cli.h"
#include <string.h>
#include <unistd.h>
#include "compliance/compliance.h"

static void usage(FILE *f, const char *cmd, const char *summary, const CliOpt *extra) {
    fprintf(f, "usage: dcal %s [options]\n\n%s\n\noptions:\n", cmd, summary);
    fprintf(f, "  %-26s %s\n", "--config F", "YAML config (default configs/fgvc/cub.yaml)");
    fprintf(f, "  %-26s %s\n", "--dataset NAME", "shorthand for --config configs/fgvc/NAME.yaml (cub, cars, aircraft, synthetic, tiny)");
    fprintf(f, "  %-26s %s\n", "--data-root DIR", "dataset directory (same as --set data.root=DIR)");
    fprintf(f, "  %-26s %s\n", "--set key.sub=value", "override one config value; repeatable; recorded in the run");
    fprintf(f, "  %-26s %s\n", "--allow-deviation RULE", "accept one failing compliance rule; repeatable");
    for (const CliOpt *o = extra; o && o->flag; o++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", o->flag, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        fprintf(f, "  %-26s %s\n", left, o->help);
    }
    fprintf(f, "  %-26s %s\n", "--help", "this text");
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

static int known_rule(const char *id) {
    for (int i = 0; i < compliance_rule_count(); i++)
        if (!strcmp(compliance_rule_id(i), id)) return 1;
    return 0;
}

int cli_parse(int argc, char **argv, const char *summary, const CliOpt *extra, CliCommon *out) {
    const char *cmd = argv[0];
    const char *config = NULL, *dataset = NULL, *data_root = NULL;
    const char *sets[DCAL_MAX_OVERRIDES];
    int n_sets = 0, raw = out->raw;
    memset(out, 0, sizeof *out);
    out->raw = raw;
    for (int i = 1; i < argc; i++) {
        char flag[64];
        const char *arg = argv[i], *val = NULL;
        const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        if (eq && (size_t)(eq - arg) < sizeof flag) {   // --flag=value
            memcpy(flag, arg, (size_t)(eq - arg));
            flag[eq - arg] = 0;
            val = eq + 1;
        } else {
            snprintf(flag, sizeof flag, "%s", arg);
        }
        if (!strcmp(flag, "--help") || !strcmp(flag, "-h")) {
            usage(stdout, cmd, summary, extra);
            return CLI_HELP;
        }
        // Which option, and does it take a value?
        const char **slot = NULL;
        int *present = NULL, takes = 1;
        if (!strcmp(flag, "--config")) slot = &config;
        else if (!strcmp(flag, "--dataset")) slot = &dataset;
        else if (!strcmp(flag, "--data-root")) slot = &data_root;
        else if (!strcmp(flag, "--set") || !strcmp(flag, "--allow-deviation")) {}
        else {
            const CliOpt *o = extra;
            for (; o && o->flag; o++)
                if (!strcmp(o->flag, flag)) break;
            if (!o || !o->flag) {
                dcal_err("%s: unknown option '%s'", cmd, arg);
                usage(stderr, cmd, summary, extra);
                return DCAL_EXIT_USAGE;
            }
            slot = o->value;
            present = o->present;
            takes = o->metavar != NULL;
        }
        if (takes && !val) {
            if (i + 1 >= argc) {
                dcal_err("%s: option '%s' needs a value", cmd, flag);
                usage(stderr, cmd, summary, extra);
                return DCAL_EXIT_USAGE;
            }
            val = argv[++i];
        } else if (!takes && val) {
            dcal_err("%s: option '%s' takes no value", cmd, flag);
            return DCAL_EXIT_USAGE;
        }
        if (present) *present = 1;
        if (!strcmp(flag, "--set")) {
            if (n_sets == DCAL_MAX_OVERRIDES) { dcal_err("%s: too many --set options", cmd); return DCAL_EXIT_USAGE; }
            sets[n_sets++] = val;
        } else if (!strcmp(flag, "--allow-deviation")) {
            if (out->n_allowed == CLI_MAX_ALLOWED || strlen(val) >= sizeof out->allowed[0]) {
                dcal_err("%s: bad --allow-deviation '%s'", cmd, val);
                return DCAL_EXIT_USAGE;
            }
            if (!known_rule(val)) {
                dcal_err("%s: --allow-deviation: unknown rule '%s' (see 'dcal verify-config' for rule ids)", cmd, val);
                return DCAL_EXIT_USAGE;
            }
            strcpy(out->allowed[out->n_allowed++], val);
        } else if (slot) {
            *slot = val;
        }
    }
    if (config && dataset) {
        dcal_err("%s: give --config or --dataset, not both", cmd);
        return DCAL_EXIT_USAGE;
    }
    if (!config) {
        const char *name = dataset ? dataset : "cub";
        config = cli_dataset_config(name);
        if (!config) {
            dcal_err("%s: no config for dataset '%s' (expected configs/fgvc/%s.yaml; known: cub, cars, aircraft, "
                     "synthetic, tiny)", cmd, name, name);
            return DCAL_EXIT_USAGE;
        }
    }
    DcalConfig *c = &out->cfg;
    config_defaults(c);
    if (raw) {
        if (data_root) snprintf(c->overrides[c->n_overrides++], sizeof c->overrides[0], "data.root=%s", data_root);
        for (int i = 0; i < n_sets && c->n_overrides < DCAL_MAX_OVERRIDES; i++)
            snprintf(c->overrides[c->n_overrides++], sizeof c->overrides[0], "%s", sets[i]);
        return CLI_OK;
    }
    if (!config_load(c, config)) return DCAL_EXIT_FAIL;
    if (data_root) {
        char a[DCAL_PATH_MAX + 16];
        snprintf(a, sizeof a, "data.root=%s", data_root);
        if (!config_set(c, a)) return DCAL_EXIT_FAIL;
    }
    for (int i = 0; i < n_sets; i++)
        if (!config_set(c, sets[i])) return DCAL_EXIT_FAIL;
    if (!config_finalize(c)) return DCAL_EXIT_FAIL;
    for (int i = 0; i < c->n_deviations; i++)
        if (!known_rule(c->deviations[i].rule)) {
            dcal_err("%s:%d:%d: deviation names unknown rule '%s' (see 'dcal verify-config' for rule ids)", c->source,
                     c->deviations[i].line, c->deviations[i].col, c->deviations[i].rule);
            return DCAL_EXIT_FAIL;
        }
    return CLI_OK;
}

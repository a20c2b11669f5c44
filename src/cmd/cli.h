// cli.h: option parsing for the config-taking commands (train, eval,
// verify-config, plan). One table type, CliOpt, describes every option: the
// common rows (cli.c) and each command's own rows, in that order in --help:
//   --config F            YAML config (default configs/fgvc/cub.yaml)
//   --dataset NAME        shorthand for --config <configs dir>/fgvc/NAME.yaml
//   --data-root DIR       same as --set data.root=DIR
//   --set key.sub=value   override, repeatable, recorded in the config
//   --allow-deviation ID  accept a failing compliance rule, repeatable
//   --help
// cli_parse only reads argv; config_resolve (config/resolve.h) turns the
// result into the config, so no command resolves a config any other way.
#pragma once
#include "config/resolve.h"

#define CLI_MAX_ALLOWED CONFIG_MAX_ALLOWED

typedef struct CliArgs CliArgs;

typedef struct {
    const char *flag;          // "--resume"
    const char *metavar;       // "RUN" for options taking a value, NULL for booleans
    const char *help;
    const char **value;        // where a value is stored (options with metavar)
    int *present;              // set to 1 when given (may be NULL)
    // Repeatable options: called with each value instead of storing it; returns
    // CLI_OK or DCAL_EXIT_USAGE (after the message). NULL for plain options.
    int (*add)(CliArgs *a, const char *val);
    // A row with flag "" takes the words that are not options (predict's IMAGES), through add.
} CliOpt;

struct CliArgs {
    const char *cmd;                                   // argv[0]
    const char *config;                                // --config, or the file --dataset names (never NULL)
    const char *dataset;                               // --dataset as given (NULL if absent)
    const char *data_root;                             // --data-root as given (NULL if absent)
    const char *sets[DCAL_MAX_OVERRIDES + 1];          // --data-root as data.root=DIR, then each --set in order
    int n_sets;
    const char *allowed[CLI_MAX_ALLOWED];              // --allow-deviation ids (checked against the rule table)
    int n_allowed;
    char data_root_set[DCAL_PATH_MAX + 16];            // storage for "data.root=DIR"
};

enum { CLI_OK = 0, CLI_HELP = -1 };
// Parse argv (argv[0] = command name). Returns CLI_OK, CLI_HELP (usage printed
// to stdout: caller exits 0) or DCAL_EXIT_USAGE (unknown flag, missing value,
// unknown rule id or dataset: message, and for flags usage, on stderr).
// extra is terminated by an entry with flag == NULL; may be NULL.
int cli_parse(int argc, char **argv, const char *summary, const CliOpt *extra, CliArgs *out);
// A ConfigRequest holding the parsed file, --set list and --allow-deviation ids
// (everything else zero): the command adds its own fields, then config_resolve.
ConfigRequest cli_request(const CliArgs *a);
// Resolve configs/fgvc/<name>.yaml (cwd, then the source tree); NULL if not found.
const char *cli_dataset_config(const char *name);
// ConfigRequest.device_facts for commands that run on a backend (train, eval):
// the named backend's free memory and precisions; 0 after an error line.
int cli_device_facts(const char *device, size_t *free_bytes, const char **precisions, const char **backend,
                 const char **precision_note);

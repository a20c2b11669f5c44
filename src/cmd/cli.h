// cli.h: option parsing shared by the config-taking commands (train, eval,
// verify-config, plan). Common options:
//   --config F            YAML config (default configs/fgvc/cub.yaml)
//   --dataset NAME        shorthand for --config <configs dir>/fgvc/NAME.yaml
//   --set key.sub=value   override, repeatable, recorded in the config
//   --allow-deviation ID  accept a failing compliance rule, repeatable
//   --help
// Command-specific options are described by a CliOpt table.
#pragma once
#include "config/config.h"

#define CLI_MAX_ALLOWED 32

typedef struct {
    const char *flag;          // "--resume"
    const char *metavar;       // "RUN" for options taking a value, NULL for booleans
    const char *help;
    const char **value;        // where a value is stored (options with metavar)
    int *present;              // set to 1 when given (may be NULL)
} CliOpt;

typedef struct {
    int raw;                                 // in: 1 = do not resolve a config; --set strings are only
                                             //     recorded in cfg.overrides (train --resume reads the run's)
    DcalConfig cfg;                          // loaded, overridden, finalized
    int n_allowed;
    char allowed[CLI_MAX_ALLOWED][48];       // from --allow-deviation
} CliCommon;

enum { CLI_OK = 0, CLI_HELP = -1 };
// Parse argv (argv[0] = command name). Returns CLI_OK, CLI_HELP (usage printed
// to stdout: caller exits 0), DCAL_EXIT_USAGE (unknown flag/missing value,
// message + usage on stderr) or DCAL_EXIT_FAIL (config error, message printed).
// extra is terminated by an entry with flag == NULL; may be NULL.
int cli_parse(int argc, char **argv, const char *summary, const CliOpt *extra, CliCommon *out);
// Resolve configs/fgvc/<name>.yaml (cwd, then the source tree); NULL if not found.
const char *cli_dataset_config(const char *name);

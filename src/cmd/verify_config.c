// verify_config.c: `dcal verify-config` — resolve a config and print the
// compliance table; exit 1 when any rule fails without a declared deviation.
#include <stdio.h>
#include "cmd/cli.h"
#include "cmd/cmd.h"

int cmd_verify_config(int argc, char **argv) {
    int print_config = 0;
    const CliOpt extra[] = {
        {"--print-config", NULL, "also print the resolved config as YAML", NULL, &print_config, NULL},
        {0},
    };
    CliArgs cli;
    int rc = cli_parse(argc, argv,
                       "Check a config against the paper's rules (MODEL.md §1-5). Prints every rule with expected and\n"
                       "actual values and its source; PINNED marks an interpretation (docs/MODEL.md) where the paper is silent.\n"
                       "Exits 1 if any rule FAILs without a declared deviation.",
                       extra, &cli);
    if (rc == CLI_HELP) return DCAL_EXIT_OK;
    if (rc != CLI_OK) return rc;
    ConfigRequest rq = cli_request(&cli);   // no gate: the table is the output
    static ResolvedConfig r;
    if (!config_resolve(&rq, &r)) return DCAL_EXIT_FAIL;
    const DcalConfig *c = &r.cfg;
    printf("config: %s\n", c->source);
    for (int i = 0; i < c->n_overrides; i++) printf("override: --set %s\n", c->overrides[i]);
    // train.devices is the world size here (config_apply_world): what `mpirun -np N dcal train` would run.
    printf("world_size: %d process%s, each micro-batch %d x accumulation %d\n", c->train.devices,
           c->train.devices == 1 ? "" : "es", c->train.micro_batch, c->train.accum_steps);
    printf("attention: %s: %s\n", c->train.attention, config_attention_note(c->train.attention, NULL));
    compliance_print(stdout, r.rules, r.n_rules);
    if (print_config) {
        printf("\n");
        config_write_yaml(c, stdout);
    }
    for (int i = 0; i < r.n_rules; i++)
        if (r.rules[i].status == RULE_FAIL)
            dcal_err("%s: rule '%s' FAILS: expected %s, got %s [%s]", c->source, r.rules[i].id, r.rules[i].expected,
                     r.rules[i].actual, r.rules[i].source);
    return compliance_failures(r.rules, r.n_rules) ? DCAL_EXIT_FAIL : DCAL_EXIT_OK;
}

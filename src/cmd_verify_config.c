// cmd_verify_config.c: placeholder until its issue lands; says so and fails.
#include "cmd.h"
#include "common.h"
int cmd_verify_config(int argc, char **argv) {
    (void)argc; (void)argv;
    dcal_err("'verify_config' is not implemented yet");
    return DCAL_EXIT_FAIL;
}

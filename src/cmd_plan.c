// cmd_plan.c: placeholder until its issue lands; says so and fails.
#include "cmd.h"
#include "common.h"
int cmd_plan(int argc, char **argv) {
    (void)argc; (void)argv;
    dcal_err("'plan' is not implemented yet");
    return DCAL_EXIT_FAIL;
}

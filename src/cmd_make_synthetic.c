// cmd_make_synthetic.c: placeholder until its issue lands; says so and fails.
#include "cmd.h"
#include "common.h"
int cmd_make_synthetic(int argc, char **argv) {
    (void)argc; (void)argv;
    dcal_err("'make_synthetic' is not implemented yet");
    return DCAL_EXIT_FAIL;
}

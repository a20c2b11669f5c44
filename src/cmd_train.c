// cmd_train.c: placeholder until its issue lands; says so and fails.
#include "cmd.h"
#include "common.h"
int cmd_train(int argc, char **argv) {
    (void)argc; (void)argv;
    dcal_err("'train' is not implemented yet");
    return DCAL_EXIT_FAIL;
}

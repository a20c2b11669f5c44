// main.c: the dcal command line. Dispatches to one subcommand (src/cmd/*.c).
#include <stdio.h>
#include <string.h>
#include "dist/dist.h"
#include "cmd/cmd.h"
#include "core/common.h"
#include "git_commit.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} Command;

static const Command commands[] = {
    {"train", cmd_train, "train DCAL (checks paper compliance first)"},
    {"eval", cmd_eval, "evaluate a checkpoint: SA, GLCA and combined top-1"},
    {"verify-config", cmd_verify_config, "check a config against the paper's rules"},
    {"plan", cmd_plan, "print the exact memory plan for a config and micro-batch"},
    {"audit", cmd_audit, "re-check a run directory (hashes, config, compliance)"},
    {"report", cmd_report, "write RUN_DIR/report.html: curves, accuracy, overlays, compliance, manifest"},
    {"make-synthetic", cmd_make_synthetic, "write a synthetic fine-grained dataset in CUB layout"},
    {"predict", cmd_predict, "top-5 classes of images with a checkpoint (--json for machines)"},
    {"explain", cmd_explain, "attention rollout and GLCA's top-R patches over an image, as PNGs"},
    {"convert", cmd_convert, "timm ViT weights (.safetensors from tools/convert_timm.py, or ViT .npz) -> dcal"},
    {"dataset", cmd_dataset, "dataset tools: 'dcal dataset check --dataset cub --data-root DIR'"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "usage: dcal <command> [options]\n\n"
               "Dual Cross-Attention Learning (Zhu et al., CVPR 2022) for fine-grained recognition.\n\n"
               "commands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-15s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-15s %s\n", "help", "this text, or 'dcal help <command>'");
    fprintf(f, "\n'dcal <command> --help' describes a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return DCAL_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        if (argc >= 3) {
            for (int i = 0; i < N_COMMANDS; i++)
                if (!strcmp(argv[2], commands[i].name)) {
                    char *sub[] = {argv[2], "--help", NULL};
                    return commands[i].fn(2, sub);
                }
            dcal_err("unknown command '%s' (see 'dcal help')", argv[2]);
            return DCAL_EXIT_USAGE;
        }
        usage(stdout);
        return DCAL_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("dcal %s (commit %s; data parallel: %s)\n", DCAL_VERSION, DCAL_GIT_COMMIT, dist_library());
        return DCAL_EXIT_OK;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(cmd, commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    dcal_err("unknown command '%s'", cmd);
    usage(stderr);
    return DCAL_EXIT_USAGE;
}

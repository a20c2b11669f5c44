// infer.h: what `dcal predict` and `dcal explain` share: a model with its
// weights (a run's checkpoint, or converted pretrained weights with their own
// head), the class names, the test-time preprocessing of eval (MODEL.md §5:
// resize, centre crop, normalise) and the inference scores (MODEL.md §3).
#pragma once
#include <stdbool.h>
#include "cmd/cli.h"
#include "model/model.h"
#include "model/scores.h"


typedef struct {
    DcalConfig cfg;            // model and preprocessing as trained (the run's config.yaml)
    Model m;
    int C;
    char **names;              // [C]: the dataset's class names, or "class_<k>" when it is not at hand
    bool have_glca;            // a trained GLCA branch: model.glca_blocks > 0, weights from a checkpoint
} Infer;

// Where the weights come from (the options predict and explain share).
typedef struct {
    const char *checkpoint;    // a run's checkpoint; its config.yaml beside it (or run_config)
    const char *run_config;
    const char *pretrained;    // or: `dcal convert --keep-head` weights, model shape from --config/--set
    const char *classes;       // a file of class names (CUB classes.txt "id name", or one name a line)
} InferSource;

// Resolve the config, build the model for micro-batch B, load the weights, find
// the class names. 0 after an error line (in is then freed).
int infer_open(Infer *in, const CliArgs *cli, const InferSource *src, int B);
void infer_close(Infer *in);
// One image file through eval's preprocessing into out [3, S, S]. 0 after an error line.
int infer_load_image(const Infer *in, const char *path, float *out);
// "sa" | "glca" | "sa+glca" → br; 0 after an error line.
int infer_branch(const char *s, Branch *br);

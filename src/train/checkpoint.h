// checkpoint.h: training state ⇄ one safetensors file (ARCHITECTURE.md §6).
// Tensors: every parameter by its MODEL.md §6 name, AdamW moments as
// "adam.m.<name>" / "adam.v.<name>". __metadata__: the position in the run
// (step, epoch, batch, micro_step), the seed, dcal's version, and
// params_sha256 = sha256 over the fp32 bytes of the parameters in table order.
#pragma once
#include <stdint.h>
#include "model/model.h"

typedef struct {
    int64_t step;          // optimizer steps done
    int64_t micro_step;    // micro-batches done (keys the PWCA pairing)
    int epoch;             // epoch to continue in (0-based)
    int batch;             // next micro-batch index within that epoch
    uint64_t seed;
} TrainPos;

// Write params (+ AdamW m, v when not NULL; backend memory) atomically.
int checkpoint_save(const char *path, const Model *m, const float *adam_m, const float *adam_v, const TrainPos *pos);
// Load params (and m, v when not NULL, required then) exactly; fills pos when not NULL.
int checkpoint_load(const char *path, Model *m, float *adam_m, float *adam_v, TrainPos *pos);
// sha256 of the parameters (fp32 bytes, table order), hex.
void checkpoint_params_sha256(const Model *m, char hex[65]);

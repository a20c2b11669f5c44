// weights.h: model parameters ⇄ safetensors files (MODEL.md §6).
#pragma once
#include "model/model.h"
#include "core/safetensors.h"

// Add every parameter (names of the table) to a writer, copying from the backend.
void weights_add(const Model *m, StWriter *w, const char *prefix /* "" or "grad." etc. */, const float *buf);
// Exact load (--init, checkpoints): every model tensor must be present with the
// exact shape; extra tensors are an error unless allow_extra. Errors name the tensor.
int weights_load_exact(Model *m, const SafeTensors *st, int allow_extra);
// Pretrained timm ViT/DeiT: backbone names as MODEL.md §6; head.* ignored; pos_embed
// resized bicubic (a=−0.75, align_corners=false, CLS kept apart); GLCA copied from
// SA per MODEL.md §2; loss_w and heads keep their init. Shape mismatches listed tensor by tensor.
int weights_load_pretrained(Model *m, const char *path);
// Bicubic resize of a [g_in*g_in, D] grid to [g_out*g_out, D] (PyTorch semantics).
void pos_embed_resize(const float *in, int g_in, float *out, int g_out, int D);

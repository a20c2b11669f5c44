// weights.h: model parameters ⇄ safetensors files (MODEL.md §6).
#pragma once
#include "model/model.h"
#include "core/safetensors.h"
#include "core/sha256.h"

// Add every parameter (names of the table) of buf (backend memory, the table's layout) to a
// writer: each tensor is copied from the backend when the file is written, through one
// tensor's buffer (stw_add_f32_fill), so buf must be unchanged until then.
void weights_add(const Model *m, StWriter *w, const char *prefix /* "" or "grad." etc. */, const float *buf);
// Exact load (--init, checkpoints): every model tensor must be present with the
// exact shape; extra tensors are an error unless allow_extra; when the file's __metadata__ has params_sha256 (dcal checkpoints), the loaded
// parameters must hash to it (sha256 of the fp32 bytes in table order). Errors
// name the file and the tensor.
// It streams (weights_stream, with its checks: 0 or WEIGHTS_FINITE): on failure the model's
// parameters may hold part of the file.
int weights_load_exact(Model *m, const SafeTensors *st, int allow_extra, int checks);
// Stream "<prefix><name>" of every table tensor from st into buf (backend memory, the table's
// layout) through one tensor's host buffer, never a copy of the whole: each present with the
// exact shape (a transposed or flattened tensor is refused; checked first, every problem
// reported), read, checked (WEIGHTS_FINITE: no NaN or Inf, as weights_tensor_finite reports
// it; WEIGHTS_NONNEG: no negative value), hashed
// into h in table order (when h is not NULL), uploaded, and its pages of the file released
// (st_release). 0 after an error line; buf may then hold part of the file.
enum { WEIGHTS_FINITE = 1, WEIGHTS_NONNEG = 2 };
int weights_stream(const Model *m, const SafeTensors *st, const char *prefix, float *buf, int checks, Sha256 *h);
// Tensor t's host values x: 0 after an error line "<where>: tensor '<prefix><name>': element
// <i> is NaN|Inf|-Inf" for the first non-finite value.
int weights_tensor_finite(const ParamTensor *t, const float *x, const char *where, const char *prefix);
// Pretrained timm ViT/DeiT: backbone names as MODEL.md §6; head.* ignored; pos_embed
// resized bicubic (a=−0.75, align_corners=false, CLS kept apart); GLCA copied from
// SA per MODEL.md §2; loss_w and heads keep their init. Shape mismatches listed tensor by tensor
// (the first few, then a count); a dcal checkpoint is refused in one line.
int weights_load_pretrained(Model *m, const char *path);
// A pretrained file's own classifier (head.weight, head.bias, kept by `dcal convert
// --keep-head`) into the SA head, exact shape (model.num_classes = the file's classes):
// for checking a conversion against the source model's logits. 0 after an error line.
int weights_load_head(Model *m, const char *path);
// Bicubic resize of a [g_in*g_in, D] grid to [g_out*g_out, D] (PyTorch semantics).
void pos_embed_resize(const float *in, int g_in, float *out, int g_out, int D);

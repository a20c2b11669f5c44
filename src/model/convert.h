// convert.h: ViT weights from elsewhere → dcal's pretrained safetensors
// (MODEL.md §6 names, F32), what `dcal convert` writes and `--pretrained` reads.
// Sources: a safetensors file with timm's ViT names (tools/convert_timm.py
// writes one from a .pth/.bin; timm's own model.safetensors is one), or the
// .npz of the original ViT release (Flax names: Transformer/encoderblock_i/...).
#pragma once
#include <stdbool.h>

typedef struct {
    int dim, depth, patch, grid;   // backbone found in the file (grid: pos_embed's side)
    int num_classes;               // of the head kept (0: dropped)
    int n_tensors;                 // written
    int n_dropped;                 // classifier tensors left out
} ConvertInfo;

// Convert in_path (.npz by its zip signature, else safetensors) to out_path,
// written atomically. keep_head keeps the classifier as head.* (timm's 1000
// ImageNet classes, for checking logits against timm); --pretrained ignores it.
// Refuses (one error line naming the file and tensor) tensors that no
// pre-LN ViT with a CLS token has: LayerScale, global-pool norms, registers.
int convert_vit(const char *in_path, const char *out_path, bool keep_head, ConvertInfo *info);

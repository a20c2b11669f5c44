// convert.c: `dcal convert IN --out OUT [--keep-head]` — ViT weights from timm
// (safetensors with timm names: tools/convert_timm.py writes one from a
// .pth/.bin) or the original ViT release (.npz) into dcal's pretrained
// safetensors (MODEL.md §6), which `--pretrained` reads.
#include <stdio.h>
#include <string.h>
#include "cmd/cmd.h"
#include "core/common.h"
#include "model/convert.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dcal convert IN --out OUT.safetensors [--keep-head]\n\n"
               "Convert ViT weights into dcal's pretrained safetensors (names of docs/MODEL.md §6, F32):\n"
               "  IN.safetensors  timm names (timm's model.safetensors, or tools/convert_timm.py's dump of a .pth/.bin)\n"
               "  IN.npz          the original ViT release (Flax names; kernels transposed, q/k/v merged into qkv)\n\n"
               "  --out FILE      output (written atomically)\n"
               "  --keep-head     keep the classifier as head.* (--pretrained ignores it; `dcal predict --pretrained`\n"
               "                  uses it to check logits against the source model)\n"
               "  --help          this text\n");
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    bool keep_head = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return DCAL_EXIT_OK; }
        if (!strcmp(a, "--keep-head")) keep_head = true;
        else if (!strncmp(a, "--out=", 6)) out = a + 6;
        else if (!strcmp(a, "--out") && i + 1 < argc) out = argv[++i];
        else if (a[0] != '-' && !in) in = a;
        else {
            dcal_err("convert: unexpected argument '%s'", a);
            usage(stderr);
            return DCAL_EXIT_USAGE;
        }
    }
    if (!in || !out) {
        dcal_err("convert: give the input file and --out FILE");
        usage(stderr);
        return DCAL_EXIT_USAGE;
    }
    ConvertInfo info;
    if (!convert_vit(in, out, keep_head, &info)) return DCAL_EXIT_FAIL;
    printf("wrote %s: ViT backbone D %d, %d blocks, patch %d, %dx%d position grid; %d tensors", out, info.dim,
           info.depth, info.patch, info.grid, info.grid, info.n_tensors);
    if (info.num_classes) printf(", head of %d classes kept", info.num_classes);
    if (info.n_dropped) printf(", %d classifier tensors dropped", info.n_dropped);
    printf("\nuse it with: dcal train --pretrained %s\n", out);
    return DCAL_EXIT_OK;
}

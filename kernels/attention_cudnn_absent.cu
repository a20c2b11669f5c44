// attention_cudnn_absent.cu: stands in for attention_cudnn.cu where cuDNN is not there: a CUDA
// build that found no cuDNN 9 (CMakeLists.txt), and the CUDA simulator (tools/cudasim), which does
// not model cuDNN. train.attention=cudnn is then refused by set_attention with this reason, so
// the forward and backward below are never reached.
#include "kernels/cuda_common.h"

int cudnn_attention_open(char *why, size_t n) {
    snprintf(why, n, "this build has no cuDNN (a CUDA build without cuDNN 9, or the CUDA simulator, which does not "
                     "model it)");
    return 0;
}

void cudnn_attention_describe(char *buf, size_t n) { snprintf(buf, n, "attention cuDNN (not in this build)"); }

static void absent(void) {
    fprintf(stderr, "dcal: attention cudnn: internal: called in a build without cuDNN\n");
    exit(1);
}

void cudnn_attention_forward(const AttnArgs *, Act *, float *) { absent(); }

void cudnn_attention_backward(const AttnArgs *, const AttnGrads *, const Act *, const float *, const float *) {
    absent();
}

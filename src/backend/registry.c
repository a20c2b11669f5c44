// backend.c: choose the backend named by train.device.
#include <string.h>
#include "core/common.h"
#include "backend/backend.h"

const Backend *backend_get(const char *name) {
    if (!strcmp(name, "cpu")) return &backend_cpu;
#ifdef DCAL_HAVE_CUDA
    int n = cuda_device_count();
    if (!strcmp(name, "cuda")) {
        if (n > 0) return &backend_cuda;
        dcal_err("device 'cuda' requested but no CUDA GPU is available (use --set train.device=cpu)");
        return NULL;
    }
    if (!strcmp(name, "auto")) return n > 0 ? &backend_cuda : &backend_cpu;
#else
    if (!strcmp(name, "cuda")) {
        dcal_err("device 'cuda' requested but this dcal was built without CUDA (DCAL_CUDA=OFF)");
        return NULL;
    }
    if (!strcmp(name, "auto")) return &backend_cpu;
#endif
    dcal_err("unknown device '%s' (expected auto, cpu or cuda)", name);
    return NULL;
}

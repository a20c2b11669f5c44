// nccl.cu: the CUDA backend's collectives (BackendComm in backend/backend.h)
// over NCCL: point-to-point and broadcast of device buffers on the backend's one
// stream, so they are ordered with the ops around them. NCCL only moves bytes:
// the order in which gradients are summed is src/dist/reduce.c's fixed tree,
// shared with the MPI transport of the CPU backend. The group's id is made on
// rank 0 and carried to the others over MPI by src/dist/ (transport_for).
// Built only when CMake finds NCCL (DCAL_HAVE_NCCL); else the backend has no comm.
#include "kernels/cuda_common.h"

#ifdef DCAL_HAVE_NCCL
#include <nccl.h>

static ncclComm_t g_comm;
static bool g_open;

static int nccl_ok(ncclResult_t r, const char *what) {
    if (r == ncclSuccess) return 1;
    fprintf(stderr, "dcal: nccl: %s failed: %s (a rank died, or the GPUs cannot reach each other: NCCL_DEBUG=WARN "
                    "says more)\n", what, ncclGetErrorString(r));
    return 0;
}

// One process per GPU: the rank's place on its node picks the device, before
// anything else touches CUDA (cmd/train.c calls this right after the launcher's start).
static int nccl_select_device(int local_rank) {
    int n = cuda_device_count();
    if (n <= 0) return 1;   // no GPU: the CPU backend runs, nothing to select
    CUDA_CHECK(cudaSetDevice(local_rank % n));
    return 1;
}

static int nccl_make_id(void *id) { return nccl_ok(ncclGetUniqueId((ncclUniqueId *)id), "ncclGetUniqueId"); }

static int nccl_init(const void *id, int rank, int world) {
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    if (!nccl_ok(ncclCommInitRank(&g_comm, world, u, rank), "ncclCommInitRank")) return 0;
    g_open = true;
    return 1;
}

static int nccl_send(const float *buf, size_t n, int peer) {
    return nccl_ok(ncclSend(buf, n, ncclFloat, peer, g_comm, cuda_stream()), "ncclSend");
}

static int nccl_recv(float *buf, size_t n, int peer) {
    return nccl_ok(ncclRecv(buf, n, ncclFloat, peer, g_comm, cuda_stream()), "ncclRecv");
}

static int nccl_bcast(float *buf, size_t n, int root) {
    return nccl_ok(ncclBroadcast(buf, buf, n, ncclFloat, root, g_comm, cuda_stream()), "ncclBroadcast");
}

static void nccl_finish(void) {
    if (!g_open) return;
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
    ncclCommDestroy(g_comm);
    g_open = false;
}

static const BackendComm nccl_table = {
    /* name */ "nccl",
    /* id_bytes */ sizeof(ncclUniqueId),
    /* select_device */ nccl_select_device,
    /* make_id */ nccl_make_id,
    /* init */ nccl_init,
    /* send */ nccl_send,
    /* recv */ nccl_recv,
    /* bcast */ nccl_bcast,
    /* finish */ nccl_finish,
};
extern const BackendComm *const cuda_comm = &nccl_table;
#else
extern const BackendComm *const cuda_comm = NULL;
#endif

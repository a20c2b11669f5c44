// dist.c: the process group over MPI (OpenMPI's mpirun, Slurm's srun), or a
// group of one. MPI is initialised only when a launcher started this process:
// a plain `dcal train` stays a plain process (no singleton start-up cost, no
// MPI warnings). Counts above INT_MAX go in chunks (MPI counts are int).
#include "dist/dist.h"
#include <stdlib.h>
#include <string.h>
#include "core/common.h"
#ifdef DCAL_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_world = 1, g_local = 0, g_mpi = 0;

// A launcher's variables: OpenMPI's mpirun, PMIx (srun --mpi=pmix, prterun), PMI-2 (srun, MPICH).
static int launched(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", NULL};
    for (int i = 0; vars[i]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

int dist_rank(void) { return g_rank; }
int dist_world(void) { return g_world; }
int dist_local_rank(void) { return g_local; }

#ifdef DCAL_HAVE_MPI
#define CHUNK ((size_t)1 << 28)   // elements per MPI call

const char *dist_library(void) {
    static char buf[MPI_MAX_LIBRARY_VERSION_STRING + 8];
    char v[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int len = 0;
    MPI_Get_library_version(v, &len);   // callable before MPI_Init
    v[strcspn(v, ",\n")] = 0;
    snprintf(buf, sizeof buf, "MPI (%s)", v);
    return buf;
}

static int mpi_ok(int rc, const char *what) {
    if (rc == MPI_SUCCESS) return 1;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    dcal_err("rank %d: MPI %s failed: %.*s (a rank died or the network failed)", g_rank, what, len, msg);
    return 0;
}

int dist_init(int *argc, char ***argv) {
    if (!launched() || g_mpi) return 1;
    int provided;
    // Loader threads never call MPI: FUNNELED is enough.
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        dcal_err("MPI_Init failed (started by a launcher, but MPI could not start: see the lines above)");
        return 0;
    }
    g_mpi = 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);   // error lines, not MPI's abort text
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &g_local);
    MPI_Comm_free(&node);
    return 1;
}

void dist_finalize(void) {
    if (g_mpi) MPI_Finalize();
    g_mpi = 0;
}

void dist_abort(int rc) {
    if (!g_mpi || g_world == 1) return;
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, rc ? rc : 1);
}

int dist_allgather(const void *mine, void *all, size_t n) {
    if (g_world == 1) { memmove(all, mine, n); return 1; }
    return mpi_ok(MPI_Allgather(mine, (int)n, MPI_BYTE, all, (int)n, MPI_BYTE, MPI_COMM_WORLD), "allgather");
}

int dist_max_int(int v) {
    int out = v;
    if (g_world > 1 && !mpi_ok(MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "allreduce"))
        dist_abort(1);
    return out;
}

int dist_sum_long(long *v, int n) {
    if (g_world == 1) return 1;
    return mpi_ok(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_LONG, MPI_SUM, MPI_COMM_WORLD), "allreduce");
}

int dist_host_send(const float *buf, size_t n, int peer) {
    for (size_t o = 0; o < n; o += CHUNK) {
        size_t k = n - o < CHUNK ? n - o : CHUNK;
        if (!mpi_ok(MPI_Send(buf + o, (int)k, MPI_FLOAT, peer, 0, MPI_COMM_WORLD), "send")) return 0;
    }
    return 1;
}

int dist_host_recv(float *buf, size_t n, int peer) {
    for (size_t o = 0; o < n; o += CHUNK) {
        size_t k = n - o < CHUNK ? n - o : CHUNK;
        if (!mpi_ok(MPI_Recv(buf + o, (int)k, MPI_FLOAT, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "recv"))
            return 0;
    }
    return 1;
}

int dist_host_bcast(float *buf, size_t n, int root) {
    if (g_world == 1) return 1;
    for (size_t o = 0; o < n; o += CHUNK) {
        size_t k = n - o < CHUNK ? n - o : CHUNK;
        if (!mpi_ok(MPI_Bcast(buf + o, (int)k, MPI_FLOAT, root, MPI_COMM_WORLD), "broadcast")) return 0;
    }
    return 1;
}

int dist_bcast_bytes(void *buf, size_t n, int root) {
    if (g_world == 1) return 1;
    return mpi_ok(MPI_Bcast(buf, (int)n, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast");
}

#else   // built without MPI: a group of one

int dist_init(int *argc, char ***argv) {
    (void)argc; (void)argv;
    const char *size = getenv("OMPI_COMM_WORLD_SIZE");
    if (!size) size = getenv("PMI_SIZE");
    if (launched() && size && atoi(size) > 1) {
        dcal_err("started by an MPI launcher with %s processes, but this dcal was built without MPI (install "
                 "libopenmpi-dev: scripts/install-deps.sh, and rebuild)", size);
        return 0;
    }
    return 1;
}
const char *dist_library(void) { return "none (built without MPI)"; }
void dist_finalize(void) {}
void dist_abort(int rc) { (void)rc; }
int dist_allgather(const void *mine, void *all, size_t n) { memmove(all, mine, n); return 1; }
int dist_max_int(int v) { return v; }
int dist_sum_long(long *v, int n) { (void)v; (void)n; return 1; }
// A group of one never sends: the reducer's tree has no edge.
int dist_host_send(const float *buf, size_t n, int peer) {
    (void)buf; (void)n;
    dcal_err("internal: send to rank %d in a group of one", peer);
    return 0;
}
int dist_host_recv(float *buf, size_t n, int peer) {
    (void)buf; (void)n;
    dcal_err("internal: receive from rank %d in a group of one", peer);
    return 0;
}
int dist_host_bcast(float *buf, size_t n, int root) { (void)buf; (void)n; (void)root; return 1; }
int dist_bcast_bytes(void *buf, size_t n, int root) { (void)buf; (void)n; (void)root; return 1; }
#endif

// dist.h: data parallelism (ARCHITECTURE.md, layer dist): the process group
// that a launcher (mpirun, srun) starts, small host collectives for agreement,
// and the gradient reducer (reduce.h). One process per device; rank 0 owns the
// run directory. Built without MPI (DCAL_HAVE_MPI unset), or started without a
// launcher, the group is this one process and every call is local.
#pragma once
#include <stddef.h>
#include <stdint.h>

// Joins the launcher's group when one started this process (OpenMPI's mpirun,
// Slurm's srun with PMI/PMIx); otherwise one process, no MPI_Init. 0 after an
// error line (a launcher's variables are set but this binary has no MPI).
int dist_init(int *argc, char ***argv);
// "MPI (<the library's version line>)" or "none (built without MPI)", for --version.
const char *dist_library(void);
int dist_rank(void);
int dist_world(void);
int dist_local_rank(void);    // rank on this node: which device to take
// Orderly end: every rank calls it with the same outcome.
void dist_finalize(void);
// One rank cannot go on while others wait in a collective: end the whole job
// with exit code rc (MPI_Abort), so that no rank hangs. Returns only in a
// group of one.
void dist_abort(int rc);

// Host collectives over the group, blocking; identity in a group of one.
// Each gathers n bytes from every rank into all[rank * n].
int dist_allgather(const void *mine, void *all, size_t n);
// The largest value over the ranks (agreement on a stop or a failure).
int dist_max_int(int v);
// Sums over the ranks (eval tallies: integers, so the order cannot matter).
int dist_sum_long(long *v, int n);

// Point-to-point and broadcast of float buffers in host memory: the MPI
// transport of the reducer (reduce.h). 0 after an error line.
int dist_host_send(const float *buf, size_t n, int peer);
int dist_host_recv(float *buf, size_t n, int peer);
int dist_host_bcast(float *buf, size_t n, int root);
int dist_bcast_bytes(void *buf, size_t n, int root);

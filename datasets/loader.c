// loader.c: batches of decoded images, prefetched by a pthread pool.
// Determinism: the work unit is one batch slot; what a slot holds depends only
// on (epoch permutation, slot position, files), never on which thread ran it or
// when. With data.skip_bad a bad image is replaced by the next good one in the
// epoch order (wrapping), so every worker count yields the same bytes; test
// images are never skipped (a skipped test image would change the accuracy).
// Stopping: every wait is bounded (WAIT_SLICE_NS) so a stop request is seen
// even while a worker hangs in a read (a hung network file system); the
// consumer then gives up (STOP_GRACE_S) and loader_destroy leaves such a worker
// behind (JOIN_GRACE_S) instead of joining it forever. Workers are never
// cancelled: one stopped inside fread or stb_image would leave a stdio lock
// held and memory in an unknown state; one left behind is harmless, since its
// loader is then never freed and the process is about to exit.
#include <pthread.h>
#include <string.h>
#include <time.h>
#include "datasets/dataset.h"
#include "core/rng.h"

#define RING 3   // batches in flight (consumer holds none: it gets a copy)
#define WAIT_SLICE_NS 100000000L   // 100 ms: how often a waiting consumer re-checks the stop flag
#define STOP_GRACE_S 2.0           // after a stop request, how much longer a batch may take to arrive
#define JOIN_GRACE_S 3.0           // loader_destroy: how long workers get to leave

typedef struct {
    float *img;                // [batch, 3, C, C]
    int *label, *id;
    int *bad;                  // per slot: bad images skipped to fill it
    int *err;                  // per slot: failed (no skip_bad)
    int done;                  // slots finished
} Slot;

struct Loader {
    const Dataset *d;
    DataConfig cfg;
    bool train;
    int batch, n, nb;          // nb: batches this process takes (its shard)
    int nb_all;                // batches of the whole split
    int rank, world, group;    // sharding (loader_set_shard): 0, 1, 1 = everything
    uint64_t seed;
    const DatasetItem *items;
    int *perm;                 // epoch order (train) or identity (test)
    unsigned char *flagged;    // items already reported bad (report once)
    int epoch, cur;            // next batch to hand out
    int skipped;
    size_t per;                // floats per image
    // pool
    int workers;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    Slot ring[RING];
    long next_task, end_task;  // task t = batch t / B, slot t % B
    int in_flight;
    int stop;
    int alive;                 // workers not yet returned
    const volatile sig_atomic_t *stop_flag;   // the trainer's signal flag (loader_set_stop_flag)
    double stop_seen;          // monotonic time the consumer first saw *stop_flag set (0: not yet)
    int broken;                // gave up on a blocked worker: every later call fails
    ImageLoadFn load;          // image_load, or a test's stand-in
};

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// One bounded wait on done_cv (mu held). 0 when the caller must give up: the stop
// flag has been set for more than STOP_GRACE_S (or `deadline`, if > 0, has passed).
static int wait_slice(Loader *l, double deadline) {
    double now = mono_now();
    if (deadline > 0 && now >= deadline) return 0;
    if (l->stop_flag && *l->stop_flag) {
        if (l->stop_seen == 0) l->stop_seen = now;
        else if (now - l->stop_seen > STOP_GRACE_S) return 0;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += WAIT_SLICE_NS;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&l->done_cv, &l->mu, &ts);
    return 1;
}

// This process's b-th batch → the batch index over the whole split: blocks of
// `group` consecutive batches, one block per rank in rank order (loader_set_shard).
static int global_batch(const Loader *l, int b) {
    return (b / l->group) * l->group * l->world + l->rank * l->group + b % l->group;
}

// Rows of this process's batch b.
static int rows_of(const Loader *l, int b) {
    int r = l->n - global_batch(l, b) * l->batch;
    return r < l->batch ? r : l->batch;
}

// Fill one slot: item at epoch position k, or (skip_bad, training only) the next
// good one. Every bad file is reported once, in one line with its reason.
static void fill_slot(Loader *l, long k, float *img, int *label, int *id, int *bad, int *err) {
    *bad = 0; *err = 0;
    bool skip = l->train && l->cfg.skip_bad;
    for (int tries = 0; tries < l->n; tries++) {
        int s = l->perm[(k + tries) % l->n];
        const DatasetItem *it = &l->items[s];
        char why[320] = "could not be read earlier in this run";
        // A file that failed once fails again: skip the decode, same result.
        if (!__atomic_load_n(&l->flagged[s], __ATOMIC_RELAXED)) {
            if (l->load(it->path, &l->cfg, l->train, l->seed, l->epoch, s, img, why, sizeof why)) {
                *label = it->label; *id = s;
                return;
            }
            __atomic_store_n(&l->flagged[s], 1, __ATOMIC_RELAXED);
            if (skip) dcal_err("%s: %s (skipped: data.skip_bad; the next image in epoch order takes its place)",
                               it->path, why);
        }
        if (skip) { (*bad)++; continue; }
        dcal_err("%s: %s (%s)", it->path, why,
                 l->train ? "set data.skip_bad=true to skip bad training images"
                          : "a test image: data.skip_bad applies to training images only, since skipping one would "
                            "change the reported accuracy; fix or replace the file");
        *err = 1;
        return;
    }
    dcal_err("%s: no image of the %s split could be decoded (see the lines above)", l->d->root,
             l->train ? "train" : "test");
    *err = 1;
}

static void *worker(void *arg) {
    Loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        // Only work on batches whose ring slot the consumer has released.
        while (!l->stop && !(l->next_task < l->end_task && l->next_task / l->batch < l->cur + RING))
            pthread_cond_wait(&l->work_cv, &l->mu);
        if (l->stop) break;
        long t = l->next_task++;
        l->in_flight++;
        pthread_mutex_unlock(&l->mu);
        int b = (int)(t / l->batch), j = (int)(t % l->batch);
        Slot *s = &l->ring[b % RING];
        bool row = j < rows_of(l, b);   // a shard's last test batch may be short
        if (row)
            fill_slot(l, (long)global_batch(l, b) * l->batch + j, s->img + (size_t)j * l->per, &s->label[j], &s->id[j],
                      &s->bad[j], &s->err[j]);
        pthread_mutex_lock(&l->mu);
        l->in_flight--;
        s->done += row;
        pthread_cond_broadcast(&l->done_cv);
    }
    l->alive--;
    pthread_cond_broadcast(&l->done_cv);   // loader_destroy waits for alive == 0
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

Loader *loader_create(const Dataset *d, const DataConfig *cfg, bool train, int batch, uint64_t seed) {
    if (batch < 1) { dcal_err("loader: batch must be >= 1 (got %d)", batch); return NULL; }
    Loader *l = xcalloc(1, sizeof *l);
    l->d = d; l->cfg = *cfg; l->train = train; l->batch = batch; l->seed = seed;
    l->items = train ? d->train : d->test;
    l->n = train ? d->n_train : d->n_test;
    l->nb = l->nb_all = train ? l->n / batch : (l->n + batch - 1) / batch;
    l->world = l->group = 1;
    l->perm = xmalloc(sizeof(int) * (size_t)(l->n ? l->n : 1));
    l->flagged = xcalloc((size_t)(l->n ? l->n : 1), 1);
    l->per = (size_t)3 * cfg->crop * cfg->crop;
    l->workers = cfg->workers > 0 ? cfg->workers : 0;
    l->epoch = -1;
    l->load = image_load_why;
    if (l->workers) {
        for (int r = 0; r < RING; r++) {
            l->ring[r].img = xmalloc(sizeof(float) * l->per * (size_t)batch);
            l->ring[r].label = xcalloc((size_t)batch, sizeof(int));
            l->ring[r].id = xcalloc((size_t)batch, sizeof(int));
            l->ring[r].bad = xcalloc((size_t)batch, sizeof(int));
            l->ring[r].err = xcalloc((size_t)batch, sizeof(int));
        }
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->work_cv, NULL);
        pthread_condattr_t ca;   // done_cv's timed waits measure monotonic time (wait_slice)
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&l->done_cv, &ca);
        pthread_condattr_destroy(&ca);
        l->th = xmalloc(sizeof(pthread_t) * (size_t)l->workers);
        l->alive = l->workers;
        for (int i = 0; i < l->workers; i++)
            if (pthread_create(&l->th[i], NULL, worker, l) != 0) dcal_die("loader: cannot start worker thread %d", i);
    }
    return l;
}

size_t loader_plan_bytes(const DataConfig *cfg, int batch) {
    size_t R = (size_t)(cfg->resize > cfg->crop ? cfg->resize : cfg->crop), per = (size_t)3 * cfg->crop * cfg->crop;
    size_t decode = 3 * R * R * 3;   // the file, its pixels and the resized RGB: a source about R wide
    if (cfg->workers <= 0) return decode;
    return (size_t)RING * batch * per * sizeof(float) + (size_t)cfg->workers * decode;
}

int loader_num_batches(const Loader *l) { return l->nb; }

void loader_set_shard(Loader *l, int rank, int world, int group) {
    l->rank = rank; l->world = world; l->group = group;
    if (l->train) {
        l->nb = l->nb_all / (group * world) * group;   // whole steps only, as one process drops the rest
    } else {
        for (l->nb = 0; global_batch(l, l->nb) < l->nb_all;) l->nb++;
    }
}

// Give up on a blocked worker (mu held): from now on the loader only fails.
static int give_up(Loader *l, const char *during) {
    l->broken = 1;
    dcal_err("loader: stopping %s: an image worker is still reading %.0f s after the stop request (a slow or hung "
             "file system?)", during, STOP_GRACE_S);
    return LOADER_INTERRUPTED;
}

void loader_start(Loader *l, int epoch, int start) {
    if (l->broken) return;   // loader_next reports it
    if (l->workers) {
        // Drain: no task of the previous epoch may still write into the ring.
        pthread_mutex_lock(&l->mu);
        l->end_task = l->next_task;
        while (l->in_flight)
            if (!wait_slice(l, 0)) { give_up(l, "at the epoch start"); pthread_mutex_unlock(&l->mu); return; }
    }
    l->epoch = epoch;
    for (int i = 0; i < l->n; i++) l->perm[i] = i;
    if (l->train) {   // Fisher-Yates keyed by (seed, epoch)
        Rng r;
        rng_init(&r, l->seed, (uint32_t)epoch, 0, RNG_SHUFFLE);
        for (int i = l->n - 1; i > 0; i--) {
            int j = (int)rng_below(&r, (uint32_t)i + 1);
            int t = l->perm[i]; l->perm[i] = l->perm[j]; l->perm[j] = t;
        }
    }
    if (start < 0) start = 0;
    if (start > l->nb) start = l->nb;
    l->cur = start;
    if (l->workers) {
        for (int r = 0; r < RING; r++) l->ring[r].done = 0;
        l->next_task = (long)start * l->batch;
        l->end_task = (long)l->nb * l->batch;   // a short last test batch: the worker skips the missing rows
        pthread_cond_broadcast(&l->work_cv);
        pthread_mutex_unlock(&l->mu);
    }
}

// Batch b from the ring into the caller's arrays; LOADER_INTERRUPTED after an error
// line if a stop request came and the workers did not deliver in time.
static int take_batch(Loader *l, int b, int rows, float *images, int *labels, int *ids, int *bad_total, int *failed) {
    Slot *s = &l->ring[b % RING];
    pthread_mutex_lock(&l->mu);
    while (s->done < rows)
        if (!wait_slice(l, 0)) {
            int rc = give_up(l, "before the next batch");
            pthread_mutex_unlock(&l->mu);
            return rc;
        }
    pthread_mutex_unlock(&l->mu);
    memcpy(images, s->img, sizeof(float) * l->per * (size_t)rows);
    memcpy(labels, s->label, sizeof(int) * (size_t)rows);
    memcpy(ids, s->id, sizeof(int) * (size_t)rows);
    for (int j = 0; j < rows; j++) { *bad_total += s->bad[j]; *failed |= s->err[j]; }
    pthread_mutex_lock(&l->mu);
    s->done = 0;
    l->cur++;   // releases the ring slot for batch b + RING
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    return rows;
}

int loader_next(Loader *l, float *images, int *labels, int *ids) {
    if (l->broken) return LOADER_INTERRUPTED;
    if (l->epoch < 0) { dcal_err("loader: loader_start was not called"); return -1; }
    if (l->cur >= l->nb) return 0;
    int b = l->cur, rows = rows_of(l, b), bad_total = 0, failed = 0;
    if (!l->workers) {
        for (int j = 0; j < rows && !failed; j++) {
            int bad, err;
            fill_slot(l, (long)global_batch(l, b) * l->batch + j, images + (size_t)j * l->per, &labels[j], &ids[j], &bad, &err);
            bad_total += bad; failed |= err;
        }
        l->cur++;
    } else {
        int rc = take_batch(l, b, rows, images, labels, ids, &bad_total, &failed);
        if (rc < 0) return rc;
    }
    l->skipped += bad_total;
    return failed ? -1 : rows;
}

int loader_skipped(const Loader *l) { return l->skipped; }

void loader_set_skipped(Loader *l, int n) { l->skipped = n; }

void loader_set_stop_flag(Loader *l, const volatile sig_atomic_t *flag) { l->stop_flag = flag; }

void loader_set_image_fn(Loader *l, ImageLoadFn fn) { l->load = fn ? fn : image_load_why; }

// Ask the workers to leave and wait JOIN_GRACE_S for them (mu not held); no more
// waiting if a stop request already waited out its grace. 0 if some are still
// blocked (in a read): they are detached, not joined.
static int stop_workers(Loader *l) {
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->work_cv);
    double deadline = mono_now() + JOIN_GRACE_S;
    while (l->alive > 0 && wait_slice(l, deadline)) {}
    int left = l->alive;
    pthread_mutex_unlock(&l->mu);
    if (left) {
        dcal_err("loader: %d image worker(s) still blocked in a read after %.0f s; not waiting for them (a slow or hung "
                 "file system?)", left, JOIN_GRACE_S);
        for (int i = 0; i < l->workers; i++) pthread_detach(l->th[i]);
        return 0;
    }
    for (int i = 0; i < l->workers; i++) pthread_join(l->th[i], NULL);
    return 1;
}

void loader_destroy(Loader *l) {
    if (!l) return;
    if (l->workers) {
        if (!stop_workers(l)) return;   // l stays allocated: the blocked workers still use it
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->work_cv);
        pthread_cond_destroy(&l->done_cv);
        for (int r = 0; r < RING; r++) {
            free(l->ring[r].img); free(l->ring[r].label); free(l->ring[r].id);
            free(l->ring[r].bad); free(l->ring[r].err);
        }
        free(l->th);
    }
    free(l->perm); free(l->flagged);
    free(l);
}

// ranks.c: the start-up check of a data-parallel run. Every rank must train
// the same thing — the same resolved config, the same dataset files, the same
// build — or their gradients would be summed across different models or data
// without anyone noticing. Each rank learns every rank's facts, so all refuse
// together; rank 0 names the first difference in one line.
#include <stdio.h>
#include <string.h>
#include "core/sha256.h"
#include "dist/dist.h"
#include "git_commit.h"
#include "train/trainer.h"

typedef struct {
    char config[65], dataset[65], commit[48];
} RankFacts;

static int config_sha(const DcalConfig *c, char hex[65]) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return 0;
    int ok = config_write_yaml(c, f);
    fclose(f);
    if (ok) sha256_hex(buf, len, hex);
    free(buf);
    return ok;
}

// The first fact of rank r that differs from rank 0's, or NULL.
static const char *differs(const RankFacts *a, const RankFacts *b, const char **mine, const char **theirs) {
    if (strcmp(a->config, b->config)) { *mine = a->config; *theirs = b->config; return "config sha256"; }
    if (strcmp(a->dataset, b->dataset)) { *mine = a->dataset; *theirs = b->dataset; return "dataset fingerprint"; }
    if (strcmp(a->commit, b->commit)) { *mine = a->commit; *theirs = b->commit; return "build commit"; }
    return NULL;
}

int trainer_check_ranks(const Trainer *t) {
    if (t->world == 1) return 1;
    RankFacts me = {0};
    if (!config_sha(t->c, me.config)) snprintf(me.config, sizeof me.config, "unrenderable");
    snprintf(me.dataset, sizeof me.dataset, "%s", t->ds.fingerprint);
    snprintf(me.commit, sizeof me.commit, "%s", DCAL_GIT_COMMIT);
    RankFacts *all = xcalloc((size_t)t->world, sizeof *all);
    int ok = dist_allgather(&me, all, sizeof me);
    for (int r = 1; ok && r < t->world; r++) {
        const char *a, *b, *what = differs(&all[r], &all[0], &a, &b);
        if (!what) continue;
        if (t->rank == 0)
            dcal_err("rank %d of %d: %s %.16s differs from rank 0's %.16s: refusing to start (every rank must run "
                     "the same dcal build with the same config and dataset files)", r, t->world, what, a, b);
        ok = 0;
    }
    free(all);
    if (!ok) dist_max_int(1);   // rank 0's line is out before any rank ends the job
    return ok;
}

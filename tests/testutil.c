// testutil.c: helpers shared by the Check suites.
#include "testutil.h"
#include "backend/backend.h"
#include "model/model.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int run_dcal(const char *args, char *out, size_t cap) {
    const char *bin = getenv("DCAL_BIN");
    if (!bin) bin = "./dcal";
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = 0;
    char buf[4096];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, p)) > 0) {
        if (out && n + 1 < cap) {
            size_t take = r < cap - 1 - n ? r : cap - 1 - n;
            memcpy(out + n, buf, take);
            n += take;
        }
    }
    if (out && cap) out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const char *test_tmpdir(const char *tag) {
    static char path[1024];
    static int counter = 0;
    mkdir("tmp", 0755);
    snprintf(path, sizeof path, "tmp/%s.%ld.%d", tag, (long)getpid(), counter++);
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", path, path);
    if (system(cmd) != 0) { fprintf(stderr, "cannot make %s\n", path); exit(1); }
    return path;
}

void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "cannot write %s\n", path); exit(1); }
    fputs(text, f);
    fclose(f);
}

const char *src_dir(void) {
    const char *s = getenv("DCAL_SRC");
    return s ? s : ".";
}

int run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

double rel_err(const float *a, const double *b, size_t n, double floor) {
    double maxdiff = 0, maxref = floor;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;   // NaN never passes
        if (d > maxdiff) maxdiff = d;
        if (fabs(b[i]) > maxref) maxref = fabs(b[i]);
    }
    return maxdiff / maxref;
}

static FILE *cap_f;
static int cap_saved = -1;
static char cap_buf[16384];

void cap_begin(void) {
    fflush(stderr);
    cap_f = tmpfile();
    cap_saved = dup(2);
    dup2(fileno(cap_f), 2);
}

const char *cap_end(void) {
    fflush(stderr);
    dup2(cap_saved, 2);
    close(cap_saved);
    rewind(cap_f);
    size_t n = fread(cap_buf, 1, sizeof cap_buf - 1, cap_f);
    cap_buf[n] = 0;
    fclose(cap_f);
    return cap_buf;
}

int gpu_backend_for_test(const char *test, const Backend **out) {
    char why[640];
    const Backend *be = NULL;
    for (int i = 0; i < backend_count() && !be; i++)
        if (!strcmp(backend_at(i)->name, "cuda")) be = backend_at(i);
    if (!be) {
        printf("built without CUDA: skipping\n");
        return 77;
    }
    if (!be->available(why, sizeof why)) {
        printf("%s: skipping\n", why);
        return 77;
    }
    if (!be->set_precision("bf16")) {
        fprintf(stderr, "%s: the CUDA backend rejects precision bf16 (it lists '%s')\n", test, be->precisions);
        return 1;
    }
    be->describe(why, sizeof why);
    printf("%s\n", why);
    *out = be;
    return 0;
}

ModelConfig test_tiny_model(int dim, double drop_path) {
    DcalConfig c;
    config_defaults(&c);
    ModelConfig m = c.model;
    strcpy(m.preset, "custom");
    m.img_size = 32; m.patch = 8; m.dim = dim; m.heads = 2; m.depth = 3; m.mlp_dim = 2 * dim;
    m.glca_blocks = 1; m.pwca_blocks = 3; m.top_r = 0.25; m.drop_path = drop_path; m.num_classes = 5;
    return m;
}

int test_cpu_bf16_portable(char **argv) {
    const char *env = getenv("DCAL_CPU_BF16");
    if (env && !strcmp(env, "portable")) return 0;
    setenv("DCAL_CPU_BF16", "portable", 1);
    execv("/proc/self/exe", argv);
    perror("test_cpu_bf16_portable: execv");
    return 1;
}

float test_model_step(Model *m, const Batch *bt, StepOut *out) {
    model_zero_grads(m);
    model_forward_train(m, bt, out);
    model_backward(m, 1.0f);
    model_read_outputs(m, out);
    return out->loss;
}

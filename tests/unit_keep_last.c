// unit_keep_last.c: train.keep_last keeps the newest N checkpoints as
// checkpoint-step<S>.safetensors beside checkpoint.safetensors (the latest,
// untouched), removing older ones only after the new one is in place; and
// best.safetensors holds weights only, verifies as such and records the
// validation accuracy it was chosen on. Where the filesystem has no hard links the newest is
// copied, a few MiB at a time (copy_file_atomic): byte for byte across chunks, over an older
// file, and a missing source leaves the target as it was, no temporary file behind.
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "config/config.h"
#include "model/model.h"
#include "train/checkpoint.h"
#include "testutil.h"

static DcalConfig tiny_config(void) {
    DcalConfig c;
    char p[1200];
    config_defaults(&c);
    snprintf(p, sizeof p, "%s/configs/fgvc/tiny.yaml", src_dir());
    ck_assert(config_load(&c, p) && config_finalize(&c));
    return c;
}

// The checkpoint-step files in dir, as "s1,s2,..." in ascending step order.
static void kept(const char *dir, char *out, size_t cap) {
    long long steps[64];
    int n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; (e = readdir(d));)
        if (!strncmp(e->d_name, "checkpoint-step", 15) && strspn(e->d_name + 15, "0123456789") == 8 && n < 64)
            steps[n++] = atoll(e->d_name + 15);
    closedir(d);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (steps[j] < steps[i]) { long long t = steps[i]; steps[i] = steps[j]; steps[j] = t; }
    out[0] = 0;
    for (int i = 0; i < n; i++) snprintf(out + strlen(out), cap - strlen(out), "%s%lld", i ? "," : "", steps[i]);
}

START_TEST(copy_streams_byte_for_byte) {
    const char *dir = test_tmpdir("copy_atomic");
    char src[1200], dst[1200], none[1200];
    snprintf(src, sizeof src, "%s/src.bin", dir);
    snprintf(dst, sizeof dst, "%s/dst.bin", dir);
    snprintf(none, sizeof none, "%s/missing.bin", dir);
    size_t n = ((size_t)2 << 23) + 123;   // two 8-MiB chunks and a tail
    unsigned char *a = xmalloc(n);
    for (size_t i = 0; i < n; i++) a[i] = (unsigned char)(i * 2654435761u >> 13);
    ck_assert(write_file_atomic(dst, "old", 3));
    ck_assert(write_file_atomic(src, a, n));
    ck_assert(copy_file_atomic(src, dst));
    size_t got;
    char *b = read_file(dst, &got);
    ck_assert(b && got == n && !memcmp(a, b, n));
    free(b);
    cap_begin();
    ck_assert(!copy_file_atomic(none, dst));
    ck_assert_ptr_nonnull(strstr(cap_end(), "missing.bin"));
    b = read_file(dst, &got);
    ck_assert(b && got == n && !memcmp(a, b, n));
    DIR *d = opendir(dir);
    for (struct dirent *e; (e = readdir(d));) ck_assert_msg(!strstr(e->d_name, ".tmp."), "left %s", e->d_name);
    closedir(d);
    free(a), free(b);
}
END_TEST

START_TEST(keep_last_prunes_oldest) {
    const char *dir = test_tmpdir("keep");
    char latest[1200], name[1300], list[256];
    snprintf(latest, sizeof latest, "%s/checkpoint.safetensors", dir);
    for (int step = 10; step <= 50; step += 10) {
        char body[32];
        snprintf(body, sizeof body, "state at %d", step);
        write_text(latest, body);
        ck_assert(checkpoint_keep_last(dir, step, 3));
        snprintf(name, sizeof name, "%s/checkpoint-step%08d.safetensors", dir, step);
        size_t len;
        char *got = read_file(name, &len);   // the kept file is the latest as written at that step
        ck_assert(got && len == strlen(body) && !memcmp(got, body, len));
        free(got);
    }
    kept(dir, list, sizeof list);
    ck_assert_str_eq(list, "30,40,50");
    ck_assert(access(latest, F_OK) == 0);
    // Saved again at the same step (a resume that repeats it): replaced, not an error.
    write_text(latest, "again");
    ck_assert(checkpoint_keep_last(dir, 50, 3));
    kept(dir, list, sizeof list);
    ck_assert_str_eq(list, "30,40,50");
    // keep_last 1: only the latest, no step files made; foreign names are never touched.
    const char *dir1 = test_tmpdir("keep1");
    snprintf(latest, sizeof latest, "%s/checkpoint.safetensors", dir1);
    write_text(latest, "x");
    snprintf(name, sizeof name, "%s/checkpoint-stepX.safetensors", dir1);
    write_text(name, "not ours");
    ck_assert(checkpoint_keep_last(dir1, 7, 1));
    ck_assert(checkpoint_keep_last(dir1, 8, 2) && checkpoint_keep_last(dir1, 9, 2) && checkpoint_keep_last(dir1, 10, 2));
    kept(dir1, list, sizeof list);
    ck_assert_str_eq(list, "9,10");
    ck_assert(access(name, F_OK) == 0);
}
END_TEST

START_TEST(best_is_weights_only_and_verifies) {
    DcalConfig c = tiny_config();
    Model m;
    ck_assert(model_build(&m, &c.model, &backend_cpu));
    model_init_weights(&m, 3);
    const char *dir = test_tmpdir("best");
    char best[1200], other[1200], summary[512];
    snprintf(best, sizeof best, "%s/" CKPT_BEST_FILE, dir);
    TrainPos pos = {.step = 12, .micro_step = 48, .epoch = 3, .batch = 0, .seed = c.train.seed};
    ck_assert(checkpoint_save_best(best, &m, &pos, 0.625, 40));
    ck_assert(checkpoint_verify(best, &c, summary, sizeof summary));
    ck_assert_msg(strstr(summary, "step 12:") && strstr(summary, "validation split"), "%s", summary);
    CkptBest b;
    ck_assert(checkpoint_best_meta(best, &b));
    ck_assert_int_eq(b.step, 12);
    ck_assert_int_eq(b.epoch, 3);
    ck_assert_int_eq(b.val_n, 40);
    ck_assert(b.val_acc == 0.625);
    char hex[65];
    checkpoint_params_sha256(&m, hex);
    ck_assert_str_eq(b.params_sha256, hex);
    // Weights only: it loads for eval without AdamW state, and is no state to resume.
    ck_assert(checkpoint_load(best, &m, NULL, NULL, NULL));
    float *am = backend_cpu.alloc(m.n_params * 4), *av = backend_cpu.alloc(m.n_params * 4);
    cap_begin();
    int ok = checkpoint_load(best, &m, am, av, NULL);
    const char *e = cap_end();
    ck_assert_msg(!ok && strstr(e, "adam_sha256"), "%s", e);
    // Under another name the same weights-only file is not a valid checkpoint.
    snprintf(other, sizeof other, "%s/checkpoint-step00000012.safetensors", dir);
    size_t len;
    char *bytes = read_file(best, &len);
    ck_assert(bytes && write_file_atomic(other, bytes, len));
    free(bytes);
    cap_begin();
    ok = checkpoint_verify(other, &c, summary, sizeof summary);
    e = cap_end();
    ck_assert_msg(!ok && strstr(e, "metadata 'adam_sha256' missing"), "%s", e);
    // A periodic checkpoint is no best: it records no validation accuracy.
    for (size_t i = 0; i < m.n_params; i++) { am[i] = 0; av[i] = 0; }
    ck_assert(checkpoint_save(other, &m, am, av, &pos));
    cap_begin();
    ok = checkpoint_best_meta(other, &b);
    e = cap_end();
    ck_assert_msg(!ok && strstr(e, "not a validation accuracy"), "%s", e);
    backend_cpu.free(am); backend_cpu.free(av);
    model_free(&m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("keep_last");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, keep_last_prunes_oldest);
    tcase_add_test(tc, best_is_weights_only_and_verifies);
    tcase_add_test(tc, copy_streams_byte_for_byte);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

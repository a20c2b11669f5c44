// unit_attention_impl.c: train.attention (dcal | cudnn): the key and its values, the exact error
// lines verify-config gives for a bad value and for cuDNN where it cannot run (the CPU, fp32,
// an odd head dim), the determinism statement verify-config prints, the manifest's record, and
// `dcal train` refusing cuDNN on a backend without it before anything is written.
#include <string.h>
#include <sys/stat.h>
#include "backend/backend.h"
#include "compliance/compliance.h"
#include "config/config.h"
#include "config/fields.h"
#include "core/common.h"
#include "core/json.h"
#include "run/rundir.h"
#include "testutil.h"

static char out[16384];

static int verify(const char *sets) {
    char args[2048];
    snprintf(args, sizeof args, "verify-config --dataset cub %s", sets);
    return run_dcal(args, out, sizeof out);
}

// The one line of out that starts with prefix, or NULL.
static const char *line_of(const char *prefix) {
    static char line[2048];
    for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        size_t n = strcspn(p, "\n");
        if (!strncmp(p, prefix, strlen(prefix)) && n < sizeof line) {
            memcpy(line, p, n), line[n] = 0;
            return line;
        }
    }
    return NULL;
}

START_TEST(test_key_and_values) {
    const Field *f = config_field("train.attention");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(f->type, F_STR);
    ck_assert_str_eq(f->choices, "dcal|cudnn");
    DcalConfig c;
    config_defaults(&c);
    ck_assert_str_eq(c.train.attention, "dcal");   // dcal's deterministic kernels unless asked
    ck_assert(config_set(&c, "train.attention=cudnn"));
    ck_assert_str_eq(c.train.attention, "cudnn");
    ck_assert_int_eq(verify("--set train.attention=flash"), 1);
    ck_assert_str_eq(line_of("dcal:"), "dcal: --set train.attention=flash: train.attention: 'flash' is not one of dcal|cudnn");
}
END_TEST

START_TEST(test_cudnn_refusals) {
    static const struct { const char *sets, *line; } cases[] = {
        {"--set train.attention=cudnn --set train.device=cpu",
         "dcal: --set train.attention=cudnn: train.attention=cudnn runs on the cuda backend only, but train.device is "
         "cpu (set train.device=cuda, or train.attention=dcal)"},
        {"--set train.attention=cudnn --set train.precision=fp32",
         "dcal: --set train.attention=cudnn: train.attention=cudnn computes attention in bf16, but train.precision is "
         "fp32 (set train.precision=bf16 or auto, or train.attention=dcal)"},
        {"--set train.attention=cudnn --set model.preset=custom --set model.dim=60 --set model.heads=6",
         "dcal: --set train.attention=cudnn: train.attention=cudnn needs a head dim (model.dim / model.heads) that is "
         "a multiple of 8 and at most 128, got 10 (use train.attention=dcal)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(verify(cases[i].sets), 1);
        const char *l = line_of("dcal:");
        ck_assert_msg(l && !strcmp(l, cases[i].line), "case %zu: got:\n%s", i, out);
    }
    // The same conflicts are fine with dcal's kernels.
    ck_assert_int_eq(verify("--set train.device=cpu --set train.precision=fp32"), 0);
}
END_TEST

START_TEST(test_verify_config_says_determinism) {
    ck_assert_int_eq(verify(""), 0);
    ck_assert_str_eq(line_of("attention:"), "attention: dcal: dcal's fused kernels; backward deterministic: yes "
                                            "(fixed reduction order, no atomics)");
    ck_assert_int_eq(verify("--set train.attention=cudnn --set train.device=cuda"), 0);
    const char *l = line_of("attention:");
    ck_assert_ptr_nonnull(l);
    ck_assert_msg(!strncmp(l, "attention: cudnn: cuDNN fused SDPA (bf16, fp32 softmax), CUDA only; backward "
                              "deterministic: yes, requested", 91), "got: %s", l);
    ck_assert_msg(strstr(l, "CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC refused") && strstr(l, "not yet run on a GPU"),
                  "got: %s", l);
}
END_TEST

// The manifest's "attention" object: the key's value and the determinism verify-config states.
static void manifest_says(const char *impl, int det) {
    char dir[1100], set[1200];
    snprintf(dir, sizeof dir, "%s", test_tmpdir("attn"));
    DcalConfig c;
    config_defaults(&c);
    snprintf(set, sizeof set, "%s/configs/fgvc/tiny.yaml", src_dir());
    ck_assert(config_load(&c, set));
    snprintf(set, sizeof set, "train.out_dir=%s", dir);
    ck_assert(config_set(&c, set));
    snprintf(set, sizeof set, "train.attention=%s", impl);
    ck_assert(config_set(&c, set));
    RunDir r;
    ck_assert(rundir_open(&r, &c, NULL));
    RuleResult rr[COMPLIANCE_MAX_RULES];
    int n = compliance_check(&c, NULL, 0, rr);
    char *argv[] = {"dcal", "train"};
    ManifestInfo info = {.argc = 2, .argv = argv, .backend = "cuda", .device_name = "", .backend_describe = "",
                         .dataset_fingerprint = "fp", .rules = rr, .n_rules = n};
    ck_assert(rundir_write_manifest(&r, &c, &info));
    rundir_close(&r);
    char p[1300];
    size_t len;
    snprintf(p, sizeof p, "%s/manifest.json", r.dir);
    char *man = read_file(p, &len);
    ck_assert_ptr_nonnull(man);
    Json v;
    JsonError e;
    ck_assert_msg(json_parse(man, len, 0, &v, &e), "manifest.json at %zu: %s", e.offset, e.msg);
    const Json *a = json_get(&v, "attention");
    ck_assert_ptr_nonnull(a);
    ck_assert_str_eq(json_str(a, "impl"), impl);
    ck_assert_int_eq(json_get(a, "backward_deterministic")->type, JSON_BOOL);
    ck_assert_int_eq(json_get(a, "backward_deterministic")->b, det);
    ck_assert_str_eq(json_str(a, "note"), config_attention_note(impl, NULL));
    json_free(&v);
    free(man);
}

START_TEST(test_manifest_records_attention) {
    manifest_says("dcal", 1);
    manifest_says("cudnn", 1);
}
END_TEST

// On a backend without cuDNN (the CPU, which train.device=auto picks without a GPU) the trainer
// refuses before it opens a run directory.
START_TEST(test_train_refuses_without_cudnn) {
    const Backend *best = NULL;
    char why[256];
    for (int i = 0; i < backend_count() && !best; i++)
        if (backend_at(i)->available(why, sizeof why)) best = backend_at(i);
    if (best && best->set_attention) {
        printf("test_train_refuses_without_cudnn: skipped: train.device=auto picks %s here, which may run cuDNN\n",
               best->name);
        return;
    }
    const char *dir = test_tmpdir("attn-train");
    char args[4096];
    snprintf(args, sizeof args,
             "make-synthetic --out %s/data --classes 10 --per-class 2 --test-per-class 1 --img 36 >/dev/null && "
             "OMP_NUM_THREADS=1 \"$DCAL_BIN\" train --config %s/configs/fgvc/tiny.yaml --set data.root=%s/data "
             "--set train.out_dir=%s/runs --set train.device=auto --set train.attention=cudnn --set train.max_steps=1",
             dir, src_dir(), dir, dir);
    int rc = run_dcal(args, out, sizeof out);
    ck_assert_msg(rc != 0, "train ran:\n%s", out);
    ck_assert_msg(strstr(out, "dcal: train.attention=cudnn: the cpu backend cannot run it: only dcal's attention "
                              "(use train.attention=dcal)"), "got:\n%s", out);
    char runs[1200];
    snprintf(runs, sizeof runs, "%s/runs/tiny/manifest.json", dir);
    struct stat st;
    ck_assert_msg(stat(runs, &st) != 0, "a manifest was written: %s", runs);
}
END_TEST

int main(void) {
    Suite *s = suite_create("attention_impl");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_key_and_values);
    tcase_add_test(tc, test_cudnn_refusals);
    tcase_add_test(tc, test_verify_config_says_determinism);
    tcase_add_test(tc, test_manifest_records_attention);
    tcase_add_test(tc, test_train_refuses_without_cudnn);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

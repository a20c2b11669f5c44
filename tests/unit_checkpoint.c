// unit_checkpoint.c: the training state round-trips exactly; a checkpoint with a
// NaN/Inf, a negative second moment, a transposed/renamed tensor, a changed
// tensor, missing hashes or out-of-range position metadata is refused on load
// with one line naming the file and the tensor or field; a non-finite state is
// never saved (the previous file stays byte for byte); saving streams the state through one
// tensor's buffer and loading reads it back the same way (the process's peak grows by far less
// than one of the three buffers either way).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ckpt_edit.h"
#include "config/config.h"
#include "model/model.h"
#include "train/checkpoint.h"

static Model tiny_model(uint64_t seed) {
    DcalConfig c;
    char p[1200];
    config_defaults(&c);
    snprintf(p, sizeof p, "%s/configs/fgvc/tiny.yaml", src_dir());
    ck_assert(config_load(&c, p) && config_finalize(&c));
    Model m;
    ck_assert(model_build(&m, &c.model, &backend_cpu));
    model_init_weights(&m, seed);
    return m;
}

// AdamW-like state: m any sign, v >= 0 (CPU backend: plain host memory).
static void fill_adam(const Model *m, float *am, float *av) {
    for (size_t i = 0; i < m->n_params; i++) {
        am[i] = (float)((long)(i % 7) - 3) * 1e-3f;
        av[i] = (float)(i % 5) * 1e-6f;
    }
}

static char dir[1100];
static const char *tpath(const char *name) {
    static char p[4][1200];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static const TrainPos POS = {.step = 12, .micro_step = 48, .epoch = 1, .batch = 8, .seed = 7};

static void write_good(const char *path) {
    Model m = tiny_model(1);
    float *am = backend_cpu.alloc(m.n_params * 4), *av = backend_cpu.alloc(m.n_params * 4);
    fill_adam(&m, am, av);
    ck_assert(checkpoint_save(path, &m, am, av, &POS));
    backend_cpu.free(am); backend_cpu.free(av);
    model_free(&m);
}

// Peak resident memory (VmHWM) in bytes, and its reset (Linux: clear_refs 5).
static size_t peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = strtoull(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb * 1024;
}
static int reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    int ok = f && fputs("5", f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    return ok;
}

// Saving used to copy the three buffers to the host, again into the writer and again into an
// image of the file: 9 buffers' worth on top of the run (+3.2 GB for ViT-B); loading held two
// host copies and the whole mapped file. Now each holds about one tensor's.
START_TEST(save_streams) {
    snprintf(dir, sizeof dir, "%s", test_tmpdir("ckpt_mem"));
    DcalConfig c;
    char p[1200];
    config_defaults(&c);
    snprintf(p, sizeof p, "%s/configs/fgvc/tiny.yaml", src_dir());
    ck_assert(config_load(&c, p));
    const char *sets[] = {"model.dim=256", "model.heads=4", "model.mlp_dim=1024", "model.depth=4",
                          "model.pwca_blocks=4"};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) ck_assert(config_set(&c, sets[i]));
    ck_assert(config_finalize(&c));
    Model m;
    ck_assert(model_build(&m, &c.model, &backend_cpu));
    model_init_weights(&m, 3);
    size_t bytes = m.n_params * 4;
    float *am = backend_cpu.alloc(bytes), *av = backend_cpu.alloc(bytes);
    fill_adam(&m, am, av);
    ck_assert_msg(reset_peak(), "cannot reset the peak RSS (/proc/self/clear_refs)");
    size_t before = peak_rss();
    ck_assert(checkpoint_save(tpath("big.safetensors"), &m, am, av, &POS));
    size_t grew = peak_rss() - before;
    printf("save_streams: state 3 x %.1f MiB; the peak grew by %.1f MiB while saving\n", bytes / 1048576.0,
           grew / 1048576.0);
    ck_assert_uint_gt(bytes, 12u << 20);   // large enough that a whole-buffer copy shows
    ck_assert_uint_lt(grew, bytes / 2);
    float *bm = backend_cpu.alloc(bytes), *bv = backend_cpu.alloc(bytes);
    Model r;   // the file loads back exactly, streamed too: not a host copy, nor the mapped file, held whole
    ck_assert(model_build(&r, &c.model, &backend_cpu));
    memset(r.params, 0, bytes), memset(bm, 0, bytes), memset(bv, 0, bytes);   // resident before the peak's reset
    TrainPos got;
    ck_assert(reset_peak());
    before = peak_rss();
    ck_assert(checkpoint_load(tpath("big.safetensors"), &r, bm, bv, &got));
    grew = peak_rss() - before;
    printf("save_streams: the peak grew by %.1f MiB while loading\n", grew / 1048576.0);
    ck_assert_uint_lt(grew, bytes / 2);
    ck_assert(!memcmp(r.params, m.params, bytes) && !memcmp(bm, am, bytes) && !memcmp(bv, av, bytes));
    backend_cpu.free(am), backend_cpu.free(av), backend_cpu.free(bm), backend_cpu.free(bv);
    model_free(&m), model_free(&r);
}
END_TEST

START_TEST(round_trip) {
    snprintf(dir, sizeof dir, "%s", test_tmpdir("ckpt"));
    Model a = tiny_model(1), b = tiny_model(2);
    float *am = backend_cpu.alloc(a.n_params * 4), *av = backend_cpu.alloc(a.n_params * 4);
    float *bm = backend_cpu.alloc(a.n_params * 4), *bv = backend_cpu.alloc(a.n_params * 4);
    fill_adam(&a, am, av);
    // A seed above 2^63 survives (it was parsed as signed and clamped before).
    TrainPos pos = POS, got;
    pos.seed = ((uint64_t)1 << 63) + 5;
    ck_assert(checkpoint_save(tpath("ok.safetensors"), &a, am, av, &pos));
    ck_assert(checkpoint_load(tpath("ok.safetensors"), &b, bm, bv, &got));
    ck_assert(!memcmp(a.params, b.params, a.n_params * 4) && !memcmp(am, bm, a.n_params * 4) &&
              !memcmp(av, bv, a.n_params * 4));
    ck_assert(got.step == 12 && got.micro_step == 48 && got.epoch == 1 && got.batch == 8 && got.seed == pos.seed);
    // Weights only (dcal eval) needs no AdamW buffers.
    ck_assert(checkpoint_load(tpath("ok.safetensors"), &b, NULL, NULL, NULL));
    // The hashes as recorded, for the manifest.
    char ph[65], ah[65], want[65];
    int64_t step = -1;
    ck_assert(checkpoint_hashes(tpath("ok.safetensors"), ph, ah, &step));
    checkpoint_params_sha256(&a, want);
    ck_assert_str_eq(ph, want);
    ck_assert_int_eq(strlen(ah), 64);
    ck_assert(step == 12);
    backend_cpu.free(am); backend_cpu.free(av); backend_cpu.free(bm); backend_cpu.free(bv);
    model_free(&a); model_free(&b);
}
END_TEST

// A NaN or Inf anywhere in the state: not saved, and the last good file is kept.
START_TEST(save_refuses_non_finite) {
    snprintf(dir, sizeof dir, "%s", test_tmpdir("ckpt"));
    const char *p = tpath("keep.safetensors");
    write_good(p);
    size_t n0, n1;
    char *before = read_file(p, &n0);
    Model m = tiny_model(3);
    float *am = backend_cpu.alloc(m.n_params * 4), *av = backend_cpu.alloc(m.n_params * 4);
    fill_adam(&m, am, av);
    const ParamTensor *t = model_find(&m, "blocks.2.attn.qkv.weight");
    av[t->offset + 17] = NAN;
    cap_begin();
    ck_assert_int_eq(checkpoint_save(p, &m, am, av, &POS), 0);
    const char *e = cap_end();
    ck_assert_msg(strstr(e, "keep.safetensors: not saved: tensor 'adam.v.blocks.2.attn.qkv.weight': element 17 is NaN"),
                  "%s", e);
    av[t->offset + 17] = 0;
    m.params[model_find(&m, "head.bias") ? model_find(&m, "head.bias")->offset : 0] = -INFINITY;
    cap_begin();
    ck_assert_int_eq(checkpoint_save(p, &m, am, av, &POS), 0);
    e = cap_end();
    ck_assert_msg(strstr(e, "not saved: tensor '") && strstr(e, "element 0 is -Inf"), "%s", e);
    char *after = read_file(p, &n1);
    ck_assert(n0 == n1 && !memcmp(before, after, n0));
    free(before); free(after);
    backend_cpu.free(am); backend_cpu.free(av);
    model_free(&m);
}
END_TEST

// One edit each; the load fails with exactly one line naming the file and the tensor/field.
START_TEST(load_refuses_edits) {
    snprintf(dir, sizeof dir, "%s", test_tmpdir("ckpt"));
    const char *good = tpath("good.safetensors"), *bad = tpath("bad.safetensors");
    write_good(good);
    static const struct { CkptEdit e; const char *expect; } cases[] = {
        {{.poke = "adam.v.blocks.2.attn.qkv.weight", .poke_at = 17, .poke_val = NAN},
         "tensor 'adam.v.blocks.2.attn.qkv.weight': element 17 is NaN"},
        {{.poke = "adam.m.blocks.1.mlp.fc1.weight", .poke_at = 3, .poke_val = -INFINITY},
         "tensor 'adam.m.blocks.1.mlp.fc1.weight': element 3 is -Inf"},
        {{.poke = "cls_token", .poke_at = 1, .poke_val = INFINITY}, "tensor 'cls_token': element 1 is Inf"},
        {{.poke = "adam.v.cls_token", .poke_at = 5, .poke_val = -1}, "tensor 'adam.v.cls_token': element 5 is negative (-1)"},
        {{.poke = "adam.m.cls_token", .poke_at = 0, .poke_val = 0.5f}, "AdamW moments do not match the file's adam_sha256"},
        {{.poke = "cls_token", .poke_at = 0, .poke_val = 0.5f}, "tensors do not match the file's params_sha256"},
        // Same element count, other shape: the old count-only check let these through.
        {{.transpose = "adam.m.blocks.0.attn.qkv.weight"},
         "tensor 'adam.m.blocks.0.attn.qkv.weight': shape [32,96] in file, model expects [96,32]"},
        {{.transpose = "blocks.0.attn.qkv.weight"}, "tensor 'blocks.0.attn.qkv.weight': shape [32,96] in file"},
        {{.rename_from = "adam.v.cls_token", .rename_to = "adam.v.cls_tokens"},
         "tensor 'adam.v.cls_tokens' is not part of a checkpoint of this model"},
        {{.empty = 1}, "metadata 'format' is missing"},
        {{.meta_key = "format", .meta_val = "pt"}, "metadata 'format' is 'pt'"},
        {{.drop_meta = "params_sha256"}, "metadata 'params_sha256' missing"},
        {{.drop_meta = "adam_sha256"}, "metadata 'adam_sha256' missing"},
        {{.meta_key = "params_sha256", .meta_val = "00ff"}, "metadata 'params_sha256': '00ff' is not a sha256"},
        {{.drop_meta = "batch"}, "metadata 'batch' missing"},
        {{.meta_key = "step", .meta_val = "-1"}, "metadata 'step': '-1' is not a decimal integer"},
        {{.meta_key = "step", .meta_val = "007"}, "metadata 'step': '007' is not a decimal integer"},
        {{.meta_key = "step", .meta_val = "9223372036854775807"},
         "metadata 'step': 9223372036854775807 is out of range [0, 1099511627775]"},
        {{.meta_key = "micro_step", .meta_val = "1099511627776"}, "metadata 'micro_step': 1099511627776 is out of range"},
        {{.meta_key = "epoch", .meta_val = "1000001"}, "metadata 'epoch': 1000001 is out of range [0, 1000000]"},
        {{.meta_key = "epoch", .meta_val = "4294967296"}, "metadata 'epoch': 4294967296 is out of range"},
        {{.meta_key = "batch", .meta_val = "-5"}, "metadata 'batch': '-5' is not a decimal integer"},
        {{.meta_key = "batch", .meta_val = "2147483647"}, "metadata 'batch': 2147483647 is out of range [0, 1073741824]"},
        {{.meta_key = "seed", .meta_val = "18446744073709551616"}, "metadata 'seed': '18446744073709551616' is not a"},
    };
    Model m = tiny_model(2);
    float *am = backend_cpu.alloc(m.n_params * 4), *av = backend_cpu.alloc(m.n_params * 4);
    TrainPos pos;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ckpt_edit(good, bad, &cases[i].e);
        cap_begin();
        int ok = checkpoint_load(bad, &m, am, av, &pos);
        const char *e = cap_end();
        ck_assert_msg(!ok, "case %zu (%s) loaded", i, cases[i].expect);
        ck_assert_msg(strstr(e, cases[i].expect) && strstr(e, bad), "case %zu: '%s' lacks '%s'", i, e, cases[i].expect);
        ck_assert_msg(strchr(e, '\n') == e + strlen(e) - 1, "case %zu: not one line: %s", i, e);
    }
    // The unedited rewrite still loads: the edits, not the rewriting, were refused.
    ckpt_edit(good, bad, &(CkptEdit){0});
    ck_assert(checkpoint_load(bad, &m, am, av, &pos));
    backend_cpu.free(am); backend_cpu.free(av);
    model_free(&m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, save_refuses_non_finite);
    tcase_add_test(tc, load_refuses_edits);
    tcase_add_test(tc, save_streams);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

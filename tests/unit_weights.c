// unit_weights.c: exact save/load round trip, shape errors naming the tensor,
// bicubic pos_embed resize against hand-derived PyTorch values, pretrained
// (timm-named) loading with a grid change and an ignored head.
#include <math.h>
#include <string.h>
#include <unistd.h>
#include "core/common.h"
#include "config/config.h"
#include "model/model.h"
#include "core/safetensors.h"
#include "testutil.h"
#include "model/weights.h"
#include "core/sha256.h"


static ModelConfig tiny_cfg(void) {
    DcalConfig c;
    char p[1200];
    config_defaults(&c);
    snprintf(p, sizeof p, "%s/configs/fgvc/tiny.yaml", src_dir());
    ck_assert(config_load(&c, p) && config_finalize(&c));
    return c.model;
}

static char dir[1100];
static const char *tpath(const char *name) {
    static char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static Model tiny_model(uint64_t seed) {
    Model m;
    ModelConfig mc = tiny_cfg();
    ck_assert(model_build(&m, &mc, &backend_cpu));
    model_init_weights(&m, seed);
    return m;
}

static const float *tensor(const Model *m, const char *name) {
    const ParamTensor *t = model_find(m, name);
    ck_assert_msg(t != NULL, "no tensor %s", name);
    return m->params + t->offset;
}

START_TEST(round_trip) {
    snprintf(dir, sizeof dir, "%s", test_tmpdir("weights"));
    Model a = tiny_model(1), b = tiny_model(2);
    ck_assert(memcmp(a.params, b.params, a.n_params * 4) != 0);
    StWriter *w = stw_new();
    weights_add(&a, w, "", a.params);
    ck_assert(stw_write(w, tpath("a.safetensors")));
    stw_free(w);
    SafeTensors st;
    ck_assert(st_load(&st, tpath("a.safetensors")));
    ck_assert_int_eq(st.n, a.n_tensors);
    ck_assert_int_eq(weights_load_exact(&b, &st, 0, 0), 1);
    ck_assert(memcmp(a.params, b.params, a.n_params * 4) == 0);
    st_free(&st);

    // An extra tensor ("adam.m.*" in checkpoints) is refused unless allow_extra.
    w = stw_new();
    weights_add(&a, w, "", a.params);
    weights_add(&a, w, "adam.m.", a.params);
    ck_assert(stw_write(w, tpath("b.safetensors")));
    stw_free(w);
    ck_assert(st_load(&st, tpath("b.safetensors")));
    cap_begin();
    int ok = weights_load_exact(&b, &st, 0, 0);
    const char *err = cap_end();
    ck_assert_int_eq(ok, 0);
    ck_assert_ptr_nonnull(strstr(err, "tensor 'adam.m.cls_token' is not a parameter"));
    ck_assert_int_eq(weights_load_exact(&b, &st, 1, 0), 1);
    st_free(&st);
    model_free(&a);
    model_free(&b);
}
END_TEST

// Every tensor of m, with a few renamed/reshaped/dropped for error tests.
static void write_model_except(const Model *m, const char *path, const char *drop, const char *reshape) {
    StWriter *w = stw_new();
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        if (drop && !strcmp(t->name, drop)) continue;
        int64_t sh[4];
        int nd = t->ndim;
        for (int d = 0; d < nd; d++) sh[d] = t->shape[d];
        if (reshape && !strcmp(t->name, reshape) && nd == 2) { int64_t x = sh[0]; sh[0] = sh[1]; sh[1] = x; }
        stw_add_f32(w, t->name, m->params + t->offset, nd, sh);
    }
    ck_assert(stw_write(w, path));
    stw_free(w);
}

START_TEST(shape_mismatch_names_tensor) {
    snprintf(dir, sizeof dir, "%s", test_tmpdir("weights"));
    Model m = tiny_model(1);
    // Same numel, transposed dims: must still be refused (a silent reshape scrambles rows).
    write_model_except(&m, tpath("bad.safetensors"), "head.bias", "blocks.0.attn.qkv.weight");
    SafeTensors st;
    ck_assert(st_load(&st, tpath("bad.safetensors")));
    cap_begin();
    int ok = weights_load_exact(&m, &st, 0, 0);
    const char *err = cap_end();
    ck_assert_int_eq(ok, 0);
    ck_assert_msg(strstr(err, "bad.safetensors: tensor 'blocks.0.attn.qkv.weight': shape [32,96] in file, model expects [96,32]"),
                  "got: %s", err);
    ck_assert_msg(strstr(err, "tensor 'head.bias' missing"), "both problems are listed; got: %s", err);
    st_free(&st);
    model_free(&m);
}
END_TEST

// PyTorch cubic kernel, A = -0.75, for t = 0.25 / 0.75 (derived by hand):
//   cc1(x) = ((A+2)x − (A+3))x² + 1      cc2(x) = ((Ax − 5A)x + 8A)x − 4A
//   cc2(1.75) = −0.03515625   cc1(0.75) = 0.26171875   cc1(0.25) = 0.87890625   cc2(1.25) = −0.10546875
// Upsampling 2 → 4 (scale 0.5, src = 0.5·o − 0.25, taps clamped at the border):
//   o=0: src −0.25 → floor −1, t .75, taps (0,0,0,1): w(in0) = −.03515625+.26171875+.87890625 = 1.10546875, w(in1) = −0.10546875
//   o=1: src  0.25 → floor 0, t .25, taps (0,0,1,1): w(in0) = −.10546875+.87890625 = 0.7734375, w(in1) = 0.2265625
//   o=2: src  0.75 → t .75: w(in0) = 0.2265625, w(in1) = 0.7734375;  o=3: mirror of o=0.
// So the 1-D matrix is W = [[1.10546875, −.10546875], [.7734375, .2265625], [.2265625, .7734375], [−.10546875, 1.10546875]]
// (PyTorch: F.interpolate(tensor([[[[0.,1.]]]]), size=(1,4), mode='bicubic') → [−0.1055, 0.2266, 0.7734, 1.1055]),
// and the 2-D result is W·in·Wᵀ.
START_TEST(resize_two_to_four) {
    const double W[4][2] = {{1.10546875, -0.10546875}, {0.7734375, 0.2265625}, {0.2265625, 0.7734375}, {-0.10546875, 1.10546875}};
    // Two channels: in0 = [[0,1],[2,3]], in1 = [[1,0],[0,0]] (layout [g*g, D], row = y*g + x).
    float in[4 * 2] = {0, 1, 1, 0, 2, 0, 3, 0}, out[16 * 2];
    pos_embed_resize(in, 2, out, 4, 2);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            double e0 = 0, e1 = W[y][0] * W[x][0];
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++) e0 += W[y][a] * W[x][b] * (2 * a + b);
            ck_assert_msg(fabs(out[(y * 4 + x) * 2] - e0) < 1e-6, "(%d,%d) %g vs %g", y, x, out[(y * 4 + x) * 2], e0);
            ck_assert_msg(fabs(out[(y * 4 + x) * 2 + 1] - e1) < 1e-6, "(%d,%d) %g vs %g", y, x, out[(y * 4 + x) * 2 + 1], e1);
        }
    // A few spelled out: in0 = 2y + x is linear, so out0[y][x] = 2u[y] + u[x] with u = W·[0,1].
    ck_assert(fabs(out[0] - -0.31640625) < 1e-6);                  // (0,0): 3 × −0.10546875
    ck_assert(fabs(out[(1 * 4 + 2) * 2] - 1.2265625) < 1e-6);      // (1,2): 2 × 0.2265625 + 0.7734375
    ck_assert(fabs(out[(3 * 4 + 3) * 2] - 3.31640625) < 1e-6);     // (3,3): 3 × 1.10546875
    ck_assert(fabs(out[1] - 1.2220611572265625) < 1e-6);           // 1.10546875²
    ck_assert(fabs(out[3 * 2 + 1] - -0.1165924072265625) < 1e-6);  // (0,3): 1.10546875 × −0.10546875
}
END_TEST

START_TEST(resize_properties) {
    enum { D = 3 };
    float in[8 * 8 * D], out[12 * 12 * D], id[8 * 8 * D];
    for (int i = 0; i < 8 * 8 * D; i++) in[i] = (float)sin(i * 0.37);
    pos_embed_resize(in, 8, id, 8, D);   // same grid: identity, bit for bit
    ck_assert(memcmp(in, id, sizeof in) == 0);
    // Constant grid stays constant (the weights sum to 1, also with clamped taps).
    for (int i = 0; i < 8 * 8 * D; i++) in[i] = 0.625f;
    pos_embed_resize(in, 8, out, 12, D);
    for (int i = 0; i < 12 * 12 * D; i++) ck_assert(fabsf(out[i] - 0.625f) < 1e-6f);
    float small[5 * 5 * D];
    pos_embed_resize(in, 8, small, 5, D);   // downsampling too
    for (int i = 0; i < 5 * 5 * D; i++) ck_assert(fabsf(small[i] - 0.625f) < 1e-6f);
    // Mirror symmetry: resizing a flipped grid gives the flipped result (the taps
    // and the border clamp are symmetric), for up- and downsampling.
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) {
            in[(y * 8 + x) * D + 0] = (float)sin(x + 0.3 * y);
            in[(y * 8 + x) * D + 1] = (float)sin((7 - x) + 0.3 * y);
        }
    int gs[2] = {12, 5};
    for (int k = 0; k < 2; k++) {
        int g = gs[k];
        float *o = k ? small : out;
        pos_embed_resize(in, 8, o, g, D);
        for (int y = 0; y < g; y++)
            for (int x = 0; x < g; x++)
                ck_assert(fabsf(o[(y * g + x) * D] - o[(y * g + g - 1 - x) * D + 1]) < 1e-5f);
    }
}
END_TEST

// A ramp is NOT reproduced exactly with A = −0.75 (only A = −0.5 is linear-exact),
// so the interior of an upsampled ramp is the source coordinate plus a phase error:
// with t = 0.25 the taps weigh offsets (−1,0,1,2) by (−.10546875, .87890625, .26171875, −.03515625),
// Σ w·offset = .10546875 + .26171875 − .0703125 = 0.296875 = t + 0.046875; by symmetry t = 0.75
// gives t − 0.046875. Upsampling 8 → 16 (scale 0.5) has only these two phases.
START_TEST(resize_ramp_interior) {
    enum { D = 2 };
    float in[8 * 8 * D], out[16 * 16 * D];
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) {
            in[(y * 8 + x) * D + 0] = (float)x;
            in[(y * 8 + x) * D + 1] = (float)(3 * y);
        }
    pos_embed_resize(in, 8, out, 16, D);
    int checked = 0;
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++) {
            double sx = 0.5 * x - 0.25, sy = 0.5 * y - 0.25;
            int fx = (int)floor(sx), fy = (int)floor(sy);
            double ex = sx + (sx - fx == 0.25 ? 0.046875 : -0.046875), ey = sy + (sy - fy == 0.25 ? 0.046875 : -0.046875);
            if (fx >= 1 && fx + 2 <= 7) {   // no clamped tap
                ck_assert_msg(fabs(out[(y * 16 + x) * D] - ex) < 1e-5, "(%d,%d): %g vs %g", y, x, out[(y * 16 + x) * D], ex);
                checked++;
            }
            if (fy >= 1 && fy + 2 <= 7) ck_assert(fabs(out[(y * 16 + x) * D + 1] - 3 * ey) < 1e-5);
        }
    ck_assert_int_gt(checked, 100);
}
END_TEST

static int is_backbone(const char *n) {
    return !strcmp(n, "cls_token") || !strcmp(n, "pos_embed") || !strncmp(n, "patch_embed.", 12) ||
           !strncmp(n, "blocks.", 7) || !strncmp(n, "norm.", 5);
}

// A timm-style file from model `src` (backbone only) plus a classifier head of
// another shape, a fc_norm, and optional defects.
static void write_timm(const Model *src, const char *path, const char *drop, const char *reshape, int extra_block) {
    StWriter *w = stw_new();
    for (int i = 0; i < src->n_tensors; i++) {
        const ParamTensor *t = &src->tensors[i];
        if (!is_backbone(t->name) || (drop && !strcmp(t->name, drop))) continue;
        int64_t sh[4];
        for (int d = 0; d < t->ndim; d++) sh[d] = t->shape[d];
        if (reshape && !strcmp(t->name, reshape)) sh[0] = sh[0] / 2, sh[t->ndim - 1] *= 2;
        stw_add_f32(w, t->name, src->params + t->offset, t->ndim, sh);
    }
    float junk[7 * 32] = {0};
    int64_t hw[2] = {7, 32}, hb[1] = {7}, fn[1] = {32};
    stw_add_f32(w, "head.weight", junk, 2, hw);   // 7 classes: not the model's 10, ignored anyway
    stw_add_f32(w, "head.bias", junk, 1, hb);
    stw_add_f32(w, "fc_norm.weight", junk, 1, fn);
    if (extra_block) stw_add_f32(w, "blocks.5.norm1.weight", junk, 1, fn);
    ck_assert(stw_write(w, path));
    stw_free(w);
}

START_TEST(pretrained_grid_change) {
    snprintf(dir, sizeof dir, "%s", test_tmpdir("weights"));
    ModelConfig small = tiny_cfg();
    small.img_size = 16;   // grid 2 in the file, grid 4 in the model
    Model src, m = tiny_model(5);
    ck_assert(model_build(&src, &small, &backend_cpu));
    model_init_weights(&src, 9);
    write_timm(&src, tpath("vit.safetensors"), NULL, NULL, 0);
    float head_before[10 * 32], lw_before[3];
    memcpy(head_before, tensor(&m, "head.weight"), sizeof head_before);
    memcpy(lw_before, tensor(&m, "loss_w"), sizeof lw_before);
    cap_begin();
    int ok = weights_load_pretrained(&m, tpath("vit.safetensors"));
    const char *err = cap_end();
    ck_assert_msg(ok, "%s", err);
    ck_assert_msg(strstr(err, "dcal: pretrained: ignored 3 tensors: head.weight, head.bias, fc_norm.weight"), "%s", err);
    // Backbone copied exactly.
    const char *same[] = {"cls_token", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.2.mlp.fc2.bias", "norm.weight"};
    for (int i = 0; i < 5; i++) {
        const ParamTensor *t = model_find(&m, same[i]);
        ck_assert_msg(memcmp(tensor(&m, same[i]), tensor(&src, same[i]), t->numel * 4) == 0, "%s", same[i]);
    }
    // pos_embed: CLS row kept apart, the 2x2 grid resized to 4x4.
    int D = 32;
    const float *pe = tensor(&m, "pos_embed"), *pe_src = tensor(&src, "pos_embed");
    ck_assert(memcmp(pe, pe_src, D * 4) == 0);
    float want[16 * 32];
    pos_embed_resize(pe_src + D, 2, want, 4, D);
    ck_assert(memcmp(pe + D, want, sizeof want) == 0);
    // Heads and loss weights keep their init; GLCA = SA block L−M (0-based) after loading.
    ck_assert(memcmp(tensor(&m, "head.weight"), head_before, sizeof head_before) == 0);
    ck_assert(memcmp(tensor(&m, "loss_w"), lw_before, sizeof lw_before) == 0);
    // (a block's 12 tensors are contiguous; offsets differ between m and src, whose pos_embed is smaller)
    const ParamTensor *g0 = model_find(&m, "glca.0.norm1.weight"), *g1 = model_find(&m, "glca.0.mlp.fc2.bias");
    const ParamTensor *s2 = model_find(&src, "blocks.2.norm1.weight"), *s3 = model_find(&src, "blocks.2.mlp.fc2.bias");
    size_t n = g1->offset + g1->numel - g0->offset;
    ck_assert_uint_eq(n, s3->offset + s3->numel - s2->offset);
    ck_assert(memcmp(m.params + g0->offset, src.params + s2->offset, n * 4) == 0);
    model_free(&src);
    model_free(&m);
}
END_TEST

// DeiT-distilled files: dist_token ignored, its pos_embed row (index 1) dropped.
START_TEST(pretrained_distilled) {
    snprintf(dir, sizeof dir, "%s", test_tmpdir("weights"));
    Model src = tiny_model(3), m = tiny_model(4);
    enum { D = 32, G = 4 };
    StWriter *w = stw_new();
    for (int i = 0; i < src.n_tensors; i++) {
        const ParamTensor *t = &src.tensors[i];
        if (!is_backbone(t->name) || !strcmp(t->name, "pos_embed")) continue;
        int64_t sh[4];
        for (int d = 0; d < t->ndim; d++) sh[d] = t->shape[d];
        stw_add_f32(w, t->name, src.params + t->offset, t->ndim, sh);
    }
    float pe[(2 + G * G) * D], dist[D];
    const float *spe = tensor(&src, "pos_embed");
    memcpy(pe, spe, D * 4);                                    // CLS
    for (int d = 0; d < D; d++) pe[D + d] = dist[d] = 99.0f;   // distillation position
    memcpy(pe + 2 * D, spe + D, G * G * D * 4);                // grid
    int64_t psh[3] = {1, 2 + G * G, D}, dsh[3] = {1, 1, D};
    stw_add_f32(w, "pos_embed", pe, 3, psh);
    stw_add_f32(w, "dist_token", dist, 3, dsh);
    stw_add_f32(w, "head_dist.bias", dist, 1, dsh + 2);
    ck_assert(stw_write(w, tpath("deit.safetensors")));
    stw_free(w);
    cap_begin();
    int ok = weights_load_pretrained(&m, tpath("deit.safetensors"));
    const char *err = cap_end();
    ck_assert_msg(ok, "%s", err);
    ck_assert_msg(strstr(err, "ignored 2 tensors: dist_token, head_dist.bias"), "%s", err);
    ck_assert(memcmp(tensor(&m, "pos_embed"), spe, (1 + G * G) * D * 4) == 0);
    model_free(&src);
    model_free(&m);
}
END_TEST

START_TEST(pretrained_errors_listed) {
    snprintf(dir, sizeof dir, "%s", test_tmpdir("weights"));
    Model src = tiny_model(3), m = tiny_model(4);
    write_timm(&src, tpath("bad.safetensors"), "norm.bias", "blocks.1.mlp.fc1.weight", 1);
    float before[64];
    memcpy(before, tensor(&m, "blocks.0.attn.qkv.weight"), sizeof before);
    cap_begin();
    int ok = weights_load_pretrained(&m, tpath("bad.safetensors"));
    const char *err = cap_end();
    ck_assert_int_eq(ok, 0);
    ck_assert_msg(strstr(err, "tensor 'norm.bias' missing"), "%s", err);
    ck_assert_msg(strstr(err, "tensor 'blocks.1.mlp.fc1.weight': shape [32,64] in file, model expects [64,32]"), "%s", err);
    ck_assert_msg(strstr(err, "tensor 'blocks.5.norm1.weight': block 5 beyond the model's depth 3"), "%s", err);
    ck_assert_msg(!strstr(err, "head.weight'"), "a wrong-shaped head is ignored, not an error: %s", err);
    // Nothing was loaded on failure.
    ck_assert(memcmp(tensor(&m, "blocks.0.attn.qkv.weight"), before, sizeof before) == 0);
    // A bad pos_embed (no CLS position) is named too.
    StWriter *w = stw_new();
    float z[16 * 32] = {0};
    int64_t sh[3] = {1, 16, 32};
    stw_add_f32(w, "pos_embed", z, 3, sh);
    ck_assert(stw_write(w, tpath("pe.safetensors")));
    stw_free(w);
    cap_begin();
    ok = weights_load_pretrained(&m, tpath("pe.safetensors"));
    err = cap_end();
    ck_assert_int_eq(ok, 0);
    ck_assert_msg(strstr(err, "tensor 'pos_embed': shape [1,16,32] in file"), "%s", err);
    ck_assert_msg(strstr(err, "tensor 'cls_token' missing"), "%s", err);
    model_free(&src);
    model_free(&m);
}
END_TEST

// --init FILE: a params_sha256 in the file's metadata must match its tensors (a
// file without the key, like timm weights or a dump, loads). weights_tensor_finite
// (what checkpoints use, tensor by tensor) names the tensor and element of a NaN.
START_TEST(init_hash_and_finite) {
    snprintf(dir, sizeof dir, "%s", test_tmpdir("weights"));
    Model a = tiny_model(1), b = tiny_model(2);
    char ha[65], hb[65];
    sha256_hex(a.params, a.n_params * 4, ha);
    sha256_hex(b.params, b.n_params * 4, hb);
    static const struct { int which; const char *expect; } cases[] = {{0, NULL}, {1, NULL}, {2, "do not match the file's params_sha256"}};
    for (int i = 0; i < 3; i++) {
        StWriter *w = stw_new();
        weights_add(&a, w, "", a.params);
        if (cases[i].which) stw_meta(w, "params_sha256", cases[i].which == 1 ? ha : hb);
        ck_assert(stw_write(w, tpath("init.safetensors")));
        stw_free(w);
        SafeTensors st;
        ck_assert(st_load(&st, tpath("init.safetensors")));
        Model c = tiny_model(3);
        cap_begin();
        int ok = weights_load_exact(&c, &st, 1, 0);
        const char *e = cap_end();
        ck_assert_msg(ok == !cases[i].expect, "case %d: %s", i, e);
        if (cases[i].expect) ck_assert_msg(strstr(e, cases[i].expect) && strstr(e, "init.safetensors"), "%s", e);
        else ck_assert(!memcmp(a.params, c.params, a.n_params * 4));
        st_free(&st);
        model_free(&c);
    }
    const ParamTensor *t = model_find(&a, "blocks.2.attn.qkv.weight");
    a.params[t->offset + 17] = NAN;
    cap_begin();
    ck_assert_int_eq(weights_tensor_finite(t, a.params + t->offset, "w.safetensors", "adam.m."), 0);
    const char *e = cap_end();
    ck_assert_msg(!strcmp(e, "dcal: w.safetensors: tensor 'adam.m.blocks.2.attn.qkv.weight': element 17 is NaN\n"), "%s", e);
    a.params[t->offset + 17] = 1;
    ck_assert_int_eq(weights_tensor_finite(t, a.params + t->offset, "w", ""), 1);
    model_free(&a);
    model_free(&b);
}
END_TEST

int main(void) {
    Suite *s = suite_create("weights");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, shape_mismatch_names_tensor);
    tcase_add_test(tc, resize_two_to_four);
    tcase_add_test(tc, resize_properties);
    tcase_add_test(tc, resize_ramp_interior);
    tcase_add_test(tc, pretrained_grid_change);
    tcase_add_test(tc, pretrained_distilled);
    tcase_add_test(tc, pretrained_errors_listed);
    tcase_add_test(tc, init_hash_and_finite);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

// explain.c: `dcal explain --checkpoint C --image I.jpg [--out DIR]` — what
// DCAL looked at (MODEL.md §2): the attention rollout's CLS row over the image
// as a heat-map, the top-R patches GLCA selected (the rest dimmed, the chosen
// outlined), and the SA / GLCA / SA+GLCA predictions with class names beside
// them as JSON. PNGs via stb_image_write: overlay_<image>_rollout.png and
// overlay_<image>_topr.png, the names `dcal report` embeds from a run directory.
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "cmd/cmd.h"
#include "cmd/infer.h"
#include "core/json.h"
#include "stb_image_write.h"   // the implementation is compiled in datasets/stb_impl.c

#define MIN_SIDE 256   // small test inputs (32-64 px) are scaled up to stay visible

typedef struct {
    int S, g, p, zoom;          // model input side, patch grid side, patch side, output scale
    unsigned char *rgb;         // [S*S*3] the centre crop the model saw, de-normalised
} Canvas;

// The normalised input back to 8-bit RGB (HWC): x·std + mean.
static void canvas_init(Canvas *c, const Infer *in, const float *img) {
    int S = in->cfg.model.img_size;
    c->S = S;
    c->p = in->cfg.model.patch;
    c->g = S / c->p;
    c->zoom = S < MIN_SIDE ? (MIN_SIDE + S - 1) / S : 1;
    c->rgb = xmalloc((size_t)S * S * 3);
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < S * S; i++) {
            float v = (img[(size_t)ch * S * S + i] * in->cfg.data.std[ch] + in->cfg.data.mean[ch]) * 255.0f;
            c->rgb[(size_t)i * 3 + ch] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : lrintf(v));
        }
}

// A perceptual blue→cyan→yellow→red ramp for t in [0, 1].
static void heat_colour(float t, float out[3]) {
    static const float stops[5][3] = {{0.05f, 0.05f, 0.45f}, {0.0f, 0.55f, 0.9f}, {0.2f, 0.85f, 0.4f},
                                      {0.98f, 0.85f, 0.1f}, {0.9f, 0.1f, 0.05f}};
    float x = t * 4;
    int k = x >= 4 ? 3 : (int)x;
    float f = x - (float)k;
    for (int i = 0; i < 3; i++) out[i] = stops[k][i] * (1 - f) + stops[k + 1][i] * f;
}

// The patch-grid rollout (min..max → 0..1) sampled bilinearly at pixel (y, x).
static float rollout_at(const Canvas *c, const float *r01, int y, int x) {
    float gy = ((float)y + 0.5f) / (float)c->p - 0.5f, gx = ((float)x + 0.5f) / (float)c->p - 0.5f;
    gy = gy < 0 ? 0 : gy > (float)(c->g - 1) ? (float)(c->g - 1) : gy;
    gx = gx < 0 ? 0 : gx > (float)(c->g - 1) ? (float)(c->g - 1) : gx;
    int y0 = (int)gy, x0 = (int)gx, y1 = y0 + 1 < c->g ? y0 + 1 : y0, x1 = x0 + 1 < c->g ? x0 + 1 : x0;
    float fy = gy - (float)y0, fx = gx - (float)x0;
    return (1 - fy) * ((1 - fx) * r01[y0 * c->g + x0] + fx * r01[y0 * c->g + x1]) +
           fy * ((1 - fx) * r01[y1 * c->g + x0] + fx * r01[y1 * c->g + x1]);
}

// Heat-map over the image: 55% image, 45% colour of the rollout weight.
static unsigned char *draw_rollout(const Canvas *c, const float *r) {
    int G = c->g * c->g, S = c->S;
    float lo = r[1], hi = r[1], *r01 = xmalloc((size_t)G * sizeof(float));
    for (int i = 1; i <= G; i++) { lo = fminf(lo, r[i]); hi = fmaxf(hi, r[i]); }
    for (int i = 0; i < G; i++) r01[i] = hi > lo ? (r[i + 1] - lo) / (hi - lo) : 0;   // r[0] is CLS
    unsigned char *out = xmalloc((size_t)S * S * 3);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            float col[3];
            heat_colour(rollout_at(c, r01, y, x), col);
            for (int ch = 0; ch < 3; ch++) {
                size_t i = ((size_t)y * S + x) * 3 + ch;
                out[i] = (unsigned char)lrintf(0.55f * c->rgb[i] + 0.45f * 255.0f * col[ch]);
            }
        }
    free(r01);
    return out;
}

// Selected patches keep their pixels, outlined in yellow where a neighbour is not
// selected; the rest are dimmed to 30%. Drawn at the zoomed size (Z×Z), so the
// outline stays a few output pixels wide whatever the zoom.
static unsigned char *draw_topr(const Canvas *c, const int *sel, int K) {
    int S = c->S, g = c->g, Z = S * c->zoom, p = c->p * c->zoom, w = Z >= 384 ? 3 : 2;
    unsigned char *on = xcalloc((size_t)g * g, 1), *out = xmalloc((size_t)Z * Z * 3);
    for (int k = 1; k <= K; k++) on[sel[k] - 1] = 1;   // sel[0] is CLS; tokens 1.. are patches
    for (int y = 0; y < Z; y++)
        for (int x = 0; x < Z; x++) {
            int py = y / p < g ? y / p : g - 1, px = x / p < g ? x / p : g - 1, s = on[py * g + px];
            int iy = y - py * p, ix = x - px * p, edge = 0;
            if (s) edge = (iy < w && (py == 0 || !on[(py - 1) * g + px])) || (iy >= p - w && (py == g - 1 || !on[(py + 1) * g + px])) ||
                          (ix < w && (px == 0 || !on[py * g + px - 1])) || (ix >= p - w && (px == g - 1 || !on[py * g + px + 1]));
            static const unsigned char yellow[3] = {255, 221, 0};
            const unsigned char *src = c->rgb + ((size_t)(y / c->zoom) * S + x / c->zoom) * 3;
            for (int ch = 0; ch < 3; ch++) {
                size_t i = ((size_t)y * Z + x) * 3 + ch;
                out[i] = edge ? yellow[ch] : s ? src[ch] : (unsigned char)(src[ch] * 3 / 10);
            }
        }
    free(on);
    return out;
}

// Nearest-neighbour zoom, then PNG written beside and renamed (a reader never sees half a file).
static int write_png(const char *path, const unsigned char *px, int S, int zoom) {
    int Z = S * zoom;
    unsigned char *big = xmalloc((size_t)Z * Z * 3);
    for (int y = 0; y < Z; y++)
        for (int x = 0; x < Z; x++) memcpy(big + ((size_t)y * Z + x) * 3, px + ((size_t)(y / zoom) * S + x / zoom) * 3, 3);
    char tmp[DCAL_PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int ok = stbi_write_png(tmp, Z, Z, 3, big, Z * 3) && rename(tmp, path) == 0;
    free(big);
    if (!ok) { dcal_err("%s: cannot write PNG (%s)", path, strerror(errno)); remove(tmp); }
    return ok;
}

// overlay_<stem>_: the image's file name without directory or extension, made filename-safe.
static void out_prefix(char *buf, size_t cap, const char *dir, const char *image) {
    const char *base = strrchr(image, '/') ? strrchr(image, '/') + 1 : image;
    char stem[128];
    snprintf(stem, sizeof stem, "%s", base);
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem) *dot = 0;
    for (char *s = stem; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '-' || *s == '_' || *s == '.')) *s = '_';
    snprintf(buf, cap, "%s/overlay_%s", dir, stem);
}

// The top 5 of one branch as [{"class", "name", "prob"}].
static void json_top(JsonW *w, const Infer *in, const float *sa, const float *gl, Branch br) {
    double *p = xmalloc((size_t)in->C * sizeof(double));
    int idx[5], k = in->C < 5 ? in->C : 5;
    infer_scores(sa, gl, in->C, br, p);
    infer_topk(p, in->C, k, idx);
    jw_key(w, infer_branch_name(br));
    jw_begin_array(w);
    for (int j = 0; j < k; j++) {
        jw_begin_object(w);
        jw_kv_int(w, "class", idx[j]);
        jw_kv_string(w, "name", in->names[idx[j]]);
        jw_kv_double(w, "prob", "%.6f", p[idx[j]]);
        jw_end_object(w);
    }
    jw_end_array(w);
    free(p);
}

// Sidecar: the predictions of each branch, and which patches GLCA took (token t ≥ 1 is
// patch t−1 in raster order: row (t−1) / grid, column (t−1) % grid).
static int write_json(const char *path, const Infer *in, const char *image, const float *sa, const float *gl,
                      const int *sel, int K, const float *r) {
    JsonW w;
    jw_init(&w, true, 0);
    jw_begin_object(&w);
    jw_kv_string(&w, "image", image);
    jw_kv_int(&w, "img_size", in->cfg.model.img_size);
    jw_kv_int(&w, "grid", in->cfg.model.img_size / in->cfg.model.patch);
    jw_kv_double(&w, "top_r", "%g", in->cfg.model.top_r);
    jw_key(&w, "selected_tokens");
    jw_begin_array(&w);
    for (int k = 1; k <= K; k++) jw_int(&w, sel[k]);
    jw_end_array(&w);
    jw_key(&w, "rollout");   // the CLS row over the patches (token 1.. in raster order), what selection ranked
    jw_begin_array(&w);
    for (int t = 1; t < in->m.N; t++) jw_double(&w, "%.6g", r[t]);
    jw_end_array(&w);
    jw_key(&w, "predictions");
    jw_begin_object(&w);
    for (int b = 0; b < 3; b++) json_top(&w, in, sa, gl, (Branch)b);
    jw_end_object(&w);
    jw_end_object(&w);
    jw_append(&w, "\n");
    FILE *f = fopen(path, "w");
    int ok = f && jw_fwrite(&w, f);
    if (f && fclose(f) != 0) ok = 0;
    jw_free(&w);
    if (!ok) dcal_err("%s: cannot write (%s)", path, strerror(errno));
    return ok;
}

// Forward one image, then the two PNGs and the JSON. 0 after an error line.
static int explain_image(Infer *in, const char *image, const char *dir) {
    int S = in->cfg.model.img_size, N = in->m.N, K = in->m.K, C = in->C;
    float *img = xmalloc(sizeof(float) * 3 * S * S), *r = xmalloc(sizeof(float) * N);
    float *sa = xmalloc(sizeof(float) * C), *gl = xmalloc(sizeof(float) * C);
    int *sel = xmalloc(sizeof(int) * (1 + K)), ok = infer_load_image(in, image, img);
    Canvas cv = {0};
    char pre[DCAL_PATH_MAX], path[3][DCAL_PATH_MAX + 32];
    if (ok) {
        model_forward_infer(&in->m, img, 1, sa, gl, sel);
        model_rollout_cls(&in->m, 1, r);
        canvas_init(&cv, in, img);
        out_prefix(pre, sizeof pre, dir, image);
        snprintf(path[0], sizeof path[0], "%s_rollout.png", pre);
        snprintf(path[1], sizeof path[1], "%s_topr.png", pre);
        snprintf(path[2], sizeof path[2], "%s.json", pre);
        unsigned char *hm = draw_rollout(&cv, r), *tr = draw_topr(&cv, sel, K);
        ok = write_png(path[0], hm, S, cv.zoom) && write_png(path[1], tr, S * cv.zoom, 1) &&
             write_json(path[2], in, image, sa, gl, sel, K, r);
        free(hm); free(tr); free(cv.rgb);
    }
    if (ok) {
        double *p = xmalloc((size_t)C * sizeof(double));
        int top[3];
        for (int b = 0; b < 3; b++) { infer_scores(sa, gl, C, (Branch)b, p); infer_topk(p, C, 1, &top[b]); }
        printf("%s: SA %s | GLCA %s | SA+GLCA %s\n", image, in->names[top[0]], in->names[top[1]], in->names[top[2]]);
        printf("wrote %s, %s (top-R: %d of %d patches), %s\n", path[0], path[1], K, N - 1, path[2]);
        free(p);
    }
    free(img); free(r); free(sa); free(gl); free(sel);
    return ok;
}

static int make_dir(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)) return 1;
    if (mkdir(dir, 0755) == 0) return 1;
    dcal_err("%s: cannot create the output directory (%s)", dir, strerror(errno));
    return 0;
}

int cmd_explain(int argc, char **argv) {
    InferSource src = {0};
    const char *image = NULL, *dir = ".";
    const CliOpt extra[] = {
        {"--checkpoint", "FILE", "a run's checkpoint (its config.yaml beside it gives model and preprocessing)",
         &src.checkpoint, NULL, NULL},
        {"--run-config", "FILE", "the config the checkpoint was trained with (default: config.yaml beside it)",
         &src.run_config, NULL, NULL},
        {"--image", "FILE", "the JPEG or PNG to explain", &image, NULL, NULL},
        {"--out", "DIR", "where the PNGs and JSON go (default: .; a run directory for `dcal report`)", &dir, NULL, NULL},
        {"--classes", "FILE", "class names, one a line or CUB's 'id name' (default: the run's dataset)", &src.classes,
         NULL, NULL},
        {0},
    };
    CliArgs cli;
    int rc = cli_parse(argc, argv,
                       "Show what DCAL attends to in one image (MODEL.md §2): overlay_<image>_rollout.png (attention\n"
                       "rollout of the SA layers before GLCA, as a heat-map), overlay_<image>_topr.png (the top-R patches\n"
                       "GLCA's queries came from; the rest dimmed) and overlay_<image>.json (SA, GLCA and SA+GLCA top-5).",
                       extra, &cli);
    if (rc == CLI_HELP) return DCAL_EXIT_OK;
    if (rc != CLI_OK) return rc;
    if (!src.checkpoint || !image) {
        dcal_err("explain: --checkpoint FILE and --image FILE are required");
        return DCAL_EXIT_USAGE;
    }
    Infer in;
    if (!infer_open(&in, &cli, &src, 1)) return DCAL_EXIT_FAIL;
    if (!in.have_glca) {
        dcal_err("explain: %s: an SA-only model (model.glca_blocks 0) has no rollout selection to show", src.checkpoint);
        infer_close(&in);
        return DCAL_EXIT_FAIL;
    }
    rc = make_dir(dir) && explain_image(&in, image, dir) ? DCAL_EXIT_OK : DCAL_EXIT_FAIL;
    infer_close(&in);
    return rc;
}

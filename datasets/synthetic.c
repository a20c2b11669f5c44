// synthetic.c: a fine-grained toy set in CUB layout (MODEL.md §7).
// Every image: a muted, cluttered background (noise + random rectangles, new
// per image) with two small saturated discs as distractors, plus one mark about
// img/5 wide at a random place. The mark's shape (square, plus, X, ring) and
// colour (8-colour palette) together encode the class; the discs use the same
// palette, so colour statistics alone do not give the class away — a model has
// to look at the mark's local shape and colour.
#include <errno.h>
#include <math.h>
#include <string.h>
#include "datasets/dataset.h"
#include "core/rng.h"

#include "stb_image_write.h"   // declarations; the implementation is compiled in stb_impl.c

enum { N_SHAPES = 4, N_COLOURS = 8, SYNTH_MAX_CLASSES = N_SHAPES * N_COLOURS };
static const char *shape_name[N_SHAPES] = {"square", "plus", "x", "ring"};
static const char *colour_name[N_COLOURS] = {"red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white"};
static const unsigned char palette[N_COLOURS][3] = {
    {220, 30, 30}, {30, 200, 30}, {40, 60, 230}, {230, 220, 30},
    {220, 40, 220}, {30, 210, 220}, {240, 130, 20}, {250, 250, 250},
};

static int in_shape(int shape, int u, int v, int m) {
    float c = (m - 1) * 0.5f, du = u - c, dv = v - c, t = m / 6.0f + 0.5f;
    switch (shape) {
    case 0: return 1;                                                    // filled square
    case 1: return fabsf(du) < t || fabsf(dv) < t;                       // plus
    case 2: return fabsf(du - dv) < t * 1.2f || fabsf(du + dv) < t * 1.2f;  // X
    default: {                                                           // ring
        float r = sqrtf(du * du + dv * dv);
        return r <= m * 0.5f && r >= m * 0.5f - m / 4.0f;
    }
    }
}

static void put(unsigned char *px, int img, int x, int y, const unsigned char *rgb) {
    if (x < 0 || y < 0 || x >= img || y >= img) return;
    memcpy(px + ((size_t)y * img + x) * 3, rgb, 3);
}

static void draw_image(unsigned char *px, int img, int cls, Rng *r) {
    // Background: a muted base colour with per-pixel noise.
    int base = 80 + (int)rng_below(r, 90);
    int tint[3];
    for (int c = 0; c < 3; c++) tint[c] = base + (int)rng_below(r, 41) - 20;
    for (int i = 0; i < img * img; i++)
        for (int c = 0; c < 3; c++) {
            int v = tint[c] + (int)rng_below(r, 25) - 12;
            px[i * 3 + c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    // Clutter: muted rectangles of random size and grey-ish colour.
    int nrect = 6 + (int)rng_below(r, 7);
    for (int k = 0; k < nrect; k++) {
        int w = img / 10 + (int)rng_below(r, (uint32_t)(img / 4 + 1)), h = img / 10 + (int)rng_below(r, (uint32_t)(img / 4 + 1));
        int x0 = (int)rng_below(r, (uint32_t)img) - w / 2, y0 = (int)rng_below(r, (uint32_t)img) - h / 2;
        int g = 60 + (int)rng_below(r, 140);
        unsigned char col[3];
        for (int c = 0; c < 3; c++) col[c] = (unsigned char)(g + (int)rng_below(r, 31) - 15);
        for (int y = y0; y < y0 + h; y++)
            for (int x = x0; x < x0 + w; x++) put(px, img, x, y, col);
    }
    int m = img / 5 > 6 ? img / 5 : 6, margin = img / 8;
    uint32_t span = (uint32_t)(img - 2 * margin - m > 0 ? img - 2 * margin - m + 1 : 1);
    // Distractors: small discs in palette colours (never a class shape).
    for (int k = 0; k < 2; k++) {
        const unsigned char *col = palette[rng_below(r, N_COLOURS)];
        int d = m / 2, x0 = (int)rng_below(r, (uint32_t)(img - d)), y0 = (int)rng_below(r, (uint32_t)(img - d));
        float cr = (d - 1) * 0.5f;
        for (int v = 0; v < d; v++)
            for (int u = 0; u < d; u++)
                if ((u - cr) * (u - cr) + (v - cr) * (v - cr) <= (d * 0.5f) * (d * 0.5f)) put(px, img, x0 + u, y0 + v, col);
    }
    // The class mark, drawn last so nothing hides it.
    int x0 = margin + (int)rng_below(r, span), y0 = margin + (int)rng_below(r, span);
    const unsigned char *col = palette[cls / N_SHAPES % N_COLOURS];
    for (int v = 0; v < m; v++)
        for (int u = 0; u < m; u++)
            if (in_shape(cls % N_SHAPES, u, v, m)) put(px, img, x0 + u, y0 + v, col);
}

static FILE *open_w(const char *dir, const char *name) {
    char p[DCAL_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f) dcal_err("%s: cannot create (%s)", p, strerror(errno));
    return f;
}

int synthetic_write(const char *dir, int classes, int per_class, int test_per_class, int img, uint64_t seed) {
    if (classes < 2 || classes > SYNTH_MAX_CLASSES) { dcal_err("synthetic: classes must be in 2..%d (got %d)", SYNTH_MAX_CLASSES, classes); return 0; }
    if (per_class < 1 || test_per_class < 1) { dcal_err("synthetic: per-class and test-per-class must be >= 1"); return 0; }
    if (img < 16 || img > 4096) { dcal_err("synthetic: img must be in 16..4096 (got %d)", img); return 0; }
    char p[DCAL_PATH_MAX + 128];
    snprintf(p, sizeof p, "%s/images", dir);
    if (mkdir_p(p) != 0) { dcal_err("%s: cannot create directory (%s)", p, strerror(errno)); return 0; }
    FILE *fc = open_w(dir, "classes.txt"), *fi = open_w(dir, "images.txt");
    FILE *fl = open_w(dir, "image_class_labels.txt"), *fs = open_w(dir, "train_test_split.txt");
    int ok = fc && fi && fl && fs;
    unsigned char *px = xmalloc((size_t)img * img * 3);
    int id = 0;
    for (int c = 0; ok && c < classes; c++) {
        char cname[64];
        snprintf(cname, sizeof cname, "%03d.%s_%s", c + 1, shape_name[c % N_SHAPES], colour_name[c / N_SHAPES]);
        fprintf(fc, "%d %s\n", c + 1, cname);
        snprintf(p, sizeof p, "%s/images/%s", dir, cname);
        if (mkdir_p(p) != 0) { dcal_err("%s: cannot create directory (%s)", p, strerror(errno)); ok = 0; break; }
        for (int k = 0; ok && k < per_class + test_per_class; k++) {
            id++;
            Rng r;
            rng_init(&r, seed, 0, (uint64_t)id, RNG_SYNTH);
            draw_image(px, img, c, &r);
            snprintf(p, sizeof p, "%s/images/%s/%s_%05d.png", dir, cname, cname + 4, id);
            if (!stbi_write_png(p, img, img, 3, px, img * 3)) { dcal_err("%s: cannot write PNG", p); ok = 0; break; }
            fprintf(fi, "%d %s/%s_%05d.png\n", id, cname, cname + 4, id);
            fprintf(fl, "%d %d\n", id, c + 1);
            fprintf(fs, "%d %d\n", id, k < per_class ? 1 : 0);
        }
    }
    free(px);
    FILE *fv[4] = {fc, fi, fl, fs};
    for (int i = 0; i < 4; i++)
        if (fv[i] && (ferror(fv[i]) | fclose(fv[i]))) {
            if (ok) dcal_err("%s: writing the index files failed (disk full?)", dir);
            ok = 0;
        }
    return ok;
}

// overlay.c: attention overlays as PNGs (overlay.h). Drawn at a zoom that makes
// small inputs (32-64 px test images) visible, with a caption strip of
// stb_easy_font text (Debian's libstb: glyphs as rectangles, no font file to
// ship or find), written through stb_image_write.
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "run/overlay.h"
#include "stb_image_write.h"   // the implementation is compiled in datasets/stb_impl.c
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-braces"
#include "stb_easy_font.h"
#pragma GCC diagnostic pop

#define MIN_SIDE 256   // small inputs are scaled up to at least this side
#define PAD 6          // caption margin, in font pixels

typedef struct {
    int S, g, p, zoom, Z;       // model input side, patch grid side, patch side, output scale, S·zoom
    unsigned char *rgb;         // [S*S*3] the input de-normalised to 8-bit RGB (HWC)
} Canvas;

static void canvas_init(Canvas *c, const Overlay *o) {
    int S = o->S;
    c->S = S;
    c->p = o->patch;
    c->g = S / c->p;
    c->zoom = S < MIN_SIDE ? (MIN_SIDE + S - 1) / S : 1;
    c->Z = S * c->zoom;
    c->rgb = xmalloc((size_t)S * S * 3);
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < S * S; i++) {
            float v = (o->img[(size_t)ch * S * S + i] * o->data->std[ch] + o->data->mean[ch]) * 255.0f;
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

// The patch-grid rollout (min..max → 0..1) sampled bilinearly at input pixel (y, x).
static float rollout_at(const Canvas *c, const float *r01, int y, int x) {
    float gy = ((float)y + 0.5f) / (float)c->p - 0.5f, gx = ((float)x + 0.5f) / (float)c->p - 0.5f;
    gy = gy < 0 ? 0 : gy > (float)(c->g - 1) ? (float)(c->g - 1) : gy;
    gx = gx < 0 ? 0 : gx > (float)(c->g - 1) ? (float)(c->g - 1) : gx;
    int y0 = (int)gy, x0 = (int)gx, y1 = y0 + 1 < c->g ? y0 + 1 : y0, x1 = x0 + 1 < c->g ? x0 + 1 : x0;
    float fy = gy - (float)y0, fx = gx - (float)x0;
    return (1 - fy) * ((1 - fx) * r01[y0 * c->g + x0] + fx * r01[y0 * c->g + x1]) +
           fy * ((1 - fx) * r01[y1 * c->g + x0] + fx * r01[y1 * c->g + x1]);
}

// Heat-map over the image: 55% image, 45% colour of the rollout weight; computed
// at the input's pixels, then zoomed by nearest neighbour into out [Z*Z*3].
static void draw_rollout(const Canvas *c, const float *r, unsigned char *out) {
    int G = c->g * c->g, S = c->S, z = c->zoom;
    float lo = r[1], hi = r[1], *r01 = xmalloc((size_t)G * sizeof(float));
    for (int i = 1; i <= G; i++) { lo = fminf(lo, r[i]); hi = fmaxf(hi, r[i]); }
    for (int i = 0; i < G; i++) r01[i] = hi > lo ? (r[i + 1] - lo) / (hi - lo) : 0;   // r[0] is CLS
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            float col[3];
            unsigned char px[3];
            heat_colour(rollout_at(c, r01, y, x), col);
            for (int ch = 0; ch < 3; ch++)
                px[ch] = (unsigned char)lrintf(0.55f * c->rgb[((size_t)y * S + x) * 3 + ch] + 0.45f * 255.0f * col[ch]);
            for (int dy = 0; dy < z; dy++)
                for (int dx = 0; dx < z; dx++) memcpy(out + ((size_t)(y * z + dy) * c->Z + x * z + dx) * 3, px, 3);
        }
    free(r01);
}

// Selected patches keep their pixels, outlined in yellow where a neighbour is not
// selected; the rest are dimmed to 30%. Drawn at the zoomed size, so the outline
// stays a few output pixels wide whatever the zoom.
static void draw_topr(const Canvas *c, const int *sel, int K, unsigned char *out) {
    int S = c->S, g = c->g, Z = c->Z, p = c->p * c->zoom, w = Z >= 384 ? 3 : 2;
    unsigned char *on = xcalloc((size_t)g * g, 1);
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
}

// Font pixels per glyph pixel: stb_easy_font's glyphs are ~6 px wide and 12 px a
// line; scaled so a line holds ~40 characters at any output size.
static int caption_scale(int Z) { return Z / 256 > 1 ? Z / 256 : 1; }

static int caption_lines(const Overlay *o) {
    int n = 0;
    while (n < OVERLAY_CAPTION_LINES && o->caption[n]) n++;
    return n;
}

// One line as printable ASCII, cut (with "...") to what fits in `width` font pixels.
static void caption_fit(const char *s, int width, char *out, size_t cap) {
    size_t n = 0;
    for (; s[n] && n + 1 < cap; n++) out[n] = isprint((unsigned char)s[n]) ? s[n] : '?';
    out[n] = 0;
    if (stb_easy_font_width(out) <= width) return;
    while (n > 3 && (memcpy(out + n - 3, "...", 4), stb_easy_font_width(out) > width)) n--;
}

// The text's rectangles (stb_easy_font quads: 4 vertices of x, y, z floats and
// 4 colour bytes) filled in black at scale k, from font point (x0, y0) on.
static void caption_draw(unsigned char *px, int W, int H, const char *text, int x0, int y0, int k) {
    enum { VB_FLOATS = 4 * 4 * 4000 };   // quads of one ≤ 255-character line, with room
    float *vb = xmalloc(VB_FLOATS * sizeof(float));
    unsigned char black[4] = {0, 0, 0, 255};
    int q = stb_easy_font_print((float)x0, (float)y0, (char *)text, black, vb, VB_FLOATS * (int)sizeof(float));
    for (int i = 0; i < q; i++) {
        const float *v0 = vb + (size_t)i * 16, *v2 = v0 + 8;   // opposite corners
        int xa = (int)lrintf(v0[0] * k), ya = (int)lrintf(v0[1] * k), xb = (int)lrintf(v2[0] * k), yb = (int)lrintf(v2[1] * k);
        for (int y = ya < 0 ? 0 : ya; y < yb && y < H; y++)
            for (int x = xa < 0 ? 0 : xa; x < xb && x < W; x++) memset(px + ((size_t)y * W + x) * 3, 0, 3);
    }
    free(vb);
}

// The image [Z*Z*3] with a white caption strip below it, written to path.
static int write_png(const char *path, const unsigned char *img, int Z, const Overlay *o) {
    int lines = caption_lines(o), k = caption_scale(Z), H = Z + (lines ? (lines * 12 + 2 * PAD) * k : 0);
    unsigned char *px = xmalloc((size_t)Z * H * 3);
    memcpy(px, img, (size_t)Z * Z * 3);
    memset(px + (size_t)Z * Z * 3, 255, (size_t)Z * (H - Z) * 3);
    for (int l = 0; l < lines; l++) {
        char text[256];
        caption_fit(o->caption[l], Z / k - 2 * PAD, text, sizeof text);
        caption_draw(px + (size_t)Z * Z * 3, Z, H - Z, text, PAD, PAD + 12 * l, k);
    }
    char tmp[DCAL_PATH_MAX + 48];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int ok = stbi_write_png(tmp, Z, H, 3, px, Z * 3) && rename(tmp, path) == 0;   // a reader never sees half a file
    free(px);
    if (!ok) { dcal_err("%s: cannot write PNG (%s)", path, strerror(errno)); remove(tmp); }
    return ok;
}

void overlay_prefix(char *buf, size_t cap, const char *dir, const char *image) {
    const char *base = strrchr(image, '/') ? strrchr(image, '/') + 1 : image;
    char stem[128];
    snprintf(stem, sizeof stem, "%s", base);
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem) *dot = 0;
    for (char *s = stem; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '-' || *s == '_' || *s == '.')) *s = '_';
    snprintf(buf, cap, "%s/overlay_%s", dir, stem);
}

int overlay_write(const char *prefix, const Overlay *o, char out[2][DCAL_PATH_MAX + 32]) {
    Canvas c;
    canvas_init(&c, o);
    unsigned char *img = xmalloc((size_t)c.Z * c.Z * 3);
    snprintf(out[0], DCAL_PATH_MAX + 32, "%s_rollout.png", prefix);
    snprintf(out[1], DCAL_PATH_MAX + 32, "%s_topr.png", prefix);
    draw_rollout(&c, o->r, img);
    int ok = write_png(out[0], img, c.Z, o);
    if (ok) {
        draw_topr(&c, o->sel, o->K, img);
        ok = write_png(out[1], img, c.Z, o);
    }
    free(img);
    free(c.rgb);
    return ok;
}

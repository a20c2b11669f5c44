// image.c: decode (stb_image) → [drop banner] → bilinear resize (aspect not
// kept) → crop → flip → normalise into float CHW (MODEL.md §5). Pure function of
// (file, cfg, train, seed, epoch, sample): crops and flips come from the
// counter-based rng, so any thread may decode any sample.
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "datasets/image_guard.h"
#include "datasets/index.h"
#include "core/rng.h"

#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#include "stb_image.h"          // declarations; the implementation is compiled in stb_impl.c
#include "stb_image_resize.h"

#define IMAGE_MAX_SIDE 8192   // larger is surely not a dataset photo; refuse before allocating

// Open path for reading only if it is a regular file. O_NONBLOCK: opening a FIFO
// (or a device) must not wait for a writer; the type is then checked on the
// descriptor itself (fstat), so nothing can swap the file between check and read.
// NULL with the reason in why[n].
static FILE *open_regular(const char *path, char *why, size_t n) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) { snprintf(why, n, "cannot open image (%s)", strerror(errno)); return NULL; }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        snprintf(why, n, "cannot stat image (%s)", strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(why, n, "is %s, not a regular file (list only JPEG or PNG image files)", ds_file_kind(sb.st_mode));
        close(fd);
        return NULL;
    }
    // Back to blocking reads: a regular file ignores the flag on Linux; other systems need not.
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    FILE *f = fdopen(fd, "rb");
    if (!f) { snprintf(why, n, "cannot open image (%s)", strerror(errno)); close(fd); }
    return f;
}

// The whole file; reading stops past IMAGE_MAX_BYTES (image_bytes_ok then refuses
// it). NULL with the reason in why[n].
static unsigned char *slurp(FILE *f, size_t *len, char *why, size_t n) {
    size_t cap = (size_t)1 << 16, got = 0, r;
    unsigned char *buf = xmalloc(cap);
    while ((r = fread(buf + got, 1, cap - got, f)) > 0 && (got += r) <= IMAGE_MAX_BYTES)
        if (got == cap) {
            unsigned char *grown = realloc(buf, cap *= 2);
            if (!grown) dcal_die("out of host memory reading an image (%zu bytes)", cap);
            buf = grown;
        }
    if (ferror(f)) { snprintf(why, n, "cannot read image (%s)", strerror(errno)); free(buf); return NULL; }
    *len = got;
    return buf;
}

// Open (regular files only), read, check the bytes (image_guard.c), decode
// (grey / RGBA → RGB), refusing absurd sizes before allocating. NULL with the reason in why[n].
static unsigned char *decode(const char *path, int *w, int *h, char *why, size_t n) {
    FILE *f = open_regular(path, why, n);
    if (!f) return NULL;
    size_t len = 0;
    unsigned char *file = slurp(f, &len, why, n), *px = NULL;
    fclose(f);
    if (!file) return NULL;
    int ch;
    if (!image_bytes_ok(file, len, why, n))
        ;
    else if (!stbi_info_from_memory(file, (int)len, w, h, &ch))
        snprintf(why, n, "cannot read image (%s; JPEG or PNG expected)", stbi_failure_reason());
    else if (*w < 1 || *h < 1 || *w > IMAGE_MAX_SIDE || *h > IMAGE_MAX_SIDE)
        snprintf(why, n, "image is %dx%d (sides must be 1..%d)", *w, *h, IMAGE_MAX_SIDE);
    else if (!(px = stbi_load_from_memory(file, (int)len, w, h, &ch, 3)))
        snprintf(why, n, "cannot decode image (%s)", stbi_failure_reason());
    free(file);
    return px;
}

int image_probe(const char *path, int banner_px, char *why, size_t n) {
    int w, h;
    unsigned char *px = decode(path, &w, &h, why, n);
    if (!px) return 0;
    stbi_image_free(px);
    if (h > banner_px) return 1;
    snprintf(why, n, "image is %d px tall, not taller than data.banner_px=%d", h, banner_px);
    return 0;
}

// Decode, drop the Aircraft banner, resize to R×R. NULL with the reason in why[n].
static unsigned char *decode_resized(const char *path, const DataConfig *cfg, int R, char *why, size_t n) {
    int w, h;
    unsigned char *px = decode(path, &w, &h, why, n);
    if (!px) return NULL;
    // Aircraft photos carry a copyright banner along the bottom: drop it first.
    int hb = h - (cfg->banner_px > 0 ? cfg->banner_px : 0);
    if (hb < 1) {
        snprintf(why, n, "image is %d px tall, not taller than data.banner_px=%d", h, cfg->banner_px);
        stbi_image_free(px);
        return NULL;
    }
    unsigned char *rs = xmalloc((size_t)R * R * 3);
    // Triangle filter = bilinear when upsampling; on downsampling it widens to
    // the scale (antialiased), like PIL's BILINEAR used by the reference code.
    int ok = stbir_resize_uint8_generic(px, w, hb, w * 3, rs, R, R, R * 3, 3, STBIR_ALPHA_CHANNEL_NONE, 0,
                                        STBIR_EDGE_CLAMP, STBIR_FILTER_TRIANGLE, STBIR_COLORSPACE_LINEAR, NULL);
    stbi_image_free(px);
    if (!ok) { snprintf(why, n, "resize to %dx%d failed", R, R); free(rs); return NULL; }
    return rs;
}

// Crop offsets and flip: data.train_crop / data.test_crop (random or the
// centre), a random crop and the flip keyed by (seed, epoch, sample), so they
// do not depend on the worker thread; test images are never flipped.
static void augment(const DataConfig *cfg, bool train, uint64_t seed, int epoch, int sample, int *ox, int *oy,
                    int *flip) {
    int R = cfg->resize, C = cfg->crop;
    *ox = *oy = (R - C) / 2;
    *flip = 0;
    if (strcmp(train ? cfg->train_crop : cfg->test_crop, "center") != 0) {
        Rng r;
        rng_init(&r, seed, (uint32_t)epoch, (uint64_t)sample, RNG_CROP);
        *ox = (int)rng_below(&r, (uint32_t)(R - C + 1));
        *oy = (int)rng_below(&r, (uint32_t)(R - C + 1));
    }
    if (train && cfg->hflip) {
        Rng r;
        rng_init(&r, seed, (uint32_t)epoch, (uint64_t)sample, RNG_FLIP);
        *flip = rng_uniform(&r) < 0.5;
    }
}

int image_load_why(const char *path, const DataConfig *cfg, bool train, uint64_t seed, int epoch, int sample,
                   float *out, char *why, size_t n) {
    int R = cfg->resize, C = cfg->crop;
    if (R < 1 || C < 1 || C > R) {
        snprintf(why, n, "data.crop=%d must be in [1, data.resize=%d]", C, R);
        return 0;
    }
    unsigned char *rs = decode_resized(path, cfg, R, why, n);
    if (!rs) return 0;
    int ox, oy, flip;
    augment(cfg, train, seed, epoch, sample, &ox, &oy, &flip);
    for (int c = 0; c < 3; c++) {   // crop, flip and normalise into [3, C, C]
        float scale = 1.0f / (255.0f * cfg->std[c]), shift = cfg->mean[c] / cfg->std[c];
        float *o = out + (size_t)c * C * C;
        for (int y = 0; y < C; y++) {
            const unsigned char *row = rs + ((size_t)(oy + y) * R + ox) * 3 + c;
            for (int x = 0; x < C; x++) {
                int sx = flip ? C - 1 - x : x;
                o[(size_t)y * C + x] = (float)row[sx * 3] * scale - shift;
            }
        }
    }
    free(rs);
    return 1;
}

int image_load(const char *path, const DataConfig *cfg, bool train, uint64_t seed, int epoch, int sample, float *out) {
    char why[320];
    if (image_load_why(path, cfg, train, seed, epoch, sample, out, why, sizeof why)) return 1;
    dcal_err("%s: %s", path, why);
    return 0;
}

// fuzz_image.c: dcal's own image path — image_load decodes the file through
// Debian's stb_image, drops the banner, resizes, crops, flips and normalises —
// in both train (random crop + flip) and test (centre crop) mode. Sizes are
// kept small (inputs up to 8 KiB, a 24-px resize and 16-px crop) so that one
// execution stays fast; the decoder still sees every header the input declares.
#include <math.h>
#include "config/config.h"
#include "datasets/dataset.h"
#include "fuzz_util.h"

#define FUZZ_MAX_INPUT 8192
#define FUZZ_RESIZE 24
#define FUZZ_CROP 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > FUZZ_MAX_INPUT) return -1;
    char path[700];
    fuzz_path(path, sizeof path, "img");
    fuzz_write(path, data, size);
    static DcalConfig c;
    config_defaults(&c);
    c.data.resize = FUZZ_RESIZE;
    c.data.crop = FUZZ_CROP;
    c.data.hflip = true;
    c.data.banner_px = 2;   // the Aircraft banner path: a 1- or 2-px tall image is refused
    static float out[3 * FUZZ_CROP * FUZZ_CROP];
    for (int train = 0; train < 2; train++) {
        if (!image_load(path, &c.data, train, 7, 1, (int)size, out)) return 0;
        for (int i = 0; i < 3 * FUZZ_CROP * FUZZ_CROP; i++)
            if (!isfinite(out[i])) abort();   // normalised pixels are always finite
    }
    return 0;
}

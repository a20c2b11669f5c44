// image_guard.c: what dcal refuses before Debian's stb_image 2.27 decodes a
// file, because that version misbehaves on it (found by tests/fuzz/fuzz_image,
// inputs in tests/fuzz/findings/; upstream stb fixed both later). stb itself is
// not patched: the checks sit in front of it.
//  - JPEG: a DHT table whose 16 code counts sum to more than 256 makes stb write
//    past its Huffman tables (a heap overflow). stbi_info reaches it too.
//  - PNG: an empty IDAT chunk makes stb add 0 to a null pointer (UB); and stb
//    grows its IDAT buffer to a chunk's stated length before reading it, so a
//    corrupt length in a 300-byte file allocates up to 4 GiB (per loader thread).
#include "datasets/image_guard.h"
#include <stdio.h>
#include <string.h>

// Byte i of b, or 0 past the end (as stb_image reads a truncated file).
static unsigned at(const unsigned char *b, size_t n, size_t i) { return i < n ? b[i] : 0; }

// Walk the JPEG's marker segments as stb does (also those between progressive
// scans) and check every DHT table's code count.
static int jpeg_tables_ok(const unsigned char *b, size_t n) {
    for (size_t i = 2; i + 1 < n;) {
        unsigned m = b[i + 1];
        if (b[i] != 0xFF || m == 0xFF || m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
            i += b[i] == 0xFF && m != 0xFF ? 2 : 1;   // entropy-coded data, fill, stuffing, RSTn
            continue;
        }
        if (m == 0xD9) return 1;                       // EOI
        size_t len = at(b, n, i + 2) << 8 | at(b, n, i + 3);
        if (len < 2) return 0;
        for (size_t p = i + 4; m == 0xC4 && p < i + 2 + len;) {   // DHT: class/id, 16 counts, symbols
            unsigned sum = 0;
            for (size_t k = 1; k <= 16; k++) sum += at(b, n, p + k);
            if (sum > 256) return 0;
            p += 17 + sum;
        }
        i += 2 + len;
    }
    return 1;
}

// Walk the PNG's chunks (length, type, data, CRC) as stb does: NULL when it may
// decode, else why not.
static const char *png_chunks_bad(const unsigned char *b, size_t n) {
    for (size_t i = 8; i + 8 <= n;) {
        size_t len = (size_t)b[i] << 24 | (size_t)b[i + 1] << 16 | (size_t)b[i + 2] << 8 | b[i + 3];
        const unsigned char *type = b + i + 4;
        if (!memcmp(type, "IDAT", 4) && len == 0) return "an empty IDAT chunk";
        if (!memcmp(type, "IEND", 4)) return NULL;
        if (!memcmp(type, "IDAT", 4) && len > n - i - 8) return "an IDAT chunk longer than the rest of the file";
        if (len > n - i - 8) return NULL;   // another chunk truncated: stb skips, then reports it as corrupt
        i += 12 + len;
    }
    return NULL;
}

int image_bytes_ok(const unsigned char *b, size_t n, char *why, size_t nwhy) {
    if (n > IMAGE_MAX_BYTES) {
        snprintf(why, nwhy, "image file is %zu bytes (at most %zu)", n, IMAGE_MAX_BYTES);
        return 0;
    }
    int jpeg = n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF;
    int png = n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8);
    if (!jpeg && !png) { snprintf(why, nwhy, "not a JPEG or PNG file (by its first bytes)"); return 0; }
    if (jpeg && !jpeg_tables_ok(b, n)) {
        snprintf(why, nwhy, "corrupt JPEG (a Huffman table with more than 256 codes; re-encode the image)");
        return 0;
    }
    const char *bad = png ? png_chunks_bad(b, n) : NULL;
    if (bad) {
        snprintf(why, nwhy, "corrupt PNG (%s; re-encode the image)", bad);
        return 0;
    }
    return 1;
}

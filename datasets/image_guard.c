// image_guard.c: what dcal refuses before Debian's stb_image 2.27 decodes a
// file, because that version misbehaves on it (found by tests/fuzz/fuzz_image,
// inputs in tests/fuzz/findings/; upstream stb fixed both later). stb itself is
// not patched: the checks sit in front of it.
//  - JPEG: a DHT table whose 16 code counts sum to more than 256 makes stb write
//    past its Huffman tables (a heap overflow). stbi_info reaches it too. And a scan whose
//    component names a Huffman table no DHT defined makes stb decode with the table's
//    uninitialised memory (what an earlier image left in the heap): symbol indices far out
//    of bounds.
//  - PNG: an empty IDAT chunk makes stb add 0 to a null pointer (UB); and stb
//    grows its IDAT buffer to a chunk's stated length before reading it, so a
//    corrupt length in a 300-byte file allocates up to 4 GiB (per loader thread).
#include "datasets/image_guard.h"
#include <stdio.h>
#include <string.h>

// Byte i of b, or 0 past the end (as stb_image reads a truncated file).
static unsigned at(const unsigned char *b, size_t n, size_t i) { return i < n ? b[i] : 0; }

// Walk the JPEG's marker segments as stb does (also those between progressive scans): NULL when
// every DHT table has at most 256 codes and every scan's components use Huffman tables defined
// before it, else why not.
static const char *jpeg_tables_bad(const unsigned char *b, size_t n) {
    unsigned defined = 0;   // bit 4·class + id: a DHT has defined that table
    for (size_t i = 2; i + 1 < n;) {
        unsigned m = b[i + 1];
        if (b[i] != 0xFF || m == 0xFF || m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
            i += b[i] == 0xFF && m != 0xFF ? 2 : 1;   // entropy-coded data, fill, stuffing, RSTn
            continue;
        }
        if (m == 0xD9) return NULL;                    // EOI
        size_t len = at(b, n, i + 2) << 8 | at(b, n, i + 3);
        if (len < 2) return "a marker segment shorter than its length field";
        for (size_t p = i + 4; m == 0xC4 && p < i + 2 + len;) {   // DHT: class/id, 16 counts, symbols
            unsigned sum = 0, tc = at(b, n, p) >> 4, th = at(b, n, p) & 15;
            for (size_t k = 1; k <= 16; k++) sum += at(b, n, p + k);
            if (sum > 256) return "a Huffman table with more than 256 codes";
            if (tc < 2 && th < 4) defined |= 1u << (4 * tc + th);
            p += 17 + sum;
        }
        if (m == 0xDA) {   // SOS: components, then Ss, Se; a DC pass (Ss 0) decodes with DC tables, Se > 0 with AC
            unsigned nc = at(b, n, i + 4), ss = at(b, n, i + 5 + 2 * nc), se = at(b, n, i + 6 + 2 * nc);
            for (unsigned c = 0; c < nc; c++) {
                unsigned sel = at(b, n, i + 6 + 2 * c), td = sel >> 4, ta = sel & 15;
                if ((ss == 0 && td < 4 && !(defined >> td & 1)) || (se > 0 && ta < 4 && !(defined >> (4 + ta) & 1)))
                    return "a scan using a Huffman table the file never defines";
            }
        }
        i += 2 + len;
    }
    return NULL;
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
    const char *bad = jpeg ? jpeg_tables_bad(b, n) : png_chunks_bad(b, n);
    if (bad) {
        snprintf(why, nwhy, "corrupt %s (%s; re-encode the image)", jpeg ? "JPEG" : "PNG", bad);
        return 0;
    }
    return 1;
}

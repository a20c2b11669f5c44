// image_guard.h: checks on an image file's bytes before stb_image sees them.
#pragma once
#include <stddef.h>

#define IMAGE_MAX_BYTES ((size_t)64 << 20)   // a 64 MiB JPEG/PNG is not a dataset photo

// 1 when b[0..n) is a JPEG or PNG (by signature) of a sane size that the
// decoder can take safely; else 0 with the reason in why[nwhy].
int image_bytes_ok(const unsigned char *b, size_t n, char *why, size_t nwhy);

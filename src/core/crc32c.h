// crc32c.h: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
// checksum of TFRecord files (src/run/tfevents.c). RFC 3720 B.4 vectors:
// 32 zero bytes -> 0x8A9136AA, "123456789" -> 0xE3069283.
#pragma once
#include <stddef.h>
#include <stdint.h>

// The CRC of data[0, n) continued from crc (0 to start; pass the previous
// result to checksum a buffer in pieces).
uint32_t crc32c(uint32_t crc, const void *data, size_t n);
// TFRecord's masked form of crc32c(0, data, n): rotated right by 15 bits plus
// a constant, so a CRC stored inside checksummed data does not checksum itself to a fixed value.
uint32_t crc32c_masked(const void *data, size_t n);

// sha256.h: SHA-256 over buffers and files (OpenSSL libcrypto), hex output.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct Sha256 Sha256;
Sha256 *sha256_new(void);
void sha256_update(Sha256 *h, const void *data, size_t n);
void sha256_final(Sha256 *h, char hex[65]);     // frees h
void sha256_hex(const void *data, size_t n, char hex[65]);
int sha256_file(const char *path, char hex[65]);  // 0 after an error line

// sha256.c: thin wrapper over OpenSSL's EVP digest API.
#include "core/sha256.h"
#include <openssl/evp.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "core/common.h"

struct Sha256 { EVP_MD_CTX *ctx; };

Sha256 *sha256_new(void) {
    Sha256 *h = xmalloc(sizeof *h);
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) dcal_die("sha256: OpenSSL init failed");
    return h;
}

void sha256_update(Sha256 *h, const void *data, size_t n) { EVP_DigestUpdate(h->ctx, data, n); }

void sha256_final(Sha256 *h, char hex[65]) {
    unsigned char md[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(h->ctx, md, &len);
    EVP_MD_CTX_free(h->ctx);
    free(h);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

void sha256_hex(const void *data, size_t n, char hex[65]) {
    Sha256 *h = sha256_new();
    sha256_update(h, data, n);
    sha256_final(h, hex);
}

int sha256_file(const char *path, char hex[65]) {
    FILE *f = fopen(path, "rb");
    if (!f) { dcal_err("%s: cannot open for hashing (%s)", path, strerror(errno)); return 0; }
    Sha256 *h = sha256_new();
    static __thread unsigned char buf[1 << 16];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0) sha256_update(h, buf, r);
    int bad = ferror(f);
    fclose(f);
    sha256_final(h, hex);
    if (bad) { dcal_err("%s: read error while hashing", path); return 0; }
    return 1;
}

// tfevents.c: the TFRecord/Event encoding of tfevents.h. Protobuf by hand:
// a field is a varint key (number << 3 | wire type) then its value: varint
// (type 0), 8 bytes little-endian (1), a varint length and bytes (2), 4 bytes (5).
#include "run/tfevents.h"
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include "core/crc32c.h"

#define TFEVENTS_PREFIX "events.out.tfevents."
#define TFEVENTS_TMP ".tfevents.tmp."

typedef struct {
    unsigned char *p;
    size_t n, cap;
    int overflow;
} PbBuf;

static void pb_byte(PbBuf *b, unsigned char c) {
    if (b->n < b->cap) b->p[b->n] = c;
    else b->overflow = 1;
    b->n++;
}
static void pb_varint(PbBuf *b, uint64_t v) {
    do {
        pb_byte(b, (unsigned char)((v & 0x7F) | (v > 0x7F ? 0x80 : 0)));
        v >>= 7;
    } while (v);
}
static void pb_le(PbBuf *b, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) pb_byte(b, (unsigned char)(v >> (8 * i)));
}
static void pb_bytes(PbBuf *b, int field, const void *data, size_t n) {
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    for (size_t i = 0; i < n; i++) pb_byte(b, ((const unsigned char *)data)[i]);
}

// Summary.Value { tag, simple_value } as bytes, into b.
static void pb_value(PbBuf *b, const TfScalar *s) {
    uint32_t bits;
    memcpy(&bits, &s->value, 4);
    pb_bytes(b, 1, s->tag, strlen(s->tag));
    pb_varint(b, 2 << 3 | 5);
    pb_le(b, bits, 4);
}

size_t tfevent_encode(unsigned char *buf, size_t cap, double wall_time, int64_t step, const char *file_version,
                      const TfScalar *v, int n) {
    PbBuf b = {buf, 0, cap, 0};
    uint64_t bits;
    memcpy(&bits, &wall_time, 8);
    pb_varint(&b, 1 << 3 | 1);
    pb_le(&b, bits, 8);
    pb_varint(&b, 2 << 3 | 0);
    pb_varint(&b, (uint64_t)step);
    if (file_version) pb_bytes(&b, 3, file_version, strlen(file_version));
    if (n > 0) {
        // Sizes first (a dry run into an empty buffer), then the bytes.
        size_t summary = 0;
        for (int i = 0; i < n; i++) {
            PbBuf dry = {NULL, 0, 0, 0};
            pb_value(&dry, &v[i]);
            PbBuf hdr = {NULL, 0, 0, 0};
            pb_varint(&hdr, dry.n);
            summary += 1 + hdr.n + dry.n;
        }
        pb_varint(&b, 5 << 3 | 2);
        pb_varint(&b, summary);
        for (int i = 0; i < n; i++) {
            PbBuf dry = {NULL, 0, 0, 0};
            pb_value(&dry, &v[i]);
            pb_varint(&b, 1 << 3 | 2);
            pb_varint(&b, dry.n);
            pb_value(&b, &v[i]);
        }
    }
    return b.overflow ? 0 : b.n;
}

int tfrecord_write(FILE *f, const void *data, size_t n) {
    unsigned char head[12], tail[4];
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)((uint64_t)n >> (8 * i));
    uint32_t c = crc32c_masked(head, 8);
    for (int i = 0; i < 4; i++) head[8 + i] = (unsigned char)(c >> (8 * i));
    c = crc32c_masked(data, n);
    for (int i = 0; i < 4; i++) tail[i] = (unsigned char)(c >> (8 * i));
    return fwrite(head, 1, 12, f) == 12 && fwrite(data, 1, n, f) == n && fwrite(tail, 1, 4, f) == 4;
}

static int write_event(TfEvents *e, double wall_time, int64_t step, const char *version, const TfScalar *v, int n) {
    unsigned char buf[4096];
    size_t len = tfevent_encode(buf, sizeof buf, wall_time, step, version, v, n);
    if (!len) { dcal_err("%s: an event with %d scalars is too large to encode", e->tmp, n); return 0; }
    return tfrecord_write(e->f, buf, len) && fflush(e->f) == 0;
}

int tfevents_open(TfEvents *e, const char *dir, double wall_time) {
    memset(e, 0, sizeof *e);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    for (char *h = host; *h; h++)
        if (*h == '/') *h = '_';
    snprintf(e->tmp, sizeof e->tmp, "%s/" TFEVENTS_TMP "%ld", dir, (long)getpid());
    snprintf(e->path, sizeof e->path, "%s/" TFEVENTS_PREFIX "%ld.%s", dir, (long)wall_time, host[0] ? host : "localhost");
    e->f = fopen(e->tmp, "wb");
    if (!e->f) { dcal_err("%s: cannot create: %s", e->tmp, strerror(errno)); return 0; }
    if (write_event(e, wall_time, 0, "brain.Event:2", NULL, 0)) return 1;
    dcal_err("%s: cannot write: %s", e->tmp, strerror(errno));
    tfevents_close(e);
    return 0;
}

int tfevents_scalars(TfEvents *e, double wall_time, int64_t step, const TfScalar *v, int n) {
    return e->f && write_event(e, wall_time, step, NULL, v, n);
}

int tfevents_publish(TfEvents *e, const char *dir) {
    if (rename(e->tmp, e->path) != 0) { dcal_err("%s: cannot rename to %s: %s", e->tmp, e->path, strerror(errno)); return 0; }
    e->tmp[0] = 0;
    const char *name = strrchr(e->path, '/') + 1;
    DIR *d = opendir(dir);
    for (struct dirent *de; d && (de = readdir(d));) {
        // Stale copies (their rows are in the new file, those past the checkpoint are gone) and
        // the temporary file of a rebuild killed midway; the run's lock keeps other writers out.
        int stale = !strncmp(de->d_name, TFEVENTS_PREFIX, strlen(TFEVENTS_PREFIX)) ||
                    !strncmp(de->d_name, TFEVENTS_TMP, strlen(TFEVENTS_TMP));
        if (!stale || !strcmp(de->d_name, name)) continue;
        char old[DCAL_PATH_MAX + 300];
        snprintf(old, sizeof old, "%s/%s", dir, de->d_name);
        unlink(old);
    }
    if (d) closedir(d);
    return 1;
}

void tfevents_close(TfEvents *e) {
    if (e->f) fclose(e->f);
    if (e->tmp[0]) unlink(e->tmp);
    e->f = NULL;
    e->tmp[0] = 0;
}

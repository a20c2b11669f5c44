// unit_tfevents.c: CRC-32C against RFC 3720 B.4's vectors, TFRecord's masked
// CRC, the hand-encoded protobuf Event against bytes written out from the
// protobuf wire format, the record framing, and which metrics row becomes
// which TensorBoard scalar (tests/e2e_tensorboard.sh reads whole files back
// with TensorBoard's own reader).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core/crc32c.h"
#include "run/metrics_views.h"
#include "run/tfevents.h"
#include "testutil.h"

START_TEST(crc32c_rfc3720_vectors) {
    unsigned char buf[32];
    memset(buf, 0, 32);
    ck_assert_uint_eq(crc32c(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xFF, 32);
    ck_assert_uint_eq(crc32c(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) buf[i] = (unsigned char)i;
    ck_assert_uint_eq(crc32c(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) buf[i] = (unsigned char)(31 - i);
    ck_assert_uint_eq(crc32c(0, buf, 32), 0x113FDB5Cu);
    ck_assert_uint_eq(crc32c(0, "123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(crc32c(0, "", 0), 0);
    // In pieces: the same as in one go.
    ck_assert_uint_eq(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}
END_TEST

START_TEST(masked_crc) {
    // ((c >> 15) | (c << 17)) + 0xA282EAD8 for c = 0xE3069283, worked by hand.
    ck_assert_uint_eq(crc32c_masked("123456789", 9), 0xC78AB0E5u);
}
END_TEST

START_TEST(event_bytes) {
    // Event{wall_time: 1.5, step: 3, summary{value{tag: "a", simple_value: 2.0}}}
    static const unsigned char want[] = {0x09, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F, 0x10, 0x03, 0x2A, 0x0A,
                                         0x0A, 0x08, 0x0A, 0x01, 'a', 0x15, 0, 0, 0, 0x40};
    unsigned char buf[64];
    TfScalar s = {"a", 2.0f};
    size_t n = tfevent_encode(buf, sizeof buf, 1.5, 3, NULL, &s, 1);
    ck_assert_uint_eq(n, sizeof want);
    ck_assert(!memcmp(buf, want, n));
    // The first record: Event{wall_time: 0, step: 0, file_version: "brain.Event:2"}
    static const unsigned char first[] = {0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x00, 0x1A, 0x0D,
                                          'b', 'r', 'a', 'i', 'n', '.', 'E', 'v', 'e', 'n', 't', ':', '2'};
    n = tfevent_encode(buf, sizeof buf, 0.0, 0, "brain.Event:2", NULL, 0);
    ck_assert_uint_eq(n, sizeof first);
    ck_assert(!memcmp(buf, first, n));
    // A step past 127 takes a two-byte varint: 300 = 0xAC 0x02.
    n = tfevent_encode(buf, sizeof buf, 0.0, 300, NULL, NULL, 0);
    ck_assert_uint_eq(n, 12);
    ck_assert(buf[9] == 0x10 && buf[10] == 0xAC && buf[11] == 0x02);
    ck_assert_uint_eq(tfevent_encode(buf, 8, 1.5, 3, NULL, &s, 1), 0);   // does not fit: 0, no overrun
}
END_TEST

static uint32_t le32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

START_TEST(record_framing) {
    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    ck_assert(tfrecord_write(f, "hello", 5));
    fclose(f);
    const unsigned char *p = (const unsigned char *)mem;
    ck_assert_uint_eq(len, 8 + 4 + 5 + 4);
    static const unsigned char five[8] = {5, 0, 0, 0, 0, 0, 0, 0};
    ck_assert(!memcmp(p, five, 8));
    ck_assert_uint_eq(le32(p + 8), crc32c_masked(five, 8));
    ck_assert(!memcmp(p + 12, "hello", 5));
    ck_assert_uint_eq(le32(p + 17), crc32c_masked("hello", 5));
    free(mem);
}
END_TEST

START_TEST(rows_to_scalars) {
    TfScalar v[16];
    TfTag tags[16];
    long long step = -1;
    double wall = 0;
    int n = views_scalars("{\"kind\":\"train\",\"step\":7,\"loss\":2.5,\"lr\":0.001,\"loss_w\":[1,2,3],"
                          "\"time\":\"2026-01-02T03:04:05.250Z\",\"wall_s\":1.5}", v, tags, 16, &step, &wall);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(v[0].tag, "train/loss");
    ck_assert(v[0].value == 2.5f);
    ck_assert_str_eq(v[1].tag, "train/lr");
    ck_assert(v[1].value == 0.001f);
    ck_assert_int_eq(step, 7);
    ck_assert_double_eq(wall, 1767323045.25);   // date -u -d 2026-01-02T03:04:05Z +%s
    n = views_scalars("{\"kind\":\"eval\",\"split\":\"val\",\"step\":9,\"acc_combined\":0.5,\"acc_sa\":0.25}", v, tags,
                      16, &step, &wall);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(v[0].tag, "val/acc_sa");
    ck_assert_str_eq(v[1].tag, "val/acc_sa_glca");
    ck_assert(v[1].value == 0.5f);
    ck_assert_int_eq(views_scalars("{\"kind\":\"checkpoint\",\"step\":9}", v, tags, 16, &step, &wall), 0);
    ck_assert_int_eq(views_scalars("not json", v, tags, 16, &step, &wall), 0);
}
END_TEST

START_TEST(stamp) {
    MetricViews mv = {0};
    char *s = views_stamp(&mv, "{\"kind\":\"train\",\"step\":1}");
    ck_assert_msg(!strncmp(s, "{\"kind\":\"train\",\"step\":1,\"time\":\"20", 34), "%s", s);
    ck_assert_msg(strstr(s, "Z\",\"wall_s\":") && s[strlen(s) - 1] == '}', "%s", s);
    free(s);
    s = views_stamp(&mv, "{}");
    ck_assert_msg(!strncmp(s, "{\"time\":", 8), "%s", s);
    free(s);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tfevents");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, crc32c_rfc3720_vectors);
    tcase_add_test(tc, masked_crc);
    tcase_add_test(tc, event_bytes);
    tcase_add_test(tc, record_framing);
    tcase_add_test(tc, rows_to_scalars);
    tcase_add_test(tc, stamp);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

// unit_steplog.c: RUN/steps.tsv — exact round trip of hex floats, the cut back
// to the checkpoint's step on resume (later steps and a torn line go, the file
// is replaced atomically), strict reading (one message naming file:line), and
// the audit's cross-check against metrics.jsonl.
#include <math.h>
#include <string.h>
#include <unistd.h>
#include "core/common.h"
#include "run/steplog.h"
#include "testutil.h"

static StepRecord rec(int64_t s) {
    // Values with all mantissa bits in use, so that any rounding would show.
    return (StepRecord){.step = s, .micro_step = 4 * s, .loss = 2.0 + 1.0 / (3.0 * s), .ce = {M_PI / s, M_E / s, 1e-30 * s},
                        .gsq = 7.0 / (s + 0.1), .lr = 1e-3 * (1.0 - 1.0 / (7.0 + s))};
}

static void write_steps(const char *dir, int n) {
    StepLogW w;
    ck_assert(steplog_open(&w, dir, -1));
    for (int s = 1; s <= n; s++) { StepRecord r = rec(s); ck_assert(steplog_append(&w, &r)); }
    steplog_close(&w);
}

static void path_of(char *p, size_t cap, const char *dir) { snprintf(p, cap, "%s/steps.tsv", dir); }

START_TEST(round_trip_exact) {
    const char *dir = test_tmpdir("steplog-rt");
    write_steps(dir, 5);
    StepRecord *r;
    int64_t n;
    ck_assert(steplog_read(dir, &r, &n));
    ck_assert_int_eq(n, 5);
    for (int s = 1; s <= 5; s++) {
        StepRecord want = rec(s);
        for (int f = 0; f < STEPLOG_FIELDS; f++) {
            double a = steplog_field(&r[s - 1], f), b = steplog_field(&want, f);
            ck_assert_msg(!memcmp(&a, &b, sizeof a), "step %d %s: %a vs %a", s, steplog_field_name(f), a, b);
        }
    }
    free(r);
}
END_TEST

// A run killed after step 5 whose checkpoint is at step 3, with a torn line: resume cuts to 3 lines.
START_TEST(resume_cuts_back) {
    const char *dir = test_tmpdir("steplog-cut");
    char p[1200], *full, *want;
    size_t len, wlen;
    write_steps(dir, 3);
    path_of(p, sizeof p, dir);
    want = read_file(p, &wlen);
    write_steps(dir, 5);
    full = read_file(p, &len);
    FILE *f = fopen(p, "a");
    fputs("6\t24\t0x1.8p+1", f);   // torn: no newline
    fclose(f);
    StepLogW w;
    ck_assert(steplog_open(&w, dir, 3));
    steplog_close(&w);
    size_t glen;
    char *got = read_file(p, &glen);
    ck_assert_uint_eq(glen, wlen);
    ck_assert(!memcmp(got, want, wlen));
    // Appending step 4 again gives the uninterrupted file's line 4.
    ck_assert(steplog_open(&w, dir, 3));
    StepRecord r4 = rec(4);
    ck_assert(steplog_append(&w, &r4));
    steplog_close(&w);
    free(got);
    got = read_file(p, &glen);
    ck_assert(glen < len && !memcmp(got, full, glen));
    free(got); free(full); free(want);
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s/steps.tsv.tmp.%ld", dir, (long)getpid());
    ck_assert_msg(access(tmp, F_OK) != 0, "temp file left behind");
}
END_TEST

// steps.tsv with its line `line` (1-based, 1 = header) replaced by `text`; the error names it.
static void expect_bad(const char *tag, int line, const char *text, const char *msg) {
    const char *dir = test_tmpdir(tag);
    char p[1200];
    write_steps(dir, 3);
    path_of(p, sizeof p, dir);
    size_t len;
    char *s = read_file(p, &len), *out = xmalloc(len + 512), *o = out;
    int l = 1;
    for (char *q = s; *q; l++) {
        char *nl = strchr(q, '\n');
        o += l == line ? sprintf(o, "%s\n", text) : sprintf(o, "%.*s\n", (int)(nl - q), q);
        q = nl + 1;
    }
    write_text(p, out);
    free(s); free(out);
    StepRecord *r;
    int64_t n;
    cap_begin();
    ck_assert(!steplog_read(dir, &r, &n));
    const char *err = cap_end();
    char where[1300];
    snprintf(where, sizeof where, "dcal: %s:%d: ", p, line);
    ck_assert_msg(strstr(err, where) && strstr(err, msg), "%s: %s", tag, err);
}

START_TEST(read_is_strict) {
    expect_bad("steplog-hdr", 1, "# something else", "not a dcal steps.tsv");
    expect_bad("steplog-dec", 3, "2\t8\t3.5\t0x1p+0\t0x1p+0\t0x1p+0\t0x1p+0\t0x1p+0", "hex float");
    expect_bad("steplog-gap", 3, "3\t8\t0x1p+0\t0x1p+0\t0x1p+0\t0x1p+0\t0x1p+0\t0x1p+0", "without gaps");
    expect_bad("steplog-few", 2, "1\t4\t0x1p+0", "8 tab-separated fields");
    expect_bad("steplog-inf", 2, "1\t4\tinf\t0x1p+0\t0x1p+0\t0x1p+0\t0x1p+0\t0x1p+0", "hex float");
    expect_bad("steplog-zero", 2, "01\t4\t0x1p+0\t0x1p+0\t0x1p+0\t0x1p+0\t0x1p+0\t0x1p+0", "plain decimal");
    expect_bad("steplog-micro", 3, "2\t4\t0x1p+0\t0x1p+0\t0x1p+0\t0x1p+0\t0x1p+0\t0x1p+0", "micro_step");
}
END_TEST

// metrics.jsonl rows print lr and grad_norm with %.6g: they must be the exact values rounded.
START_TEST(audit_against_metrics) {
    const char *dir = test_tmpdir("steplog-audit");
    char p[1200], row[512];
    write_steps(dir, 3);
    StepRecord r2 = rec(2);
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    snprintf(row, sizeof row, "{\"kind\":\"train\",\"step\":2,\"lr\":%.6g,\"grad_norm\":%.6g}\n", r2.lr, sqrt(r2.gsq));
    write_text(p, row);
    ck_assert_int_eq(steplog_audit(dir), 0);
    snprintf(row, sizeof row, "{\"kind\":\"train\",\"step\":2,\"lr\":%.6g,\"grad_norm\":%.6g}\n", r2.lr * 1.001,
             sqrt(r2.gsq));
    write_text(p, row);
    ck_assert_int_eq(steplog_audit(dir), 1);
    snprintf(row, sizeof row, "{\"kind\":\"train\",\"step\":4,\"lr\":1,\"grad_norm\":1}\n");
    write_text(p, row);
    ck_assert_int_eq(steplog_audit(dir), 1);
    path_of(p, sizeof p, dir);
    unlink(p);
    ck_assert_int_eq(steplog_audit(dir), 0);   // an older run without the log: WARN only
}
END_TEST

int main(void) {
    Suite *s = suite_create("steplog");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, round_trip_exact);
    tcase_add_test(tc, resume_cuts_back);
    tcase_add_test(tc, read_is_strict);
    tcase_add_test(tc, audit_against_metrics);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

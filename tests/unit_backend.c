// unit_backend.c: the backend registry and the machine slots of every backend
// compiled in (backend.h): names resolve as train.device documents, with the
// error lines the CLI tests rely on; every listed precision is accepted and
// shows in describe(), anything else is refused without changing the numerics.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend/backend.h"
#include "testutil.h"

static const Backend *compiled(const char *name) {
    for (int i = 0; i < backend_count(); i++)
        if (!strcmp(backend_at(i)->name, name)) return backend_at(i);
    return NULL;
}

START_TEST(registry_lists_cpu_last) {
    int n = backend_count();
    ck_assert_int_ge(n, 1);
    ck_assert_ptr_eq(backend_at(n - 1), &backend_cpu);   // the reference, always built, the fallback
    ck_assert_ptr_null(backend_at(-1));
    ck_assert_ptr_null(backend_at(n));
    for (int i = 0; i < n; i++) {
        const Backend *be = backend_at(i);
        ck_assert(be->available && be->free_memory && be->describe && be->precisions && be->set_precision);
        ck_assert(be->alloc && be->sumsq && be->attention_forward);
        for (int j = 0; j < i; j++) ck_assert_str_ne(backend_at(j)->name, be->name);
    }
}
END_TEST

START_TEST(get_by_name) {
    ck_assert_ptr_eq(backend_get("cpu"), &backend_cpu);
    const Backend *a = backend_get("auto");
    char why[256];
    ck_assert_ptr_nonnull(a);
    ck_assert(a->available(why, sizeof why));
    for (int i = 0; i < backend_count() && backend_at(i) != a; i++)   // nothing better was available
        ck_assert(!backend_at(i)->available(why, sizeof why));

    cap_begin();
    ck_assert_ptr_null(backend_get("tpu"));
    ck_assert_ptr_nonnull(strstr(cap_end(), "unknown device 'tpu' (expected auto, cpu or cuda)"));

    const Backend *cuda = compiled("cuda");
    cap_begin();
    const Backend *got = backend_get("cuda");
    const char *err = cap_end();
    if (!cuda) {
        ck_assert_ptr_null(got);
        ck_assert_ptr_nonnull(strstr(err, "device 'cuda' requested but this dcal was built without CUDA (DCAL_CUDA=OFF)"));
    } else if (cuda->available(why, sizeof why)) {
        ck_assert_ptr_eq(got, cuda);
    } else {
        ck_assert_ptr_null(got);
        ck_assert_ptr_nonnull(strstr(err, "device 'cuda' requested but no CUDA GPU is available (use --set train.device=cpu)"));
    }
}
END_TEST

// Whether /proc/cpuinfo lists avx512_bf16 or amx_bf16: the kernel's reading of cpuid, an
// oracle independent of bf16.c's own cpuid query.
static int cpuinfo_has_bf16(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return 0;
    char line[4096];
    int has = 0;
    while (!has && fgets(line, sizeof line, f))
        if (!strncmp(line, "flags", 5)) has = strstr(line, " avx512_bf16") || strstr(line, " amx_bf16");
    fclose(f);
    return has;
}

START_TEST(cpu_machine_slots) {
    char why[64] = "stale";
    ck_assert_int_eq(backend_cpu.available(why, sizeof why), 1);
    ck_assert_str_eq(why, "");
    ck_assert_uint_eq(backend_cpu.free_memory(), 0);   // the CPU never auto-plans memory
    // fp32 always and first (auto resolves to it); bf16 only where the CPU has the instructions
    // (or DCAL_CPU_BF16=portable asks for it anyway).
    const char *env = getenv("DCAL_CPU_BF16");
    int bf16 = cpuinfo_has_bf16() || (env && !strcmp(env, "portable"));
    ck_assert_str_eq(backend_cpu.precisions, bf16 ? "fp32 bf16" : "fp32");
    ck_assert_int_eq(backend_cpu.set_precision("bf16"), bf16);
    ck_assert(backend_cpu.set_precision("fp32"));
    char d[512];
    backend_cpu.describe(d, sizeof d);
    ck_assert_ptr_nonnull(strstr(d, "cpu: "));
    ck_assert_ptr_nonnull(strstr(d, "OpenBLAS"));
}
END_TEST

// Every precision a backend lists is accepted and named by describe(); unknown
// ones are refused and leave the previous one in force.
START_TEST(precisions_round_trip) {
    for (int i = 0; i < backend_count(); i++) {
        const Backend *be = backend_at(i);
        char list[64], d[512], want[80], *save = NULL;
        snprintf(list, sizeof list, "%s", be->precisions);
        const char *first = NULL;
        for (char *p = strtok_r(list, " ", &save); p; p = strtok_r(NULL, " ", &save)) {
            if (!first) first = p;
            ck_assert_msg(be->set_precision(p), "%s refuses its own precision %s", be->name, p);
            be->describe(d, sizeof d);
            snprintf(want, sizeof want, "precision %s:", p);
            ck_assert_msg(strstr(d, want), "%s describe() after set_precision(%s): %s", be->name, p, d);
            ck_assert_ptr_null(strchr(d, '\n'));
            ck_assert(!be->set_precision("fp8") && !be->set_precision(""));
            be->describe(d, sizeof d);
            ck_assert_msg(strstr(d, want), "%s: a refused precision changed the numerics: %s", be->name, d);
        }
        ck_assert_ptr_nonnull(first);
        ck_assert(be->set_precision(first));   // back to the default
        be->describe(d, 8);
        ck_assert_uint_eq(strlen(d), 7);   // truncated, still terminated
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("backend");
    TCase *tc = tcase_create("registry");
    tcase_add_test(tc, registry_lists_cpu_last);
    tcase_add_test(tc, get_by_name);
    tcase_add_test(tc, cpu_machine_slots);
    tcase_add_test(tc, precisions_round_trip);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

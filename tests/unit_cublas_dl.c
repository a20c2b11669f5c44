// unit_cublas_dl.c: cuBLAS and cuBLASLt are not in a dcal process until the CUDA backend calls
// them (kernels/cublas_dl.c): a CPU run does not carry libcublasLt's ~140 MiB. Where the CUDA
// backend is compiled in, its describe() (which asks both libraries their versions, no GPU
// needed) loads them, and the versions it prints are the libraries' own, through the loader.
#include <stdio.h>
#include <string.h>
#include "backend/backend.h"
#include "testutil.h"

static int mapped(const char *lib) {   // whether lib's file is mapped into this process
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    int hit = 0;
    while (!hit && fgets(line, sizeof line, f)) hit = strstr(line, lib) != NULL;
    fclose(f);
    return hit;
}

START_TEST(test_loaded_on_first_use) {
    ck_assert_msg(!mapped("libcublasLt.so") && !mapped("libcublas.so"), "cuBLAS is mapped before any CUDA call");
    const Backend *cuda = NULL;
    for (int i = 0; i < backend_count(); i++)
        if (!strcmp(backend_at(i)->name, "cuda")) cuda = backend_at(i);
    if (!cuda) {
        printf("unit_cublas_dl: no CUDA backend in this build: nothing loads cuBLAS\n");
        return;
    }
    char d[1024];
    cuda->describe(d, sizeof d);
    const char *blas = strstr(d, "cuBLAS "), *lt = strstr(d, "cuBLASLt ");
    int major = 0, lt_major = 0;
    ck_assert_msg(blas && sscanf(blas, "cuBLAS %d.", &major) == 1 && major > 0, "describe: %s", d);
    ck_assert_msg(lt && sscanf(lt, "cuBLASLt %d.", &lt_major) == 1 && lt_major == major, "describe: %s", d);
    ck_assert_msg(mapped("libcublasLt.so") && mapped("libcublas.so"), "describe() did not load cuBLAS");
    printf("unit_cublas_dl: loaded on first use: %.*s\n", (int)strcspn(blas, ";"), blas);
}
END_TEST

int main(void) {
    Suite *s = suite_create("cublas_dl");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_loaded_on_first_use);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

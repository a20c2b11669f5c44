// unit_cudnn_graph.c: kernels/attention_cudnn.cu's two cuDNN graphs (train.attention=cudnn) built
// against the real cuDNN library, which checks every tensor and operation (matmul shapes, the
// transposed strides of Kᵀ, Vᵀ, Pᵀ and dSᵀ, pointwise broadcasts, reductions) when it finalizes
// them; no GPU needed. Whether an engine runs the graphs is left to a GPU (gradcheck_backend_ops'
// cuda-cudnn column). Skips (77) in a build without cuDNN.
#include <stdio.h>
#include "backend/backend.h"
#include "testutil.h"

// Defined by attention_cudnn.cu only in a CUDA build with cuDNN; weak, so other builds link. A weak
// reference pulls nothing from the static library: main's use of the backend registry does
// (registry → backend_cuda → attention.cu → attention_cudnn.cu).
__attribute__((weak)) int dcal_cudnn_graph_selfcheck(int B, int H, int Nq, int Nk, int hd);

START_TEST(test_graphs_finalize) {
    // SA (Nq = Nk, odd), GLCA (2 queries), PWCA (2N keys), ViT-B's head dim 64 and 128, one head.
    static const int shapes[][5] = {{2, 3, 17, 17, 64}, {2, 2, 2, 33, 16}, {3, 2, 29, 58, 32}, {1, 1, 785, 1570, 128}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int *p = shapes[i];
        // forward: 10 operations (2 matmuls, 6 pointwise, 2 reductions); backward: 17.
        ck_assert_int_eq(dcal_cudnn_graph_selfcheck(p[0], p[1], p[2], p[3], p[4]), 10 + 17);
    }
}
END_TEST

int main(void) {
    if (backend_count() < 1 || !dcal_cudnn_graph_selfcheck) {
        printf("SKIP: this build has no cuDNN (a CUDA build with cuDNN 9 builds kernels/attention_cudnn.cu)\n");
        return 77;
    }
    Suite *s = suite_create("cudnn_graph");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_graphs_finalize);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

/* The CUDA toolchain and device work end to end: one kernel and one cuBLAS
 * GEMM give the host's exact results. Skipped (77) without a GPU. */
#include <stdio.h>

#include "kernels/gpu.h"
#include "test_util.h"

int main(void) {
    int n;
    char name[256];
    mvl_error err = {0};
    if (!mvl_test_gpu(&n, name, sizeof name)) return 77;
    printf("%d GPU(s); device 0: %s\n", n, name);
    float max_err;
    if (mvl_gpu_selftest(&max_err, &err) != MVL_OK) {
        printf("FAILED: %s\n", err.msg);
        return 1;
    }
    printf("self-test max abs error %g\n", max_err);
    if (max_err != 0.0f) {
        printf("FAILED: expected exact results\n");
        return 1;
    }
    return 0;
}

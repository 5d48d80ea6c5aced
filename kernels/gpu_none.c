/* GPU entry points of a build without CUDA (kernels/). */
#include "kernels/gpu.h"

mvl_status mvl_gpu_probe(int *count, char *name, size_t name_len, mvl_error *err) {
    *count = 0;
    if (name_len) name[0] = '\0';
    return mvl_fail(err, MVL_ERR_DEVICE, "minimax-vl was built without CUDA (configure with -DMVL_CUDA=ON)");
}

mvl_status mvl_gpu_selftest(float *max_err, mvl_error *err) {
    *max_err = 0;
    return mvl_fail(err, MVL_ERR_DEVICE, "minimax-vl was built without CUDA (configure with -DMVL_CUDA=ON)");
}

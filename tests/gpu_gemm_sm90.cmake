# Hopper GEMM with the fused exact-GELU epilogue (kernels/cuda_gemm_sm90.cu, issue 7's fc1): against
# cuBLASLt + a separate GELU pass and float64; `test_gpu_gemm_sm90 bench [tiles]` times it next to cuBLASLt.
if(MVL_HAVE_CUDA)
  mvl_add_test(test_gpu_gemm_sm90 SOURCES gpu_gemm_sm90.cu LABELS gpu TIMEOUT 600)
endif()

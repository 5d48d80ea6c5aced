# The cuBLASLt Linear (kernels/cuda_common.cu) and its plans' algorithm timing, against an fp32 kernel.
if(MVL_HAVE_CUDA)
  mvl_add_test(test_gpu_linear SOURCES gpu_linear.cu LABELS gpu)
endif()

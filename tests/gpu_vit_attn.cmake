# The ViT's attention (issue 7; kernels/cuda_vit_attn.h): the Hopper kernel and
# the FlashAttention-2 fallback against an fp32 reference kernel, then their
# times at the full size side by side. C++ (.cu): the entry points take
# cudaStream_t and have C++ linkage.
if(MVL_HAVE_CUDA)
  mvl_add_test(test_gpu_vit_attn SOURCES gpu_vit_attn.cu LABELS gpu TIMEOUT 600)
endif()

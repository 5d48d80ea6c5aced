# CUDA lightning attention (issue 8; kernels/cuda_lightning.cu): the kernels
# against a float64 recurrence, and the benchmark driver that
# tests/reference/lightning_bench.py runs next to transformers. C++ (.cu):
# the kernels' entry points take cudaStream_t and have C++ linkage.
if(MVL_HAVE_CUDA)
  mvl_add_test(test_gpu_lightning SOURCES gpu_lightning.cu LABELS gpu TIMEOUT 900)
  add_executable(bench_lightning_cuda ${CMAKE_CURRENT_LIST_DIR}/bench_lightning_cuda.cu)
  target_include_directories(bench_lightning_cuda PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(bench_lightning_cuda PRIVATE mvl)
endif()

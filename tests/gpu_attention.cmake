# CUDA softmax attention of the decoder (issue 8): kernels against the CPU ops,
# and the benchmark driver that tests/reference/attention_bench.py runs next
# to torch's scaled_dot_product_attention on the GPU machine.
if(MVL_HAVE_CUDA)
  mvl_add_test(test_gpu_attention SOURCES gpu_attention.cu LABELS gpu TIMEOUT 600)
  add_executable(bench_attention_cuda ${CMAKE_CURRENT_LIST_DIR}/bench_attention_cuda.cu)
  target_include_directories(bench_attention_cuda PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(bench_attention_cuda PRIVATE mvl)
endif()

# CUDA MoE and small-batch Linear of the decoder (issue 8): kernels against the
# CPU ops, and the full-size benchmark driver (bench_moe_cuda [TABLE.md]).
if(MVL_HAVE_CUDA)
  mvl_add_test(test_gpu_moe SOURCES gpu_moe.cu LABELS gpu TIMEOUT 600)
  add_executable(bench_moe_cuda ${CMAKE_CURRENT_LIST_DIR}/bench_moe_cuda.cu)
  target_include_directories(bench_moe_cuda PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(bench_moe_cuda PRIVATE mvl)
endif()

# GPU tests: exit 77 (skipped) where no GPU is present.
mvl_add_test(test_gpu_smoke SOURCES test_gpu_smoke.c LABELS gpu)

# CUDA vision path (issue 7): driver for tests/reference/vit_parity_bench.py,
# which runs it next to transformers on the GPU machine.
add_executable(bench_vit_cuda ${CMAKE_CURRENT_LIST_DIR}/bench_vit_cuda.c)
target_include_directories(bench_vit_cuda PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bench_vit_cuda PRIVATE mvl)

# CUDA vision path against the CPU reference on the small models (issue 7).
mvl_add_test(test_gpu_vit SOURCES test_gpu_vit.c LABELS gpu)

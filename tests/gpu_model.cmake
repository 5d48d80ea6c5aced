# --device cuda with images (issues 7 and 8): the GPU vision path feeding the
# GPU decoder against the CPU model on the demo model (exit 77 without a GPU),
# and the driver timing an image prompt's embedding + prefill both ways.
mvl_add_test(test_gpu_image_prompt SOURCES test_gpu_image_prompt.c LABELS gpu)

add_executable(bench_image_prefill_cuda ${CMAKE_CURRENT_LIST_DIR}/bench_image_prefill_cuda.c)
target_include_directories(bench_image_prefill_cuda PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bench_image_prefill_cuda PRIVATE mvl)

# CUDA decoder (issue 8): parity against the CPU decoder on the tiny and demo
# models (exit 77 without a GPU), and the full-width benchmark driver.
mvl_add_test(test_gpu_decoder SOURCES ${CMAKE_CURRENT_LIST_DIR}/gpu_decoder.c LABELS gpu TIMEOUT 600)

add_executable(bench_decoder_cuda ${CMAKE_CURRENT_LIST_DIR}/bench_decoder_cuda.c)
target_include_directories(bench_decoder_cuda PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bench_decoder_cuda PRIVATE mvl)

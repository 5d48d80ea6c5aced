# The CLI with the decoder on the GPU (--device cuda, issue 8): the demo
# model's caption and answers as on the CPU (tests/demo_model.sh). Skipped
# (77) without a GPU, as test_gpu_smoke, its probe, is.
add_test(NAME demo_model_cuda COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/demo_model_cuda.sh
         $<TARGET_FILE:test_gpu_smoke> $<TARGET_FILE:minimax-vl> ${CMAKE_SOURCE_DIR})
set_tests_properties(demo_model_cuda PROPERTIES LABELS "gpu" SKIP_RETURN_CODE 77 TIMEOUT 300)

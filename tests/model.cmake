# Model on the CPU (issue 5): ops, ViT, projector, decoder, generation.
mvl_add_test(test_model_ops SOURCES test_model_ops.c LABELS unit TIMEOUT 60)
mvl_add_test(test_model_seq SOURCES test_model_seq.c LABELS unit TIMEOUT 120)
# Goldens from transformers + Pillow (tests/reference/make_goldens.py); skipped (77) when absent.
mvl_add_test(test_model_golden_f32 SOURCES test_model_golden.c LABELS e2e ARGS tiny-random TIMEOUT 300)
add_test(NAME test_model_golden_bf16 COMMAND test_model_golden_f32 tiny-random-bf16)
set_tests_properties(test_model_golden_bf16 PROPERTIES LABELS e2e SKIP_RETURN_CODE 77 TIMEOUT 300
                     ENVIRONMENT "MVL_SOURCE_DIR=${CMAKE_SOURCE_DIR};MVL_BINARY_DIR=${CMAKE_BINARY_DIR}")
# Throughput driver for BENCHMARKS.md (not a test).
add_executable(bench_model bench_model.c)
target_include_directories(bench_model PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bench_model PRIVATE mvl)
add_test(NAME model_cli COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/model_cli.sh $<TARGET_FILE:minimax-vl>
                                   ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}/model-cli)
set_tests_properties(model_cli PROPERTIES LABELS e2e TIMEOUT 120)

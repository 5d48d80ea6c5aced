# The command line's exit codes and stream discipline.
add_test(NAME cli_usage COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cli_usage.sh $<TARGET_FILE:minimax-vl>)
set_tests_properties(cli_usage PROPERTIES LABELS "e2e" TIMEOUT 60)
add_test(NAME generate_cli COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/generate_cli.sh $<TARGET_FILE:minimax-vl>
                                      ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(generate_cli PROPERTIES LABELS "e2e" TIMEOUT 300)
# caption / ask / chat greedy ids against the transformers + HF tokenizers reference.
add_test(NAME cli_goldens COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/cli_goldens.py $<TARGET_FILE:minimax-vl>
                                  ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_goldens PROPERTIES LABELS "e2e" TIMEOUT 300 SKIP_RETURN_CODE 77)
# The bundled demo model (issue 9) on the bundled demo image, against the generator's labels.
add_test(NAME demo_model COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/demo_model.sh $<TARGET_FILE:minimax-vl> ${CMAKE_SOURCE_DIR})
set_tests_properties(demo_model PROPERTIES LABELS "e2e" TIMEOUT 120)

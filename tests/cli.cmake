# The command line's exit codes and stream discipline.
add_test(NAME cli_usage COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cli_usage.sh $<TARGET_FILE:minimax-vl>)
set_tests_properties(cli_usage PROPERTIES LABELS "e2e" TIMEOUT 60)

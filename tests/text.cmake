# Tokenizer and chat format (text/), issue 4.
add_library(mvl_tok_testutil STATIC ${CMAKE_CURRENT_LIST_DIR}/tok_testutil.c)
target_include_directories(mvl_tok_testutil PRIVATE ${CMAKE_SOURCE_DIR})
target_compile_definitions(mvl_tok_testutil PRIVATE MVL_TEST_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
target_link_libraries(mvl_tok_testutil PUBLIC mvl)

mvl_add_test(test_tokenizer_golden SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_tokenizer_golden.c LABELS unit TIMEOUT 600)
target_link_libraries(test_tokenizer_golden PRIVATE mvl_tok_testutil)

# Benchmark driver, not a test: scripts/bench_tokenizer.sh runs it.
add_executable(bench_tokenizer ${CMAKE_CURRENT_LIST_DIR}/bench_tokenizer.c)
target_include_directories(bench_tokenizer PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(bench_tokenizer PRIVATE mvl_tok_testutil)

mvl_add_test(test_tokenizer SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_tokenizer.c LABELS unit)
target_link_libraries(test_tokenizer PRIVATE mvl_tok_testutil)

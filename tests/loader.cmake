# Model directory loader (issue 2): safetensors, config.json, the manifest.
mvl_add_test(test_safetensors SOURCES test_safetensors.c LABELS unit)
mvl_add_test(test_config SOURCES test_config.c LABELS unit)
# The full-size sparse checkpoint: 414 shards of holes, then `info` on it.
add_test(NAME sparse_checkpoint
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/sparse_checkpoint.sh $<TARGET_FILE:minimax-vl>
                 ${CMAKE_SOURCE_DIR}/scripts/make_sparse_checkpoint.py ${CMAKE_BINARY_DIR}/sparse-checkpoint)
set_tests_properties(sparse_checkpoint PROPERTIES LABELS "e2e" TIMEOUT 300)

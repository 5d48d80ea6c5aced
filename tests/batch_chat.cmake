# Issue 6: batch and chat, driving the real binary (python3 for its json and pty modules).
add_test(NAME batch_cli COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/batch_cli.py $<TARGET_FILE:minimax-vl>
                                ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR})
add_test(NAME chat_cli COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/chat_cli.py $<TARGET_FILE:minimax-vl>
                               ${CMAKE_SOURCE_DIR})
set_tests_properties(batch_cli chat_cli PROPERTIES LABELS "e2e" TIMEOUT 300)
add_test(NAME canvas_cap COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/canvas_cap.py $<TARGET_FILE:minimax-vl> ${CMAKE_SOURCE_DIR})
set_tests_properties(canvas_cap PROPERTIES LABELS "e2e" TIMEOUT 120)
add_test(NAME flags_cli COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/flags_cli.sh $<TARGET_FILE:minimax-vl> ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(flags_cli PROPERTIES LABELS "e2e" TIMEOUT 120)

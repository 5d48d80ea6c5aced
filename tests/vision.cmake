# vision/: decoding, Pillow-compatible resizing, anyres preprocessing (issue 3).
find_package(ZLIB REQUIRED)
foreach(t test_image_golden test_image_bad test_preprocess)
  mvl_add_test(${t} SOURCES ${CMAKE_CURRENT_LIST_DIR}/${t}.c LABELS unit)
  target_link_libraries(${t} PRIVATE ZLIB::ZLIB)
endforeach()

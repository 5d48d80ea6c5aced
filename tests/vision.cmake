# vision/: decoding, Pillow-compatible resizing, anyres preprocessing (issue 3).
find_package(ZLIB REQUIRED)
foreach(t test_image_golden test_image_bad test_preprocess)
  mvl_add_test(${t} SOURCES ${CMAKE_CURRENT_LIST_DIR}/${t}.c LABELS unit)
  target_link_libraries(${t} PRIVATE ZLIB::ZLIB)
endforeach()

# Benchmark driver, not a test: `cmake --build B --target bench` runs
# scripts/bench_preprocess.py, which times Pillow + numpy side by side.
add_executable(bench_preprocess ${CMAKE_CURRENT_LIST_DIR}/bench_preprocess.c)
target_link_libraries(bench_preprocess PRIVATE mvl Threads::Threads)
add_custom_target(bench_images
  COMMAND python3 ${CMAKE_SOURCE_DIR}/scripts/bench_preprocess.py --bin $<TARGET_FILE:bench_preprocess>
  DEPENDS bench_preprocess USES_TERMINAL)
if(NOT TARGET bench)
  add_custom_target(bench)
endif()
add_dependencies(bench bench_images)

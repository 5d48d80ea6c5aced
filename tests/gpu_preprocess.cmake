# GPU preprocessing (issue 7): the tiles staged on the device equal the CPU's
# mvl_preprocess tiles byte for byte. Skipped (77) without a GPU.
mvl_add_test(test_gpu_preprocess SOURCES test_gpu_preprocess.c LABELS gpu)

# GPU tests: exit 77 (skipped) where no GPU is present.
mvl_add_test(test_gpu_smoke SOURCES test_gpu_smoke.c LABELS gpu)

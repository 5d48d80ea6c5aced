# Model on the CPU (issue 5): ops, ViT, projector, decoder, generation.
mvl_add_test(test_model_ops SOURCES test_model_ops.c LABELS unit TIMEOUT 60)
mvl_add_test(test_model_seq SOURCES test_model_seq.c LABELS unit TIMEOUT 120)

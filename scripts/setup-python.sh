#!/usr/bin/env bash
# Python packages used only by the scripts that produce goldens and run the
# peer side of benchmarks (Pillow, numpy, Hugging Face tokenizers). The C
# build and the test suite do not need them: goldens are committed.
# Pillow is pinned to 11.0.0, the release current with the reference stack
# (transformers 4.47.1): later Pillow orders the resize passes differently for
# some portrait images (see vision/resample.c).
set -euo pipefail
python3 -m pip install --quiet --disable-pip-version-check \
  "numpy>=1.26" "pillow==11.0.0" "tokenizers>=0.20"

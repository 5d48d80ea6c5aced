#!/usr/bin/env bash
# Python packages used only by the scripts that produce goldens and run the
# peer side of benchmarks (Pillow, numpy, Hugging Face tokenizers). The C
# build and the test suite do not need them: goldens are committed.
set -euo pipefail
python3 -m pip install --quiet --disable-pip-version-check \
  "numpy>=1.26" "pillow>=10" "tokenizers>=0.20"

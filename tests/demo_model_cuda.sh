#!/bin/sh
# demo_model.sh with the text decoder on the GPU (--device cuda): the same
# caption and answers as the CPU gives (the generator's labels). Usage:
# demo_model_cuda.sh PROBE BIN SRC, where PROBE is test_gpu_smoke: it exits
# 77 where there is no GPU (or a build without CUDA), and so does this.
set -u
probe=$1
shift
out=$("$probe")
rc=$?
if [ "$rc" -eq 77 ]; then
  echo "$out"
  exit 77
fi
if [ "$rc" -ne 0 ]; then
  echo "FAIL: the GPU probe exited $rc: $out"
  exit 1
fi
exec sh "$(dirname "$0")/demo_model.sh" "$@" --device cuda

#!/usr/bin/env bash
# The README's test command: installs the dependencies, builds the release
# and the sanitizer (ASan + UBSan) configurations, and runs the whole suite
# in both. GPU tests report "skipped" where no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMVL_SANITIZE=ON -DMVL_CUDA=OFF >/dev/null
cmake --build build-asan -j"$jobs"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1
echo "== release build ==" >&2
ctest --test-dir build --output-on-failure -j"$jobs"
echo "== sanitizer build (ASan + UBSan) ==" >&2
ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE slow

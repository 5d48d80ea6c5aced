#!/usr/bin/env bash
# Run HERE (Debian 12): downloads the Debian packages that the GPU machine
# lacks (jansson, PCRE2, cmocka, OpenBLAS, libjpeg-turbo 2.1) into
# .device/debs, which is git-ignored and carried to the device by the
# `run` tool (carry: [".device"]). scripts/device-env.sh unpacks them there.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device/debs
cd .device/debs
apt-get download -q \
  libjansson-dev libjansson4 libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 \
  libcmocka-dev libcmocka0 libopenblas-dev libopenblas0 libopenblas0-pthread libopenblas-pthread-dev \
  libgfortran5 libutf8proc-dev libutf8proc2 libturbojpeg0-dev libturbojpeg0 libjpeg62-turbo libjpeg62-turbo-dev 2>&1 | grep -v '^W:' || true

#!/usr/bin/env bash
# Installs the build and test dependencies from Debian 12 packages. Idempotent:
# packages already present are skipped, so a second run does no work.
# CUDA, cuBLAS and NCCL come with the machine's CUDA toolkit, not from here.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config python3
  libjpeg62-turbo-dev libturbojpeg0-dev   # JPEG decode (libjpeg-turbo 2.1)
  libpng-dev                              # PNG decode
  libstb-dev                              # stb_image_resize (non-parity paths)
  libjansson-dev                          # JSON: config, safetensors headers, tokenizer.json
  libpcre2-dev                            # tokenizer pre-tokenizer regex
  libutf8proc-dev                         # tokenizer NFC normalizer
  libcmocka-dev                           # unit tests
  libopenblas-dev                         # CPU GEMMs
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup-deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup-deps: all packages present" >&2
fi

# Sourced ON THE GPU MACHINE (Ubuntu 24.04, no jansson/PCRE2/cmocka/OpenBLAS):
# unpacks the carried Debian packages of .device/debs into a private sysroot
# (never into /) and points pkg-config, the compiler and the loader at it.
#   source scripts/device-env.sh && cmake -S . -B build-dev && cmake --build build-dev -j
MVL_SYSROOT=/tmp/mvl-sysroot
mkdir -p "$MVL_SYSROOT"
for f in .device/debs/*.deb; do dpkg -x "$f" "$MVL_SYSROOT"; done
lib=$MVL_SYSROOT/usr/lib/x86_64-linux-gnu
export PKG_CONFIG_SYSROOT_DIR=$MVL_SYSROOT
export PKG_CONFIG_PATH=$lib/pkgconfig:$lib/openblas-pthread/pkgconfig
export LD_LIBRARY_PATH=$lib:$lib/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LIBRARY_PATH=$lib:$lib/openblas-pthread
export CMAKE_PREFIX_PATH=$MVL_SYSROOT/usr
# Debian's libjpeg62 headers (jpeglib.h and the multiarch jconfig.h) ahead of
# the system's libjpeg8 ones, which would otherwise win through the implicit
# /usr/include/x86_64-linux-gnu and fail at run time ("library is 62, caller
# expects 80").
export JPEG_ROOT=$MVL_SYSROOT/usr
export CPATH=$MVL_SYSROOT/usr/include/x86_64-linux-gnu:$MVL_SYSROOT/usr/include

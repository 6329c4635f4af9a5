# Compiler options shared by every ringtrain target, through the interface
# library `ringtrain_options`.
#
# RINGTRAIN_NATIVE (default ON): -march=native, because Eigen's float GEMM and
#   the ring's add loop vectorise far better with it (bench/README.md); a build
#   meant for other machines (a cluster's login node, a container) turns it off.
# RINGTRAIN_SANITIZE (default OFF): AddressSanitizer + UndefinedBehaviorSanitizer,
#   with UB reports made fatal so the test suite fails on them.
# RINGTRAIN_FUZZ (default OFF, declared in CMakeLists.txt; clang only): every
#   target instrumented for libFuzzer (-fsanitize=fuzzer-no-link) plus ASan and
#   UBSan; fuzz/ links its executables with -fsanitize=fuzzer. See fuzz/README.md.
option(RINGTRAIN_NATIVE "Optimise for the building machine (-march=native)" ON)
option(RINGTRAIN_SANITIZE "Build with ASan+UBSan" OFF)

add_library(ringtrain_options INTERFACE)
target_compile_options(ringtrain_options INTERFACE -Wall -Wextra -Wpedantic
  # GCC 12 reports false positives inside Eigen's AVX-512 kernels.
  $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>)
# Release is -O3 (CMake's default flags) plus, below, -march=native.
if(RINGTRAIN_NATIVE)
  target_compile_options(ringtrain_options INTERFACE -march=native)
endif()
if(RINGTRAIN_SANITIZE)
  target_compile_options(ringtrain_options INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
    # The same GCC 12 false positive inside AVX-512 intrinsics, at -O1/-O2.
    $<$<CXX_COMPILER_ID:GNU>:-Wno-uninitialized>)
  target_link_options(ringtrain_options INTERFACE -fsanitize=address,undefined)
endif()
if(RINGTRAIN_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "RINGTRAIN_FUZZ needs clang (libFuzzer); use the `fuzz` preset")
  endif()
  target_compile_options(ringtrain_options INTERFACE
    -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(ringtrain_options INTERFACE -fsanitize=address,undefined)
endif()

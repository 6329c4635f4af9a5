// Small helpers every MPI algorithm of comm/ shares: checking an MPI call's
// return code, and the element-wise sum the message-based algorithms reduce
// with. Their own header, so that an algorithm does not include another's
// to get them.
#pragma once

#include <cstddef>

namespace ringtrain {

// Throws RuntimeError naming the call when an MPI function did not succeed.
void check_mpi(int rc, const char* what);

// dst[i] += src[i]: the reduction step of the message-based algorithms
// (vectorised at -O3 -march=native).
inline void add_into(float* __restrict dst, const float* __restrict src, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] += src[i];
}

}  // namespace ringtrain

// RecursiveDoubling: sum-all-reduce in ceil(log2 p) exchanges of the whole
// buffer, the latency-optimal algorithm for small buffers (the ring needs
// 2(p-1) exchanges; below some size the count of messages, not their bytes,
// is the cost; bench_allreduce measures where).
//
// With p a power of two, in round k rank r swaps its buffer with rank
// r xor 2^k and adds. The two partners add the same two values in opposite
// order, which IEEE addition makes the same bits, so every rank ends with the
// same result. Otherwise the first 2e ranks (e = p minus the largest power of
// two below it) pair up first: each even one hands its buffer to the odd one
// above it and gets the result back at the end.
//
// The receive scratch is allocated by reserve(), never per call; every wait
// goes through the Watchdog when one is given.
#pragma once

#include <mpi.h>

#include <cstddef>

#include "ringtrain/comm/watchdog.hpp"
#include "ringtrain/util/big_buffer.hpp"

namespace ringtrain {

class RecursiveDoubling {
 public:
  explicit RecursiveDoubling(MPI_Comm comm, Watchdog* watchdog = nullptr);
  void reserve(std::size_t n);
  void run(float* data, std::size_t n);

 private:
  MPI_Comm comm_;
  Watchdog* watchdog_;
  int rank_ = 0, size_ = 1;
  BigBuffer<float> scratch_;
};

}  // namespace ringtrain

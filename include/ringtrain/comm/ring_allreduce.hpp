// RingAllreduce: sum-all-reduce of a float buffer over MPI point-to-point,
// as a reduce-scatter followed by an all-gather around a ring of p ranks.
//
// The buffer of n floats is cut into p chunks (the first n mod p chunks one
// element longer), so any n works: 0, n < p, n not divisible by p. In step s
// of the reduce-scatter, rank r sends chunk (r - s) mod p to its right
// neighbour and adds chunk (r - s - 1) mod p from its left neighbour into its
// own copy; after p-1 steps rank r holds the full sum of chunk (r + 1) mod p.
// The all-gather then passes the finished chunks around the ring.
//
// Pipelined: each reduce-scatter step cuts its chunk into segments of
// `segment` floats, keeps two in flight each way, and adds segment k (still
// in the cache) while segment k + 1 travels. Over a network the additions
// hide behind the wire; on one node Open MPI's transport copies in the same
// thread, so there it is on par with one message per chunk (measured).
//
// Each chunk is summed in one fixed order on one rank and then copied, so the
// result is bit-identical on every rank and deterministic run to run. Each
// rank moves 2(p-1)/p * n floats, the bandwidth optimum.
//
// Compressed (WireFormat bf16 or fp16, comm.compression): every message
// carries 16-bit values, half the bytes. A rank rounds its partial sum of a
// chunk to 16 bits to send it, and the receiver widens it and adds in fp32.
// The owner of a finished chunk rounds it once more, keeps the rounded value
// itself and all-gathers those 16-bit patterns: every rank ends with the same
// bits, and the same inputs give the same result run to run.
//
// The receive scratch is allocated (and touched) by reserve(), never per call.
// Each exchange is a non-blocking receive + send; with a Watchdog the wait
// never lasts for ever (watchdog.hpp).
#pragma once

#include <mpi.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "ringtrain/comm/mpi_helpers.hpp"  // check_mpi, add_into: the ring uses them, its users did
#include "ringtrain/comm/watchdog.hpp"
#include "ringtrain/comm/wire_format.hpp"
#include "ringtrain/util/big_buffer.hpp"

namespace ringtrain {

class RingAllreduce {
 public:
  // 256 Ki floats (1 MiB) per segment (bench_allreduce --ring-segment: on
  // one node 64 Ki was up to 20% slower from 4 MiB on, 1 Mi no better).
  static constexpr std::size_t kDefaultSegment = std::size_t(1) << 18;
  // `watchdog` (optional, not owned) bounds every wait.
  explicit RingAllreduce(MPI_Comm comm, Watchdog* watchdog = nullptr, std::size_t segment = kDefaultSegment);
  // Buffers for run(data, n, wire) (the 16-bit ones only for bf16/fp16).
  void reserve(std::size_t n, WireFormat wire = WireFormat::kFp32);
  void run(float* data, std::size_t n, WireFormat wire = WireFormat::kFp32);

  // run()'s two halves (fp32), for the sharded optimizer. After
  // reduce_scatter(data, n), owned(n) of data holds the sum, the same bits
  // run() gives there (the rest holds partial sums); allgather(data, n) then
  // gives every rank each rank's owned(n). Both together are run().
  std::pair<std::size_t, std::size_t> owned(std::size_t n) const;
  void reduce_scatter(float* data, std::size_t n);
  void allgather(float* data, std::size_t n);

 private:
  std::size_t chunk_begin(int c, std::size_t n) const;
  void run_compressed(float* data, std::size_t n, WireFormat wire);
  void reduce_step(const float* send, std::size_t send_n, float* dst, std::size_t recv_n);
  void exchange(const void* send, int send_count, void* recv, int recv_count, MPI_Datatype type,
                const char* what);
  MPI_Comm comm_;
  Watchdog* watchdog_;
  int rank_, size_, right_, left_;
  std::size_t segment_;
  BigBuffer<float> scratch_;
  std::vector<MPI_Request> requests_;  // one per segment of a chunk, receives then sends
  BigBuffer<uint16_t> wire_;          // compressed: the whole buffer's 16-bit patterns
  BigBuffer<uint16_t> wire_scratch_;  // compressed: one received chunk
};

}  // namespace ringtrain

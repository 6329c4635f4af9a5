// Communicator: everything train/ may ask of the other ranks.
//
// train/ never sees MPI; it talks through this interface. Implementations:
// SelfCommunicator (one rank, for tests and single-process runs) and the MPI
// one (mpi_communicator.hpp). No <mpi.h> here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "ringtrain/util/error.hpp"

namespace ringtrain {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In-place sum across ranks. The float overload is the gradient path and
  // uses the configured algorithm (ring or MPI_Allreduce); results are
  // bit-identical on every rank.
  virtual void allreduce_sum(float* data, std::size_t n) = 0;
  virtual void allreduce_sum(double* data, std::size_t n) = 0;
  // The gradient path: like allreduce_sum(float*), but over the wire in the
  // configured format (comm.compression; wire_format.hpp), so results are
  // rounded to bf16/fp16 when compression is on (same bits on every rank).
  // Flags and sums that must stay exact go through allreduce_sum.
  virtual void allreduce_gradients(float* data, std::size_t n) { allreduce_sum(data, n); }
  virtual std::string compression() const { return "none"; }
  // The sharded optimizer (comm.shard_optimizer): the gradient all-reduce in
  // its two halves, with each rank's optimizer step on its shard between
  // them. shards_gradients(n): whether this communicator does that for a
  // gradient buffer of n floats (the algorithm it takes for n has the two
  // halves: shm and the uncompressed ring; one rank has nothing to share).
  // shard(n): this rank's part [first, second) of an n-float buffer; the
  // ranks' parts cut it without gaps or overlaps.
  virtual bool shards_gradients(std::size_t /*n*/) const { return false; }
  virtual std::pair<std::size_t, std::size_t> shard(std::size_t n) const { return {0, n}; }
  // Collective. Afterwards data[shard(n)] holds the sum over ranks, the same
  // bits allreduce_gradients gives there; the rest of data is undefined.
  virtual void reduce_scatter_gradients(float* data, std::size_t n) { allreduce_gradients(data, n); }
  // Collective: every rank's data[shard(n)] to every rank. `scratch`: n
  // floats the call may overwrite (the trainer's gradient buffer, dead by
  // then: in shared memory it carries the slices without a staging copy).
  virtual void allgather_shards(float* /*data*/, std::size_t /*n*/, float* /*scratch*/) {}
  // Whether one other thread may make this communicator's calls while the
  // thread that owns it waits for that thread (MPI_THREAD_SERIALIZED): the
  // communication thread of comm.overlap.
  virtual bool allows_comm_thread() const { return true; }
  virtual int allreduce_min(int value) = 0;
  virtual void broadcast(void* data, std::size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Ends every rank of the job now (the last resort when ranks disagree).
  [[noreturn]] virtual void abort(int exit_code) = 0;
  // Prepares buffers for allreduce_sum(float*, n) so the step loop never
  // allocates. Optional.
  virtual void reserve(std::size_t /*floats*/) {}
  // Same for allreduce_gradients(data, n) with n <= floats.
  virtual void reserve_gradients(std::size_t floats) { reserve(floats); }
  // Collective: a zeroed buffer of n floats that allreduce_sum reduces where
  // it lies, faster than other memory (comm.algorithm=shm: in the node's
  // shared memory), owned by the communicator and valid as long as it lives
  // (each call makes a new one); nullptr when there is no such thing (then
  // any memory will do). The trainer's gradient buffer.
  virtual float* shared_gradient_buffer(std::size_t /*floats*/) { return nullptr; }
  // Called now and then by a rank busy on its own (rank 0 waiting for its
  // writer) so that the other ranks' watchdog knows it is alive.
  virtual void keep_alive() {}
  virtual std::string algorithm() const = 0;
};

class SelfCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(float*, std::size_t) override {}
  void allreduce_sum(double*, std::size_t) override {}
  int allreduce_min(int value) override { return value; }
  void broadcast(void*, std::size_t, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int exit_code) override;
  std::string algorithm() const override { return "self"; }
};

// An error every rank knows about and agrees on; the app prints it once.
class CollectiveError : public Error {
 public:
  CollectiveError(const std::string& what, int exit_code) : Error(what, exit_code) {}
};

// Runs `fn` on every rank; if it throws on any rank, every rank throws a
// CollectiveError carrying the lowest failing rank's message and exit code,
// prefixed with "rank N: " unless every rank failed.
// Use it around phases where ranks can fail independently (reading shards),
// so bad input ends the job cleanly with exit code 2 everywhere, never a hang.
void run_collectively(Communicator& comm, const std::function<void()>& fn);

// Same string on every rank (root's); used for messages and config text.
std::string broadcast_string(Communicator& comm, const std::string& s, int root);

}  // namespace ringtrain

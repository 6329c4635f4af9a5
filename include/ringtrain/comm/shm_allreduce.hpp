// ShmAllreduce: sum-all-reduce of a float buffer among ranks that share one
// node, through an MPI-3 shared-memory window instead of messages.
//
// Every rank owns a staging slot in a window that all ranks of the node map
// (MPI_Win_allocate_shared). The buffer goes through in blocks of at most
// `block` floats:
//   1. each rank copies its block into its slot;          barrier
//   2. rank r sums slice r of the block over all p slots, in rank order
//      0, 1, ..., p-1, into slice r of its own slot;      barrier
//   3. each rank copies every slice q from rank q's slot into its buffer.
// Each element is summed once, by one rank, in one fixed order, then copied:
// the result is bit-identical on every rank and deterministic run to run
// (its order differs from the ring's, so the two differ in the last bits).
// Two staging halves alternate between blocks (and calls), so step 3 needs
// no barrier of its own: nobody writes a half again before every rank has
// passed the next block's first barrier, which comes after its copy-out.
//
// Why: on one node the ring's messages are copies through the MPI library
// (and, above its eager limit, a system call per transfer). Here each rank
// reads and writes plain memory, one block at a time in cache. The staged
// path still copies every block in and out; a buffer from shared_buffer()
// (the trainer's gradients) is reduced where it lies, with no copy-in.
//
// The barriers are our own, in shared memory too: each rank publishes a
// counter on its own cache line and waits until every rank's has reached it
// (no MPI call, no allocation; well under a microsecond on two cores, where
// MPI_Ibarrier took several).
//
// Needs every rank of `comm` on one node (single_node()); a cluster run uses
// the ring. The window is allocated by reserve() (collective: every rank
// calls it with the same n, as run() does) and freed by the destructor, also
// collectively. With a Watchdog every barrier is bounded (watchdog.hpp).
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "ringtrain/comm/watchdog.hpp"

namespace ringtrain {

class ShmAllreduce {
 public:
  // 256 Ki floats (1 MiB) per block: a slice of it stays in the cache between
  // the copy-in and the sum (measured in bench/bench_allreduce).
  static constexpr std::size_t kDefaultBlock = std::size_t(1) << 18;

  // True when every rank of `comm` is on this node. Collective.
  static bool single_node(MPI_Comm comm);

  // UsageError (collective) when `comm` spans several nodes.
  explicit ShmAllreduce(MPI_Comm comm, Watchdog* watchdog = nullptr, std::size_t block = kDefaultBlock);
  ~ShmAllreduce();
  ShmAllreduce(const ShmAllreduce&) = delete;
  ShmAllreduce& operator=(const ShmAllreduce&) = delete;

  // Collective: staging for buffers of n floats (two halves of min(n, block)).
  void reserve(std::size_t n);
  // Collective: this rank's buffer of n floats inside a new shared window,
  // zeroed; nullptr on one rank (nothing to share). run() on it (with n or
  // fewer floats) skips the staging copies: rank r sums slice r straight
  // from every rank's buffer into its own, and each rank then copies the
  // other slices from their owners. Valid until the destructor (every call
  // makes a new window; earlier buffers stay valid). A part of it (the same
  // offset on every rank) is reduced in place too. CollectiveError when
  // /dev/shm has no room for every rank's n floats.
  float* shared_buffer(std::size_t n);
  // Collective: every rank passes the same n, and either every rank a buffer
  // of the same shared_buffer() call or every rank other memory (checked:
  // RuntimeError on every rank otherwise).
  void run(float* data, std::size_t n);

  // run()'s two halves, for the sharded optimizer (collective, like run()).
  // After reduce_scatter(data, n), owned(n) of data holds the sum, the same
  // bits run() gives there (the rest is left as it was); in place on a
  // shared_buffer() that is one sum and one barrier, on other memory a
  // whole run(). allgather(data, n, scratch) gives every rank each rank's
  // owned(n) of data; `scratch` is n floats it may overwrite: a part of a
  // shared_buffer() (the same on every rank) carries the slices without a
  // staging window, other memory goes through the staging window.
  std::pair<std::size_t, std::size_t> owned(std::size_t n) const;
  void reduce_scatter(float* data, std::size_t n);
  void allgather(float* data, std::size_t n, float* scratch);

 private:
  static constexpr int64_t kInPlace = 1, kStaged = 2;  // agree(): in place is 1 + 2 * offset
  struct DataWindow {
    MPI_Win win = MPI_WIN_NULL;
    std::size_t n = 0;
    std::vector<float*> slots;  // every rank's buffer, as mapped here
  };
  // The shared_buffer() window holding [data, data + n) and data's offset
  // in this rank's buffer, or nullptr.
  const DataWindow* find_shared(const float* data, std::size_t n, std::size_t& offset) const;
  void run_staged(float* data, std::size_t n);
  void run_in_place(const std::vector<float*>& slots, std::size_t offset, std::size_t n);
  // What each rank publishes for the barrier, on its own cache line: how
  // many barriers it has entered, and the path it named at the last two
  // (agree()); a rank can be at most one barrier ahead of a reader.
  struct BarrierLine {  // at the start of a cache line of its own
    uint64_t epoch;
    int64_t path[2];
  };
  // Every rank has entered the barrier this rank is in (ready() of wait_until).
  static bool all_arrived(const void* self);
  void barrier(const char* what) { agree(0, what); }
  void agree(int64_t path, const char* what);
  void free_window();
  void free_data_windows();
  MPI_Comm comm_ = MPI_COMM_NULL;  // a duplicate, on this node
  Watchdog* watchdog_;
  std::size_t block_;
  int rank_ = 0, size_ = 1;
  MPI_Win ctl_win_ = MPI_WIN_NULL;  // the barrier lines
  std::vector<BarrierLine*> lines_;  // every rank's, as mapped here
  uint64_t epoch_ = 0;               // barriers this rank has entered
  MPI_Win win_ = MPI_WIN_NULL;
  std::size_t half_ = 0;           // floats per staging half
  std::size_t next_half_ = 0;      // 0 or 1: alternates across blocks and calls
  std::vector<float*> slots_;      // every rank's slot, as mapped here
  std::vector<DataWindow> data_;     // shared_buffer()'s
};

}  // namespace ringtrain

// BucketReducer: the trainer's gradient all-reduce, in fixed buckets, either
// after backward or overlapped with it (comm.bucket_mb, comm.overlap).
//
// The gradient buffer is cut into buckets at layer boundaries, in the order
// backward finishes them (the model lays its parameters out in reverse layer
// order, so that order is a walk from offset 0 upward): a bucket closes once
// it holds at least `bucket_floats` floats. The slots after the gradients
// (loss, example count, flags: sums that must stay exact) ride in the last
// bucket, or go alone through the exact fp32 all-reduce when gradients are
// compressed (comm.compression).
//
// Without overlap finish() reduces the buckets one after another on the
// calling thread. With overlap a communication thread reduces each bucket as
// soon as backward reports it complete (Mlp's GradientsReady), while the
// main thread computes the earlier layers; finish() waits for the rest. Both
// make the same calls on the same ranges in the same order, so the result is
// bit-identical with and without overlap, and the same on every rank.
//
// Why a thread and not non-blocking calls from the main thread: the ring
// over TCP progresses only inside MPI calls, and backward is one long GEMM
// per layer with nowhere to poll. The main thread makes no MPI call between
// start_step() and the end of finish(), so MPI_THREAD_SERIALIZED is enough.
// The thread sleeps on a condition variable between buckets and polls
// without yielding while a bucket is in flight, also while backward runs on
// the same core: over TCP the ring moves only inside MPI calls, and a thread
// that yielded between polls during backward made overlap + bf16 17% slower
// (189 against 158 ms per step, bench_netns.sh, same session), while overlap
// alone was the same either way (343 against 346 ms). Nothing here allocates
// after construction.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "ringtrain/comm/communicator.hpp"
#include "ringtrain/nn/mlp.hpp"
#include "ringtrain/util/timeline.hpp"

namespace ringtrain {

class BucketReducer final : public GradientsReady {
 public:
  struct Range {
    std::size_t begin = 0, end = 0;
    bool exact = false;  // allreduce_sum (never compressed) instead of allreduce_gradients
  };

  // data: n_total floats, of which [0, n_grads) are gradients and the rest
  // exact sums. ready_points: the prefixes backward completes (ascending,
  // ending with n_grads). bucket_floats 0: one bucket.
  BucketReducer(Communicator& comm, float* data, std::size_t n_grads, std::size_t n_total,
                const std::vector<std::size_t>& ready_points, std::size_t bucket_floats, bool overlap);
  ~BucketReducer();
  BucketReducer(const BucketReducer&) = delete;
  BucketReducer& operator=(const BucketReducer&) = delete;

  // Main thread, before backward: a new step begins; nothing is ready. Its
  // all-reduces go into `timeline` when one is given.
  void start_step(int64_t step, Timeline* timeline = nullptr);
  // From backward: data[0, prefix) is final.
  void gradients_ready(std::size_t prefix) override;
  // Everything (the exact slots included) is final: reduce what is left and
  // wait until every range is reduced. Rethrows an error of the thread.
  void finish();

  const std::vector<Range>& ranges() const { return ranges_; }
  bool overlapped() const { return overlap_; }

 private:
  void reduce(std::size_t k);
  void thread_main();

  Communicator& comm_;
  float* data_;
  std::size_t n_total_;
  std::vector<Range> ranges_;
  bool overlap_;
  Timeline* timeline_ = nullptr;  // this step's
  int64_t step_ = -1;

  std::mutex mu_;
  std::condition_variable work_, done_;
  std::size_t ready_ = 0;    // prefix of data_ that is final this step
  std::size_t reduced_ = 0;  // ranges reduced this step
  uint64_t generation_ = 0;  // steps started
  bool quit_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace ringtrain

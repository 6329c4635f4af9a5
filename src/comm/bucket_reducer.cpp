// Bucketed, optionally overlapped gradient all-reduce (see bucket_reducer.hpp).
#include "ringtrain/comm/bucket_reducer.hpp"

#include <algorithm>

#include "ringtrain/comm/watchdog.hpp"
#include "ringtrain/util/error.hpp"

namespace ringtrain {

BucketReducer::BucketReducer(Communicator& comm, float* data, std::size_t n_grads, std::size_t n_total,
                             const std::vector<std::size_t>& ready_points, std::size_t bucket_floats, bool overlap)
    : comm_(comm), data_(data), n_total_(n_total), overlap_(overlap) {
  RT_CHECK(n_grads <= n_total && !ready_points.empty() && ready_points.back() == n_grads &&
               std::is_sorted(ready_points.begin(), ready_points.end()),
           "BucketReducer: the ready points must ascend to the gradient count");
  if (overlap_ && !comm_.allows_comm_thread())
    throw UsageError(
        "comm.overlap=true needs MPI_THREAD_SERIALIZED, which this MPI library did not provide (use "
        "comm.overlap=false)");
  std::size_t begin = 0;
  for (std::size_t p : ready_points)
    if (bucket_floats > 0 && p < n_grads && p - begin >= bucket_floats) {
      ranges_.push_back({begin, p, false});
      begin = p;
    }
  // The exact slots join the last bucket unless the gradients are rounded
  // on the wire (then allreduce_gradients would round the sums too).
  if (n_total > n_grads && comm_.compression() == "none") {
    ranges_.push_back({begin, n_total, false});
  } else {
    ranges_.push_back({begin, n_grads, false});
    if (n_total > n_grads) ranges_.push_back({n_grads, n_total, true});
  }
  for (const Range& r : ranges_) {
    if (r.exact)
      comm_.reserve(r.end - r.begin);
    else
      comm_.reserve_gradients(r.end - r.begin);
  }
  if (overlap_) thread_ = std::thread([this] { thread_main(); });
}

BucketReducer::~BucketReducer() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
  }
  work_.notify_all();
  thread_.join();
}

void BucketReducer::reduce(std::size_t k) {
  const Range& r = ranges_[k];
  const TimelineScope scope(timeline_, r.exact ? "allreduce (exact sums)" : "allreduce bucket", overlap_ ? 1 : 0,
                            step_);
  if (r.exact)
    comm_.allreduce_sum(data_ + r.begin, r.end - r.begin);
  else
    comm_.allreduce_gradients(data_ + r.begin, r.end - r.begin);
}

void BucketReducer::start_step(int64_t step, Timeline* timeline) {
  step_ = step;
  timeline_ = timeline;
  if (!overlap_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ready_ = 0;
    reduced_ = 0;
    ++generation_;
  }
  work_.notify_one();
}

void BucketReducer::gradients_ready(std::size_t prefix) {
  if (!overlap_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ready_ = std::max(ready_, prefix);
  }
  work_.notify_one();
}

void BucketReducer::finish() {
  if (!overlap_) {
    for (std::size_t k = 0; k < ranges_.size(); ++k) reduce(k);
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  ready_ = n_total_;
  work_.notify_one();
  done_.wait(lock, [this] { return reduced_ == ranges_.size(); });
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void BucketReducer::thread_main() {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_.wait(lock, [&] { return quit_ || generation_ != seen; });
    if (quit_) return;
    seen = generation_;
    for (std::size_t k = 0; k < ranges_.size(); ++k) {
      work_.wait(lock, [&] { return quit_ || ready_ >= ranges_[k].end; });
      if (quit_) return;
      lock.unlock();
      std::exception_ptr failure;
      try {
        reduce(k);
      } catch (...) {
        failure = std::current_exception();
      }
      lock.lock();
      if (failure) {  // the step is over for this rank: finish() rethrows
        error_ = failure;
        reduced_ = ranges_.size();
        done_.notify_all();
        break;
      }
      reduced_ = k + 1;
      if (reduced_ == ranges_.size()) done_.notify_all();
    }
  }
}

}  // namespace ringtrain

// Ring reduce-scatter + all-gather (see ring_allreduce.hpp).
#include "ringtrain/comm/ring_allreduce.hpp"

#include "ringtrain/util/error.hpp"

namespace ringtrain {

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw RuntimeError(str_cat(what, " failed: ", std::string(text, len)));
}

RingAllreduce::RingAllreduce(MPI_Comm comm, Watchdog* watchdog) : comm_(comm), watchdog_(watchdog) {
  check_mpi(MPI_Comm_rank(comm, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm, &size_), "MPI_Comm_size");
  right_ = (rank_ + 1) % size_;
  left_ = (rank_ + size_ - 1) % size_;
}

void RingAllreduce::exchange(const float* send, int send_count, float* recv, int recv_count,
                             const char* what) {
  constexpr int kTag = 0x52;
  MPI_Request reqs[2];
  check_mpi(MPI_Irecv(recv, recv_count, MPI_FLOAT, left_, kTag, comm_, &reqs[0]), what);
  check_mpi(MPI_Isend(send, send_count, MPI_FLOAT, right_, kTag, comm_, &reqs[1]), what);
  if (watchdog_) {
    watchdog_->wait(2, reqs, what);
  } else {
    check_mpi(MPI_Waitall(2, reqs, MPI_STATUSES_IGNORE), what);
  }
}

void RingAllreduce::reserve(std::size_t n) {
  const std::size_t chunk = (n + size_ - 1) / size_;
  if (scratch_.size() < chunk) scratch_.assign(chunk, 0.0f);
}

std::size_t RingAllreduce::chunk_begin(int c, std::size_t n) const {
  const std::size_t base = n / size_, extra = n % size_;
  return c * base + std::min<std::size_t>(c, extra);
}

void RingAllreduce::run(float* data, std::size_t n) {
  if (size_ == 1 || n == 0) return;
  reserve(n);  // no-op once reserved for this size
  auto mod = [this](int v) { return ((v % size_) + size_) % size_; };
  auto len = [&](int c) { return static_cast<int>(chunk_begin(c + 1, n) - chunk_begin(c, n)); };

  for (int s = 0; s < size_ - 1; ++s) {  // reduce-scatter
    const int send = mod(rank_ - s), recv = mod(rank_ - s - 1);
    exchange(data + chunk_begin(send, n), len(send), scratch_.data(), len(recv),
             "the ring all-reduce (reduce-scatter)");
    float* dst = data + chunk_begin(recv, n);
    const float* src = scratch_.data();
    const int count = len(recv);
    for (int i = 0; i < count; ++i) dst[i] += src[i];  // vectorised at -O3 -march=native
  }
  for (int s = 0; s < size_ - 1; ++s) {  // all-gather
    const int send = mod(rank_ + 1 - s), recv = mod(rank_ - s);
    exchange(data + chunk_begin(send, n), len(send), data + chunk_begin(recv, n), len(recv),
             "the ring all-reduce (all-gather)");
  }
}

}  // namespace ringtrain

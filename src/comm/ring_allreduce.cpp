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

RingAllreduce::RingAllreduce(MPI_Comm comm) : comm_(comm) {
  check_mpi(MPI_Comm_rank(comm, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm, &size_), "MPI_Comm_size");
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
  const int right = (rank_ + 1) % size_, left = (rank_ + size_ - 1) % size_;
  auto mod = [this](int v) { return ((v % size_) + size_) % size_; };
  auto len = [&](int c) { return static_cast<int>(chunk_begin(c + 1, n) - chunk_begin(c, n)); };
  constexpr int kTag = 0x52;

  for (int s = 0; s < size_ - 1; ++s) {  // reduce-scatter
    const int send = mod(rank_ - s), recv = mod(rank_ - s - 1);
    check_mpi(MPI_Sendrecv(data + chunk_begin(send, n), len(send), MPI_FLOAT, right, kTag,
                           scratch_.data(), len(recv), MPI_FLOAT, left, kTag, comm_,
                           MPI_STATUS_IGNORE),
              "MPI_Sendrecv (ring reduce-scatter)");
    float* dst = data + chunk_begin(recv, n);
    const float* src = scratch_.data();
    const int count = len(recv);
    for (int i = 0; i < count; ++i) dst[i] += src[i];  // vectorised at -O3 -march=native
  }
  for (int s = 0; s < size_ - 1; ++s) {  // all-gather
    const int send = mod(rank_ + 1 - s), recv = mod(rank_ - s);
    check_mpi(MPI_Sendrecv(data + chunk_begin(send, n), len(send), MPI_FLOAT, right, kTag,
                           data + chunk_begin(recv, n), len(recv), MPI_FLOAT, left, kTag, comm_,
                           MPI_STATUS_IGNORE),
              "MPI_Sendrecv (ring all-gather)");
  }
}

}  // namespace ringtrain

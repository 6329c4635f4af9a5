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

void RingAllreduce::exchange(const void* send, int send_count, void* recv, int recv_count, MPI_Datatype type,
                             const char* what) {
  constexpr int kTag = 0x52;
  MPI_Request reqs[2];
  check_mpi(MPI_Irecv(recv, recv_count, type, left_, kTag, comm_, &reqs[0]), what);
  check_mpi(MPI_Isend(send, send_count, type, right_, kTag, comm_, &reqs[1]), what);
  if (watchdog_) {
    watchdog_->wait(2, reqs, what);
  } else {
    check_mpi(MPI_Waitall(2, reqs, MPI_STATUSES_IGNORE), what);
  }
}

void RingAllreduce::reserve(std::size_t n, WireFormat wire) {
  const std::size_t chunk = (n + size_ - 1) / size_;
  if (wire == WireFormat::kFp32) {
    if (scratch_.size() < chunk) scratch_.assign(chunk, 0.0f);
    return;
  }
  if (wire_.size() < n) wire_.assign(n, 0);
  if (wire_scratch_.size() < chunk) wire_scratch_.assign(chunk, 0);
}

std::size_t RingAllreduce::chunk_begin(int c, std::size_t n) const {
  const std::size_t base = n / size_, extra = n % size_;
  return c * base + std::min<std::size_t>(c, extra);
}

void RingAllreduce::run(float* data, std::size_t n, WireFormat wire) {
  if (size_ == 1 || n == 0) return;
  if (wire != WireFormat::kFp32) return run_compressed(data, n, wire);
  reserve(n);  // no-op once reserved for this size
  auto mod = [this](int v) { return ((v % size_) + size_) % size_; };
  auto len = [&](int c) { return static_cast<int>(chunk_begin(c + 1, n) - chunk_begin(c, n)); };

  for (int s = 0; s < size_ - 1; ++s) {  // reduce-scatter
    const int send = mod(rank_ - s), recv = mod(rank_ - s - 1);
    exchange(data + chunk_begin(send, n), len(send), scratch_.data(), len(recv), MPI_FLOAT,
             "the ring all-reduce (reduce-scatter)");
    float* dst = data + chunk_begin(recv, n);
    const float* src = scratch_.data();
    const int count = len(recv);
    for (int i = 0; i < count; ++i) dst[i] += src[i];  // vectorised at -O3 -march=native
  }
  for (int s = 0; s < size_ - 1; ++s) {  // all-gather
    const int send = mod(rank_ + 1 - s), recv = mod(rank_ - s);
    exchange(data + chunk_begin(send, n), len(send), data + chunk_begin(recv, n), len(recv), MPI_FLOAT,
             "the ring all-reduce (all-gather)");
  }
}

void RingAllreduce::run_compressed(float* data, std::size_t n, WireFormat wire) {
  reserve(n, wire);  // no-op once reserved for this size
  auto mod = [this](int v) { return ((v % size_) + size_) % size_; };
  auto len = [&](int c) { return chunk_begin(c + 1, n) - chunk_begin(c, n); };
  uint16_t* packed = wire_.data();  // chunk c's 16 bits at packed + chunk_begin(c, n)
  for (int s = 0; s < size_ - 1; ++s) {  // reduce-scatter: send the rounded partial sum
    const int send = mod(rank_ - s), recv = mod(rank_ - s - 1);
    const std::size_t sb = chunk_begin(send, n);
    pack_wire(wire, data + sb, packed + sb, len(send));
    exchange(packed + sb, int(len(send)), wire_scratch_.data(), int(len(recv)), MPI_UINT16_T,
             "the ring all-reduce (reduce-scatter)");
    unpack_add_wire(wire, wire_scratch_.data(), data + chunk_begin(recv, n), len(recv));
  }
  // This rank's finished chunk: keep exactly what the others will receive.
  const int own = mod(rank_ + 1);
  const std::size_t ob = chunk_begin(own, n);
  pack_wire(wire, data + ob, packed + ob, len(own));
  unpack_wire(wire, packed + ob, data + ob, len(own));
  for (int s = 0; s < size_ - 1; ++s) {  // all-gather of the 16-bit patterns
    const int send = mod(rank_ + 1 - s), recv = mod(rank_ - s);
    const std::size_t rb = chunk_begin(recv, n);
    exchange(packed + chunk_begin(send, n), int(len(send)), packed + rb, int(len(recv)), MPI_UINT16_T,
             "the ring all-reduce (all-gather)");
    unpack_wire(wire, packed + rb, data + rb, len(recv));
  }
}

}  // namespace ringtrain

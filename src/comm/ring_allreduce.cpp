// Ring reduce-scatter + all-gather (see ring_allreduce.hpp).
#include "ringtrain/comm/ring_allreduce.hpp"

#include "ringtrain/comm/mpi_helpers.hpp"
#include "ringtrain/util/error.hpp"

namespace ringtrain {

RingAllreduce::RingAllreduce(MPI_Comm comm, Watchdog* watchdog, std::size_t segment)
    : comm_(comm), watchdog_(watchdog), segment_(std::max<std::size_t>(segment, 1)) {
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
  wait_all(watchdog_, 2, reqs, what);
}

void RingAllreduce::reserve(std::size_t n, WireFormat wire) {
  const std::size_t chunk = (n + size_ - 1) / size_;
  if (wire == WireFormat::kFp32) {
    if (scratch_.size() < chunk) scratch_.assign(chunk, 0.0f);
    const std::size_t segments = 2 * ((chunk + segment_ - 1) / segment_);  // receives, then sends
    if (requests_.size() < segments) requests_.assign(segments, MPI_REQUEST_NULL);
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
  reduce_scatter(data, n);
  allgather(data, n);
}

// After p - 1 reduce-scatter steps rank r holds the sum of chunk r + 1.
std::pair<std::size_t, std::size_t> RingAllreduce::owned(std::size_t n) const {
  const int own = (rank_ + 1) % size_;
  return {chunk_begin(own, n), chunk_begin(own + 1, n)};
}

void RingAllreduce::reduce_scatter(float* data, std::size_t n) {
  if (size_ == 1 || n == 0) return;
  reserve(n);  // no-op once reserved for this size
  auto mod = [this](int v) { return ((v % size_) + size_) % size_; };
  auto len = [&](int c) { return chunk_begin(c + 1, n) - chunk_begin(c, n); };
  for (int s = 0; s < size_ - 1; ++s) {  // pipelined in segments
    const int send = mod(rank_ - s), recv = mod(rank_ - s - 1);
    reduce_step(data + chunk_begin(send, n), len(send), data + chunk_begin(recv, n), len(recv));
  }
}

void RingAllreduce::allgather(float* data, std::size_t n) {
  if (size_ == 1 || n == 0) return;
  auto mod = [this](int v) { return ((v % size_) + size_) % size_; };
  auto len = [&](int c) { return static_cast<int>(chunk_begin(c + 1, n) - chunk_begin(c, n)); };
  for (int s = 0; s < size_ - 1; ++s) {
    const int send = mod(rank_ + 1 - s), recv = mod(rank_ - s);
    exchange(data + chunk_begin(send, n), len(send), data + chunk_begin(recv, n), len(recv), MPI_FLOAT,
             "the ring all-reduce (all-gather)");
  }
}

void RingAllreduce::reduce_step(const float* send, std::size_t send_n, float* dst, std::size_t recv_n) {
  constexpr int kTag = 0x53;
  constexpr const char* what = "the ring all-reduce (reduce-scatter)";
  // Both sides cut a chunk the same way (the chunk's length decides), and
  // messages of one pair and tag arrive in order, so segment k meets segment
  // k. Two segments are in flight each way: while segment k is added, k + 1
  // travels (more at once made Open MPI's shared-memory transport slower).
  const std::size_t rsegs = (recv_n + segment_ - 1) / segment_, ssegs = (send_n + segment_ - 1) / segment_;
  MPI_Request* recvs = requests_.data();
  MPI_Request* sends = recvs + rsegs;
  float* scratch = scratch_.data();
  auto post_recv = [&](std::size_t k) {
    const std::size_t b = k * segment_, e = std::min(recv_n, b + segment_);
    check_mpi(MPI_Irecv(scratch + b, int(e - b), MPI_FLOAT, left_, kTag, comm_, &recvs[k]), what);
  };
  auto post_send = [&](std::size_t k) {
    const std::size_t b = k * segment_, e = std::min(send_n, b + segment_);
    check_mpi(MPI_Isend(send + b, int(e - b), MPI_FLOAT, right_, kTag, comm_, &sends[k]), what);
  };
  constexpr std::size_t kInFlight = 2;
  for (std::size_t k = 0; k < std::min(kInFlight, rsegs); ++k) post_recv(k);
  for (std::size_t k = 0; k < std::min(kInFlight, ssegs); ++k) post_send(k);
  for (std::size_t k = 0; k < std::max(rsegs, ssegs); ++k) {
    if (k < ssegs) {
      wait_all(watchdog_, 1, &sends[k], what);
      if (k + kInFlight < ssegs) post_send(k + kInFlight);
    }
    if (k < rsegs) {
      wait_all(watchdog_, 1, &recvs[k], what);
      if (k + kInFlight < rsegs) post_recv(k + kInFlight);
      const std::size_t b = k * segment_, e = std::min(recv_n, b + segment_);
      add_into(dst + b, scratch + b, e - b);
    }
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

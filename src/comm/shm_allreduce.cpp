// Shared-memory all-reduce on one node (see shm_allreduce.hpp).
#include "ringtrain/comm/shm_allreduce.hpp"

#include <algorithm>
#include <cstring>

#include "ringtrain/comm/communicator.hpp"     // CollectiveError
#include "ringtrain/comm/ring_allreduce.hpp"  // check_mpi
#include "ringtrain/util/error.hpp"

namespace ringtrain {

namespace {

// [begin, end) of part `i` of `n` elements cut into `parts` (the first n mod
// parts one longer), as the ring cuts its chunks.
std::size_t part_begin(std::size_t i, std::size_t n, std::size_t parts) {
  return i * (n / parts) + std::min(i, n % parts);
}

// A shared window of `floats` per rank (each rank's on its own pages), its
// passive-target epoch opened, and every rank's base as mapped here.
MPI_Win allocate_window(MPI_Comm comm, std::size_t floats, std::vector<float*>& bases) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  MPI_Info info;
  MPI_Info_create(&info);
  MPI_Info_set(info, "alloc_shared_noncontig", "true");
  float* mine = nullptr;
  MPI_Win win = MPI_WIN_NULL;
  const int rc = MPI_Win_allocate_shared(MPI_Aint(floats * sizeof(float)), int(sizeof(float)), info, comm, &mine, &win);
  MPI_Info_free(&info);
  check_mpi(rc, "MPI_Win_allocate_shared");
  bases.assign(std::size_t(size), nullptr);
  for (int q = 0; q < size; ++q) {
    MPI_Aint bytes = 0;
    int unit = 0;
    check_mpi(MPI_Win_shared_query(win, q, &bytes, &unit, &bases[std::size_t(q)]), "MPI_Win_shared_query");
  }
  // Passive-target epoch for the window's whole life; MPI_Win_sync orders the
  // plain loads and stores around each barrier.
  check_mpi(MPI_Win_lock_all(MPI_MODE_NOCHECK, win), "MPI_Win_lock_all");
  std::fill(mine, mine + floats, 0.0f);  // touch every page now, not in a step
  return win;
}

void free_shared_window(MPI_Win& win) {
  if (win == MPI_WIN_NULL) return;
  MPI_Win_unlock_all(win);
  MPI_Win_free(&win);
}

}  // namespace

bool ShmAllreduce::single_node(MPI_Comm comm) {
  MPI_Comm node = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node), "MPI_Comm_split_type");
  int node_size = 0, size = 0;
  MPI_Comm_size(node, &node_size);
  MPI_Comm_size(comm, &size);
  MPI_Comm_free(&node);
  // Every rank must decide alike: one node for some and not others cannot be.
  int all = node_size == size ? 1 : 0;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce");
  return all == 1;
}

ShmAllreduce::ShmAllreduce(MPI_Comm comm, Watchdog* watchdog, std::size_t block)
    : watchdog_(watchdog), block_(std::max<std::size_t>(block, 1)) {
  if (!single_node(comm))
    throw CollectiveError("comm.algorithm=shm needs every rank on one node; across nodes use ring", kExitUsage);
  // Ranks in the order of `comm` (key 0 keeps it), so slice r is rank r's.
  check_mpi(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &comm_), "MPI_Comm_split_type");
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

ShmAllreduce::~ShmAllreduce() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  free_data_window();
  free_window();
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void ShmAllreduce::free_window() {
  free_shared_window(win_);
  slots_.clear();
  half_ = next_half_ = 0;
}

void ShmAllreduce::free_data_window() {
  free_shared_window(data_win_);
  data_slots_.clear();
  data_n_ = 0;
}

void ShmAllreduce::reserve(std::size_t n) {
  const std::size_t want = std::min(n, block_);
  if (size_ == 1 || want <= half_) return;
  free_window();
  win_ = allocate_window(comm_, 2 * want, slots_);
  half_ = want;
  barrier("the shared-memory all-reduce (set-up)");
}

float* ShmAllreduce::shared_buffer(std::size_t n) {
  free_data_window();
  data_win_ = allocate_window(comm_, std::max<std::size_t>(n, 1), data_slots_);
  data_n_ = n;
  barrier("the shared-memory all-reduce (set-up)");
  return data_slots_[std::size_t(rank_)];
}

void ShmAllreduce::barrier(const char* what) {
  for (MPI_Win w : {win_, data_win_})
    if (w != MPI_WIN_NULL) check_mpi(MPI_Win_sync(w), "MPI_Win_sync");
  MPI_Request req;
  check_mpi(MPI_Ibarrier(comm_, &req), what);
  if (watchdog_) {
    watchdog_->wait(1, &req, what);
  } else {
    check_mpi(MPI_Wait(&req, MPI_STATUS_IGNORE), what);
  }
  for (MPI_Win w : {win_, data_win_})
    if (w != MPI_WIN_NULL) check_mpi(MPI_Win_sync(w), "MPI_Win_sync");
}

void ShmAllreduce::run(float* data, std::size_t n) {
  if (size_ == 1 || n == 0) return;
  if (!data_slots_.empty() && data == data_slots_[std::size_t(rank_)] && n <= data_n_) return run_in_place(n);
  run_staged(data, n);
}

void ShmAllreduce::run_in_place(std::size_t n) {
  const std::size_t p = std::size_t(size_), r = std::size_t(rank_);
  barrier("the shared-memory all-reduce (inputs ready)");
  // Slice r, in rank order 0, 1, ..., p-1 as the staged path sums it, a
  // small piece at a time: this rank's own values are read (as rank r's
  // term) before the piece is overwritten with the sum.
  const std::size_t b = part_begin(r, n, p), e = part_begin(r + 1, n, p);
  float* own = data_slots_[r];
  constexpr std::size_t kPiece = 1024;
  alignas(64) float acc[kPiece];
  for (std::size_t at = b; at < e; at += kPiece) {
    const std::size_t len = std::min(kPiece, e - at);
    std::memcpy(acc, data_slots_[0] + at, len * sizeof(float));
    for (std::size_t q = 1; q < p; ++q) {
      const float* __restrict src = data_slots_[q] + at;
      for (std::size_t i = 0; i < len; ++i) acc[i] += src[i];  // vectorised at -O3 -march=native
    }
    std::memcpy(own + at, acc, len * sizeof(float));
  }
  barrier("the shared-memory all-reduce (sum)");
  for (std::size_t q = 0; q < p; ++q) {
    const std::size_t qb = part_begin(q, n, p), qe = part_begin(q + 1, n, p);
    if (q != r) std::memcpy(own + qb, data_slots_[q] + qb, (qe - qb) * sizeof(float));
  }
  // Nobody may write its buffer again (the next backward) while another rank
  // still copies from it.
  barrier("the shared-memory all-reduce (copy-out)");
}

void ShmAllreduce::run_staged(float* data, std::size_t n) {
  reserve(n);  // no-op once reserved for this size
  const std::size_t p = std::size_t(size_), r = std::size_t(rank_);
  for (std::size_t at = 0; at < n; at += half_, next_half_ ^= 1) {
    const std::size_t len = std::min(half_, n - at), off = next_half_ * half_;
    std::memcpy(slots_[r] + off, data + at, len * sizeof(float));
    barrier("the shared-memory all-reduce (copy-in)");
    // Slice r, summed in rank order into this rank's slot: start from rank
    // 0's values, then add ranks 1..p-1 (this rank's own from `data`: its
    // slot's copy of them has just been replaced by rank 0's).
    const std::size_t b = part_begin(r, len, p), e = part_begin(r + 1, len, p);
    float* __restrict acc = slots_[r] + off;
    if (r != 0) std::memcpy(acc + b, slots_[0] + off + b, (e - b) * sizeof(float));
    for (std::size_t q = 1; q < p; ++q) {
      const float* __restrict add = q == r ? data + at : slots_[q] + off;
      for (std::size_t i = b; i < e; ++i) acc[i] += add[i];  // vectorised at -O3 -march=native
    }
    barrier("the shared-memory all-reduce (sum)");
    for (std::size_t q = 0; q < p; ++q) {
      const std::size_t qb = part_begin(q, len, p), qe = part_begin(q + 1, len, p);
      std::memcpy(data + at + qb, slots_[q] + off + qb, (qe - qb) * sizeof(float));
    }
  }
}

}  // namespace ringtrain

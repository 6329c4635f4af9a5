// Shared-memory all-reduce on one node (see shm_allreduce.hpp).
#include "ringtrain/comm/shm_allreduce.hpp"

#include <sys/statvfs.h>

#include <algorithm>
#include <cstring>

#include "ringtrain/comm/communicator.hpp"    // CollectiveError
#include "ringtrain/comm/mpi_helpers.hpp"
#include "ringtrain/util/error.hpp"

namespace ringtrain {

namespace {

// Begin of part `i` of `n` elements cut into `parts`, each a whole number of
// 64-byte cache lines (16 floats) but the last: two ranks never write one
// line, and every slice starts aligned (an odd split, as the default model's
// 235146 floats give, measured 30% slower).
std::size_t part_begin(std::size_t i, std::size_t n, std::size_t parts) {
  constexpr std::size_t kLine = 16;
  const std::size_t per = (n + parts * kLine - 1) / (parts * kLine) * kLine;
  return std::min(i * per, n);
}

// Collective: refuses, on every rank alike, a window that /dev/shm (where
// Open MPI puts it) has no room for. tmpfs grants the mapping anyway and the
// first write to a page past its size kills the rank with SIGBUS.
void check_room(MPI_Comm comm, std::size_t bytes_per_rank, int size, double margin = 16 << 20) {
  struct statvfs fs {};
  double free_bytes = -1;  // unknown: no /dev/shm
  if (::statvfs("/dev/shm", &fs) == 0) free_bytes = double(fs.f_bavail) * double(fs.f_frsize);
  const double need = double(bytes_per_rank) * size;
  int ok = free_bytes < 0 || need + margin <= free_bytes ? 1 : 0;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce");
  if (!ok)
    throw CollectiveError(str_cat("the shared-memory all-reduce (comm.algorithm=shm or hierarchical) needs ",
                                  int64_t(need / 1048576), " MiB in /dev/shm on this node and leaves 16 MiB free; ",
                                  int64_t(std::max(free_bytes, 0.0) / 1048576),
                                  " MiB are free (enlarge /dev/shm, or use comm.algorithm=ring or auto)"),
                          kExitRuntime);
}

// A shared window of `floats` per rank (each rank's on its own pages), its
// passive-target epoch opened, and every rank's base as mapped here.
MPI_Win allocate_window(MPI_Comm comm, std::size_t floats, std::vector<float*>& bases,
                        double margin = 16 << 20) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  check_room(comm, floats * sizeof(float), size, margin);
  MPI_Info info;
  MPI_Info_create(&info);
  MPI_Info_set(info, "alloc_shared_noncontig", "true");
  float* mine = nullptr;
  MPI_Win win = MPI_WIN_NULL;
  const int rc = MPI_Win_allocate_shared(MPI_Aint(floats * sizeof(float)), int(sizeof(float)), info, comm, &mine, &win);
  MPI_Info_free(&info);
  check_mpi(rc, "MPI_Win_allocate_shared");
  MPI_Win_set_errhandler(win, MPI_ERRORS_RETURN);  // errors reach check_mpi
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

// Slice [b, e) of every rank's buffer (at offset `off`), summed in rank
// order 0, 1, ..., p-1 into rank r's: a small piece at a time, so that rank
// r's own term is read before its piece is overwritten with the sum.
void sum_slice(const std::vector<float*>& slots, std::size_t r, std::size_t off, std::size_t b, std::size_t e) {
  constexpr std::size_t kPiece = 1024;
  alignas(64) float acc[kPiece];
  for (std::size_t at = off + b; at < off + e; at += kPiece) {
    const std::size_t len = std::min(kPiece, off + e - at);
    std::memcpy(acc, slots[0] + at, len * sizeof(float));
    for (std::size_t q = 1; q < slots.size(); ++q) {
      const float* __restrict src = slots[q] + at;
      for (std::size_t i = 0; i < len; ++i) acc[i] += src[i];  // vectorised at -O3 -march=native
    }
    std::memcpy(slots[r] + at, acc, len * sizeof(float));
  }
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
    throw CollectiveError("comm.algorithm=shm needs every rank on one node; across nodes use auto or hierarchical", kExitUsage);
  // Ranks in the order of `comm` (key 0 keeps it), so slice r is rank r's.
  check_mpi(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &comm_), "MPI_Comm_split_type");
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  if (size_ == 1) return;
  // The barrier lines: a page per rank, all the room they need. The window
  // gives 8-byte alignment only; each line starts at the next cache line
  // (the same offset in every process: mappings are page-aligned).
  std::vector<float*> bases;
  constexpr std::size_t kLine = 64;
  static_assert(sizeof(BarrierLine) <= kLine, "one cache line per rank");
  try {
    ctl_win_ = allocate_window(comm_, 2 * kLine / sizeof(float), bases, 0);
  } catch (...) {
    MPI_Comm_free(&comm_);
    throw;
  }
  for (float* b : bases) {  // zeroed: epoch 0
    const auto at = (reinterpret_cast<std::uintptr_t>(b) + kLine - 1) / kLine * kLine;
    lines_.push_back(reinterpret_cast<BarrierLine*>(at));
  }
  MPI_Request req;  // every line zeroed before anyone counts on it
  check_mpi(MPI_Ibarrier(comm_, &req), "MPI_Ibarrier");
  wait_all(watchdog_, 1, &req, "the shared-memory all-reduce (set-up)");
}

ShmAllreduce::~ShmAllreduce() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  free_data_windows();
  free_window();
  free_shared_window(ctl_win_);
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void ShmAllreduce::free_window() {
  free_shared_window(win_);
  slots_.clear();
  half_ = next_half_ = 0;
}

void ShmAllreduce::free_data_windows() {
  for (DataWindow& d : data_) free_shared_window(d.win);
  data_.clear();
}

void ShmAllreduce::reserve(std::size_t n) {
  const std::size_t want = std::min(n, block_);
  if (size_ == 1 || want <= half_) return;
  // Peers may still be copying out of the old window: MPI_Win_free waits for
  // every rank (it has barrier semantics unless no_locks is set).
  free_window();
  win_ = allocate_window(comm_, 2 * want, slots_);
  half_ = want;
  barrier("the shared-memory all-reduce (set-up)");
}

float* ShmAllreduce::shared_buffer(std::size_t n) {
  if (size_ == 1) return nullptr;  // nothing to share: any memory will do
  DataWindow d;
  d.win = allocate_window(comm_, std::max<std::size_t>(n, 1), d.slots);
  d.n = n;
  data_.push_back(std::move(d));
  barrier("the shared-memory all-reduce (set-up)");
  return data_.back().slots[std::size_t(rank_)];
}

bool ShmAllreduce::all_arrived(const void* self) {
  const auto* me = static_cast<const ShmAllreduce*>(self);
  for (const BarrierLine* line : me->lines_)
    if (__atomic_load_n(&line->epoch, __ATOMIC_ACQUIRE) < me->epoch_) return false;
  return true;
}

// The barrier, which also checks that every rank took the same path: a rank
// in place and another staged would pair barriers of different steps and sum
// garbage. The release store of the epoch publishes everything this rank
// wrote before it (its slots, its path); the acquire loads in all_arrived()
// make every rank's writes visible after it. A rank can be one barrier ahead
// of another, never two, so the path slot of the last two barriers is safe.
void ShmAllreduce::agree(int64_t path, const char* what) {
  if (size_ == 1) return;
  ++epoch_;
  BarrierLine* mine = lines_[std::size_t(rank_)];
  mine->path[epoch_ & 1] = path;
  __atomic_store_n(&mine->epoch, epoch_, __ATOMIC_RELEASE);
  wait_until(watchdog_, all_arrived, this, what);
  for (const BarrierLine* line : lines_)
    if (line->path[epoch_ & 1] != path)
      throw RuntimeError(
          "the shared-memory all-reduce: some ranks passed their shared buffer, others other memory or another "
          "part of it");
}

const ShmAllreduce::DataWindow* ShmAllreduce::find_shared(const float* data, std::size_t n,
                                                           std::size_t& offset) const {
  for (const DataWindow& d : data_) {
    const float* own = d.slots[std::size_t(rank_)];
    if (data >= own && data < own + d.n && n <= d.n - std::size_t(data - own)) {
      offset = std::size_t(data - own);
      return &d;
    }
  }
  return nullptr;
}

void ShmAllreduce::run(float* data, std::size_t n) {
  if (size_ == 1 || n == 0) return;
  // In place when [data, data + n) lies in this rank's buffer of a shared
  // window (a bucket of the trainer's gradients is a part of it).
  std::size_t offset = 0;
  const DataWindow* shared = find_shared(data, n, offset);
  // First of all, before any collective of one path only: in place, this
  // is also the barrier after which every rank's inputs are ready. Every
  // rank must name the same part of the same window.
  const int64_t path = shared ? kInPlace + 2 * int64_t(offset) : kStaged;
  agree(path, "the shared-memory all-reduce (inputs ready)");
  if (shared) return run_in_place(shared->slots, offset, n);
  run_staged(data, n);
}

std::pair<std::size_t, std::size_t> ShmAllreduce::owned(std::size_t n) const {
  const std::size_t p = std::size_t(size_), r = std::size_t(rank_);
  return {part_begin(r, n, p), part_begin(r + 1, n, p)};
}

void ShmAllreduce::reduce_scatter(float* data, std::size_t n) {
  if (size_ == 1 || n == 0) return;
  std::size_t offset = 0;
  const DataWindow* shared = find_shared(data, n, offset);
  agree(shared ? kInPlace + 2 * int64_t(offset) : kStaged, "the shared-memory reduce-scatter (inputs ready)");
  if (!shared) return run_staged(data, n);
  const auto [b, e] = owned(n);
  sum_slice(shared->slots, std::size_t(rank_), offset, b, e);
  // Nobody may write its buffer again (the next backward) while another rank
  // still sums from it.
  barrier("the shared-memory reduce-scatter (sum)");
}

void ShmAllreduce::allgather(float* data, std::size_t n, float* scratch) {
  if (size_ == 1 || n == 0) return;
  const std::size_t p = std::size_t(size_), r = std::size_t(rank_);
  std::size_t offset = 0;
  const DataWindow* shared = find_shared(scratch, n, offset);
  const auto [ob, oe] = owned(n);
  if (shared && scratch != data) std::memcpy(scratch + ob, data + ob, (oe - ob) * sizeof(float));
  // Also the barrier after which every rank's slice is in its buffer.
  agree(shared ? kInPlace + 2 * int64_t(offset) : kStaged, "the shared-memory all-gather (slices ready)");
  if (shared) {
    for (std::size_t q = 0; q < p; ++q) {
      const std::size_t qb = part_begin(q, n, p), qe = part_begin(q + 1, n, p);
      if (q != r) std::memcpy(data + qb, shared->slots[q] + offset + qb, (qe - qb) * sizeof(float));
    }
    barrier("the shared-memory all-gather (copy-out)");
    return;
  }
  // Through the staging halves, a block at a time: each rank puts its part
  // of the block in its slot, and after the barrier takes the others'. A
  // half is written again two blocks later, after a barrier every rank
  // passes only once it has copied this block out.
  reserve(n);
  for (std::size_t at = 0; at < n; at += half_, next_half_ ^= 1) {
    const std::size_t len = std::min(half_, n - at), off = next_half_ * half_;
    const std::size_t mb = std::max(ob, at), me = std::min(oe, at + len);
    if (mb < me) std::memcpy(slots_[r] + off + (mb - at), data + mb, (me - mb) * sizeof(float));
    barrier("the shared-memory all-gather (block ready)");
    for (std::size_t q = 0; q < p; ++q) {
      const std::size_t qb = std::max(part_begin(q, n, p), at), qe = std::min(part_begin(q + 1, n, p), at + len);
      if (q != r && qb < qe) std::memcpy(data + qb, slots_[q] + off + (qb - at), (qe - qb) * sizeof(float));
    }
  }
}

void ShmAllreduce::run_in_place(const std::vector<float*>& slots, std::size_t offset, std::size_t n) {
  const std::size_t p = std::size_t(size_), r = std::size_t(rank_);
  sum_slice(slots, r, offset, part_begin(r, n, p), part_begin(r + 1, n, p));
  barrier("the shared-memory all-reduce (sum)");
  float* own = slots[r] + offset;
  for (std::size_t q = 0; q < p; ++q) {
    const std::size_t qb = part_begin(q, n, p), qe = part_begin(q + 1, n, p);
    if (q != r) std::memcpy(own + qb, slots[q] + offset + qb, (qe - qb) * sizeof(float));
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
    sum_slice(slots_, r, off, part_begin(r, len, p), part_begin(r + 1, len, p));
    barrier("the shared-memory all-reduce (sum)");
    for (std::size_t q = 0; q < p; ++q) {
      const std::size_t qb = part_begin(q, len, p), qe = part_begin(q + 1, len, p);
      std::memcpy(data + at + qb, slots_[q] + off + qb, (qe - qb) * sizeof(float));
    }
  }
}

}  // namespace ringtrain

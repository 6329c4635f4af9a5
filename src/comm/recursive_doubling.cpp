// Recursive-doubling all-reduce (see recursive_doubling.hpp).
#include "ringtrain/comm/recursive_doubling.hpp"

#include <limits>

#include "ringtrain/comm/mpi_helpers.hpp"
#include "ringtrain/util/error.hpp"

namespace ringtrain {

namespace {
constexpr int kTag = 0x54;
constexpr const char* kWhat = "the recursive-doubling all-reduce";
}  // namespace

RecursiveDoubling::RecursiveDoubling(MPI_Comm comm, Watchdog* watchdog) : comm_(comm), watchdog_(watchdog) {
  check_mpi(MPI_Comm_rank(comm, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm, &size_), "MPI_Comm_size");
}

void RecursiveDoubling::reserve(std::size_t n) {
  if (size_ > 1 && scratch_.size() < n) scratch_.assign(n, 0.0f);
}

void RecursiveDoubling::run(float* data, std::size_t n) {
  if (size_ == 1 || n == 0) return;
  RT_CHECK(n <= std::size_t(std::numeric_limits<int>::max()), "recursive doubling: ", n, " floats is too many");
  reserve(n);  // no-op once reserved for this size
  const int count = int(n);
  int pow2 = 1;
  while (pow2 * 2 <= size_) pow2 *= 2;
  const int extra = size_ - pow2;
  MPI_Request reqs[2];
  // Fold the first 2 * extra ranks in pairs: the even one sits out.
  int vrank;  // rank among the pow2 ranks that take part, or -1
  if (rank_ < 2 * extra) {
    if (rank_ % 2 == 0) {
      check_mpi(MPI_Isend(data, count, MPI_FLOAT, rank_ + 1, kTag, comm_, &reqs[0]), kWhat);
      wait_all(watchdog_, 1, reqs, kWhat);
      vrank = -1;
    } else {
      check_mpi(MPI_Irecv(scratch_.data(), count, MPI_FLOAT, rank_ - 1, kTag, comm_, &reqs[0]), kWhat);
      wait_all(watchdog_, 1, reqs, kWhat);
      add_into(data, scratch_.data(), n);
      vrank = rank_ / 2;
    }
  } else {
    vrank = rank_ - extra;
  }
  if (vrank >= 0) {
    for (int mask = 1; mask < pow2; mask <<= 1) {
      const int vpeer = vrank ^ mask;
      const int peer = vpeer < extra ? 2 * vpeer + 1 : vpeer + extra;
      check_mpi(MPI_Irecv(scratch_.data(), count, MPI_FLOAT, peer, kTag, comm_, &reqs[0]), kWhat);
      check_mpi(MPI_Isend(data, count, MPI_FLOAT, peer, kTag, comm_, &reqs[1]), kWhat);
      wait_all(watchdog_, 2, reqs, kWhat);
      add_into(data, scratch_.data(), n);  // partners: same two values, same bits
    }
  }
  // Hand the result back to the ranks that sat out.
  if (rank_ < 2 * extra) {
    if (rank_ % 2 == 0) {
      check_mpi(MPI_Irecv(data, count, MPI_FLOAT, rank_ + 1, kTag, comm_, &reqs[0]), kWhat);
    } else {
      check_mpi(MPI_Isend(data, count, MPI_FLOAT, rank_ - 1, kTag, comm_, &reqs[0]), kWhat);
    }
    wait_all(watchdog_, 1, reqs, kWhat);
  }
}

}  // namespace ringtrain

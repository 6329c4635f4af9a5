// The checks every float all-reduce of comm/ must pass, against MPI_Allreduce
// (the reference) on the world size this process was launched with (CTest
// runs 1 to 5 ranks), for the lengths that break naive chunking: 0, 1, p-1,
// p, p+1, a prime, and a large one. `Algo` has run(float*, n) and reserve(n).
#pragma once

#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

namespace ringtrain::test {

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int world_size() {
  int s = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

// Up to `max_n` (tiny blocks make a barrier per few floats: keep them short).
inline std::vector<std::size_t> interesting_lengths(std::size_t max_n = std::size_t(-1)) {
  const std::size_t p = std::size_t(world_size());
  std::vector<std::size_t> out;
  for (std::size_t n : {std::size_t(0), std::size_t(1), p > 1 ? p - 1 : 0, p, p + 1, 2 * p + 1, std::size_t(97),
                        std::size_t(1009), std::size_t(65537), std::size_t((1u << 20) + 3)})
    if (n <= max_n) out.push_back(n);
  return out;
}

// True on every rank iff `ok` holds on every rank.
inline bool all_ranks(bool ok) {
  int v = ok ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return v == 1;
}

// Integer-valued floats: exact in any summation order, so equal to MPI's.
template <class Algo>
void check_equals_mpi_allreduce(Algo& algo, std::size_t max_n = std::size_t(-1)) {
  const int rank = world_rank();
  for (const std::size_t n : interesting_lengths(max_n)) {
    CAPTURE(n);
    std::vector<float> ours(n), ref(n);
    for (std::size_t i = 0; i < n; ++i)
      ours[i] = ref[i] = float(int((i * 7919 + std::size_t(rank) * 104729) % 2001) - 1000);
    algo.run(ours.data(), n);
    MPI_Allreduce(MPI_IN_PLACE, ref.data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    const bool same = n == 0 || std::memcmp(ours.data(), ref.data(), n * sizeof(float)) == 0;
    CHECK(all_ranks(same));
  }
}

// Random floats: every rank ends with the same bits, close to the exact sum.
template <class Algo>
void check_bit_identical_on_every_rank(Algo& algo, std::size_t max_n = std::size_t(-1)) {
  const int rank = world_rank();
  std::mt19937 gen(1234u + unsigned(rank));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const std::size_t n : interesting_lengths(max_n)) {
    CAPTURE(n);
    std::vector<float> data(n);
    for (auto& v : data) v = dist(gen) * 1e3f;
    std::vector<double> exact(n);  // double-precision sum as a sanity bound
    for (std::size_t i = 0; i < n; ++i) exact[i] = data[i];
    MPI_Allreduce(MPI_IN_PLACE, exact.data(), int(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    algo.run(data.data(), n);
    std::vector<float> root = data;
    if (n) MPI_Bcast(root.data(), int(n), MPI_FLOAT, 0, MPI_COMM_WORLD);
    CHECK(all_ranks(n == 0 || std::memcmp(root.data(), data.data(), n * sizeof(float)) == 0));
    double worst = 0;
    for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(data[i] - exact[i]));
    CHECK(worst < 1e-2);  // p additions of values below 1e3 in float
  }
}

// The same input twice gives the same bits (no state leaks between calls).
template <class Algo>
void check_deterministic(Algo& algo, std::size_t n = 10007) {
  const int rank = world_rank();
  algo.reserve(n);
  std::vector<float> first, second;
  for (auto* out : {&first, &second}) {
    std::mt19937 gen(99u + unsigned(rank));
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    out->resize(n);
    for (auto& v : *out) v = dist(gen);
    algo.run(out->data(), n);
  }
  CHECK(all_ranks(std::memcmp(first.data(), second.data(), n * sizeof(float)) == 0));
}

// A `buffer(n)` for check_halves_equal_run: ordinary memory, `storage`
// resized and zeroed for every length.
inline auto heap_buffer(std::vector<float>& storage) {
  return [&storage](std::size_t n) {
    storage.assign(n + 1, 0.0f);
    return storage.data();
  };
}

// run()'s two halves, for the sharded optimizer: after reduce_scatter(data,
// n) this rank's owned(n) holds the bits run() gives there; the ranks' owned
// parts cut [0, n) without gaps or overlaps; allgather(data) (a callable:
// the algorithms differ in what else it takes) fills in the rest from the
// owners, whatever the rest held before. `buffer(n)`: where the data lives.
template <class Algo, class Buffer, class Allgather>
void check_halves_equal_run(Algo& algo, Buffer buffer, Allgather allgather,
                            std::size_t max_n = std::size_t(-1)) {
  const int rank = world_rank(), p = world_size();
  std::mt19937 gen(4321u + unsigned(rank));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const std::size_t n : interesting_lengths(max_n)) {
    CAPTURE(n);
    float* data = buffer(n);
    std::vector<float> ref(n);
    for (std::size_t i = 0; i < n; ++i) data[i] = ref[i] = dist(gen) * 1e3f;
    algo.run(ref.data(), n);
    algo.reduce_scatter(data, n);
    const auto [b, e] = algo.owned(n);
    REQUIRE(b <= e);
    REQUIRE(e <= n);
    CHECK(all_ranks(b == e || std::memcmp(data + b, ref.data() + b, (e - b) * sizeof(float)) == 0));
    std::vector<unsigned long long> cuts(2 * std::size_t(p));
    const unsigned long long mine[2] = {b, e};
    MPI_Allgather(mine, 2, MPI_UNSIGNED_LONG_LONG, cuts.data(), 2, MPI_UNSIGNED_LONG_LONG, MPI_COMM_WORLD);
    std::vector<std::pair<unsigned long long, unsigned long long>> parts;
    for (int q = 0; q < p; ++q) parts.emplace_back(cuts[2 * q], cuts[2 * q + 1]);
    std::sort(parts.begin(), parts.end());
    unsigned long long at = 0;
    for (const auto& [pb, pe] : parts) {
      CHECK(pb == at);
      at = pe;
    }
    CHECK(at == n);
    for (std::size_t i = 0; i < n; ++i)
      if (i < b || i >= e) data[i] = std::nanf("");  // only the owned part may count
    allgather(data, n);
    CHECK(all_ranks(n == 0 || std::memcmp(data, ref.data(), n * sizeof(float)) == 0));
  }
}

}  // namespace ringtrain::test

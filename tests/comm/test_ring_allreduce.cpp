// RingAllreduce against MPI_Allreduce (the reference) on the world size this
// process was launched with (CTest runs 1 to 5 ranks), for the lengths that
// break naive chunking: 0, 1, p-1, p, p+1, a prime, and a large one.
#include <doctest/doctest.h>
#include <mpi.h>

#include <cstring>
#include <random>
#include <vector>

#include "ringtrain/comm/ring_allreduce.hpp"

using ringtrain::RingAllreduce;

namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int s = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

std::vector<std::size_t> interesting_lengths() {
  const std::size_t p = std::size_t(world_size());
  return {0, 1, p > 1 ? p - 1 : 0, p, p + 1, 2 * p + 1, 97, 1009, 65537, (1u << 20) + 3};
}

// True on every rank iff `ok` holds on every rank.
bool all_ranks(bool ok) {
  int v = ok ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return v == 1;
}

}  // namespace

TEST_CASE("ring all-reduce equals MPI_Allreduce exactly on integer-valued floats") {
  const int rank = world_rank();
  RingAllreduce ring(MPI_COMM_WORLD);
  for (const std::size_t n : interesting_lengths()) {
    CAPTURE(n);
    std::vector<float> ours(n), ref(n);
    for (std::size_t i = 0; i < n; ++i)
      ours[i] = ref[i] = float(int((i * 7919 + std::size_t(rank) * 104729) % 2001) - 1000);
    ring.run(ours.data(), n);
    MPI_Allreduce(MPI_IN_PLACE, ref.data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    const bool same = n == 0 || std::memcmp(ours.data(), ref.data(), n * sizeof(float)) == 0;
    CHECK(all_ranks(same));
  }
}

TEST_CASE("ring all-reduce leaves bit-identical results on every rank for random floats") {
  const int rank = world_rank();
  RingAllreduce ring(MPI_COMM_WORLD);
  std::mt19937 gen(1234u + unsigned(rank));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const std::size_t n : interesting_lengths()) {
    CAPTURE(n);
    std::vector<float> data(n);
    for (auto& v : data) v = dist(gen) * 1e3f;
    std::vector<float> expect = data;  // double-precision sum as a sanity bound
    std::vector<double> exact(n);
    for (std::size_t i = 0; i < n; ++i) exact[i] = data[i];
    MPI_Allreduce(MPI_IN_PLACE, exact.data(), int(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    ring.run(data.data(), n);
    std::vector<float> root = data;
    if (n) MPI_Bcast(root.data(), int(n), MPI_FLOAT, 0, MPI_COMM_WORLD);
    CHECK(all_ranks(n == 0 || std::memcmp(root.data(), data.data(), n * sizeof(float)) == 0));
    double worst = 0;
    for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(data[i] - exact[i]));
    CHECK(worst < 1e-2);  // p additions of values below 1e3 in float
  }
}

TEST_CASE("ring all-reduce is deterministic run to run and reuses its scratch") {
  const int rank = world_rank();
  RingAllreduce ring(MPI_COMM_WORLD);
  const std::size_t n = 10007;
  ring.reserve(n);
  std::vector<float> first, second;
  for (auto* out : {&first, &second}) {
    std::mt19937 gen(99u + unsigned(rank));
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    out->resize(n);
    for (auto& v : *out) v = dist(gen);
    ring.run(out->data(), n);
  }
  CHECK(all_ranks(std::memcmp(first.data(), second.data(), n * sizeof(float)) == 0));
}

// RingAllreduce against MPI_Allreduce (the reference): allreduce_checks.hpp.
#include "ringtrain/comm/ring_allreduce.hpp"

#include "allreduce_checks.hpp"
#include "ringtrain/comm/wire_format.hpp"

using ringtrain::RingAllreduce;
using namespace ringtrain::test;

TEST_CASE("ring all-reduce equals MPI_Allreduce exactly on integer-valued floats") {
  RingAllreduce ring(MPI_COMM_WORLD);
  check_equals_mpi_allreduce(ring);
}

TEST_CASE("ring all-reduce leaves bit-identical results on every rank for random floats") {
  RingAllreduce ring(MPI_COMM_WORLD);
  check_bit_identical_on_every_rank(ring);
}

TEST_CASE("ring all-reduce is deterministic run to run and reuses its scratch") {
  RingAllreduce ring(MPI_COMM_WORLD);
  check_deterministic(ring);
}

namespace {
// The ring with 16-bit messages, in the shape allreduce_checks.hpp expects.
struct CompressedRing {
  RingAllreduce& ring;
  ringtrain::WireFormat wire;
  void reserve(std::size_t n) { ring.reserve(n, wire); }
  void run(float* data, std::size_t n) { ring.run(data, n, wire); }
};
}  // namespace

TEST_CASE("compressed ring: same bits on every rank, deterministic, within the format's rounding") {
  using ringtrain::WireFormat;
  RingAllreduce ring(MPI_COMM_WORLD);
  const int p = world_size(), rank = world_rank();
  for (WireFormat w : {WireFormat::kBf16, WireFormat::kFp16}) {
    CAPTURE(ringtrain::wire_format_name(w));
    CompressedRing algo{ring, w};
    check_deterministic(algo);
    // Small integers: every partial sum is exact in 16 bits, so the result
    // equals MPI_Allreduce's exactly.
    for (const std::size_t n : interesting_lengths()) {
      CAPTURE(n);
      std::vector<float> ours(n), ref(n);
      for (std::size_t i = 0; i < n; ++i) ours[i] = ref[i] = float(int((i * 31 + std::size_t(rank) * 17) % 15) - 7);
      algo.run(ours.data(), n);
      MPI_Allreduce(MPI_IN_PLACE, ref.data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      CHECK(all_ranks(n == 0 || std::memcmp(ours.data(), ref.data(), n * sizeof(float)) == 0));
    }
    // Random values: each of the p - 1 hops and the final rounding lose at
    // most half a unit in the last place of a partial sum.
    std::mt19937 gen(4321u + unsigned(rank));
    std::normal_distribution<float> dist(0.0f, 1.0f);
    const std::size_t n = 100003;
    std::vector<float> data(n);
    for (auto& v : data) v = dist(gen);
    std::vector<double> exact(data.begin(), data.end()), mass(n);
    for (std::size_t i = 0; i < n; ++i) mass[i] = std::abs(data[i]);
    MPI_Allreduce(MPI_IN_PLACE, exact.data(), int(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, mass.data(), int(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    algo.run(data.data(), n);
    const double unit = w == WireFormat::kBf16 ? 0x1p-8 : 0x1p-11;  // relative spacing
    bool within = true;
    for (std::size_t i = 0; i < n; ++i) within = within && std::abs(data[i] - exact[i]) <= p * unit * mass[i] + 1e-6;
    CHECK(all_ranks(within));
    std::vector<float> root = data;
    MPI_Bcast(root.data(), int(n), MPI_FLOAT, 0, MPI_COMM_WORLD);
    CHECK(all_ranks(std::memcmp(root.data(), data.data(), n * sizeof(float)) == 0));
    // And it is really rounded (p > 1): not the fp32 ring's result.
    if (p > 1) {
      std::vector<float> plain(n);
      std::mt19937 again(4321u + unsigned(rank));
      std::normal_distribution<float> same_dist(0.0f, 1.0f);  // a fresh one: no cached value
      for (auto& v : plain) v = same_dist(again);
      ring.run(plain.data(), n);
      CHECK(all_ranks(std::memcmp(plain.data(), data.data(), n * sizeof(float)) != 0));
    }
  }
}

TEST_CASE("pipelined ring: tiny segments (many per chunk) give the same results") {
  RingAllreduce segmented(MPI_COMM_WORLD, nullptr, 7);
  check_equals_mpi_allreduce(segmented, 70000);
  check_bit_identical_on_every_rank(segmented, 70000);
  check_deterministic(segmented);
  // Same bits as one message per chunk: segments change no summation order.
  RingAllreduce whole(MPI_COMM_WORLD, nullptr, std::size_t(1) << 30);
  std::vector<float> a(10007), b;
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::sin(float(i + 31 * world_rank()));
  b = a;
  segmented.run(a.data(), a.size());
  whole.run(b.data(), b.size());
  CHECK(all_ranks(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0));
}

TEST_CASE("ring reduce-scatter and all-gather: the halves of run(), bit for bit") {
  for (const std::size_t segment : {RingAllreduce::kDefaultSegment, std::size_t(5)}) {
    CAPTURE(segment);
    RingAllreduce ring(MPI_COMM_WORLD, nullptr, segment);
    std::vector<float> storage;
    check_halves_equal_run(
        ring, heap_buffer(storage), [&](float* data, std::size_t n) { ring.allgather(data, n); }, segment < 100 ? 65537 : std::size_t(-1));
  }
}

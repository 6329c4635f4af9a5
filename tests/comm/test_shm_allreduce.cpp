// ShmAllreduce (one node, shared-memory window) against MPI_Allreduce, with
// the default block and with tiny blocks (many blocks per call, slices of 0
// or 1 element, both staging halves and the alternation across calls).
#include "ringtrain/comm/shm_allreduce.hpp"

#include <vector>

#include "allreduce_checks.hpp"

using ringtrain::ShmAllreduce;
using namespace ringtrain::test;

TEST_CASE("shm all-reduce: the test's ranks share one node") { CHECK(ShmAllreduce::single_node(MPI_COMM_WORLD)); }

TEST_CASE("shm all-reduce equals MPI_Allreduce exactly on integer-valued floats") {
  for (const std::size_t block : {ShmAllreduce::kDefaultBlock, std::size_t(3), std::size_t(1000)}) {
    CAPTURE(block);
    ShmAllreduce shm(MPI_COMM_WORLD, nullptr, block);
    check_equals_mpi_allreduce(shm, block < 100 ? 1009 : 65537 + block * 1000);
  }
}

TEST_CASE("shm all-reduce leaves bit-identical results on every rank for random floats") {
  for (const std::size_t block : {ShmAllreduce::kDefaultBlock, std::size_t(7)}) {
    CAPTURE(block);
    ShmAllreduce shm(MPI_COMM_WORLD, nullptr, block);
    check_bit_identical_on_every_rank(shm, block < 100 ? 1009 : std::size_t(-1));
  }
}

TEST_CASE("shm all-reduce is deterministic run to run, also with an odd number of blocks per call") {
  ShmAllreduce shm(MPI_COMM_WORLD, nullptr, 1000);
  check_deterministic(shm, 10007);  // 11 blocks: the second call starts on the other half
  ShmAllreduce grows(MPI_COMM_WORLD);
  check_deterministic(grows, 17);
  check_deterministic(grows, 100003);  // a larger buffer re-allocates the window (collectively)
}

// run() on shared_buffer(): the in-place path, no staging copies.
TEST_CASE("shm all-reduce in place on its shared buffer: exact, and the same bits as the staged path") {
  const int rank = world_rank();
  ShmAllreduce shm(MPI_COMM_WORLD, nullptr, 1000);
  const std::size_t capacity = (1u << 20) + 3;
  float* buf = shm.shared_buffer(capacity);
  if (world_size() == 1) {  // nothing to share: the caller uses its own memory
    CHECK(buf == nullptr);
    return;
  }
  REQUIRE(buf != nullptr);
  for (const std::size_t n : interesting_lengths()) {
    CAPTURE(n);
    std::vector<float> ref(n);
    for (std::size_t i = 0; i < n; ++i)
      buf[i] = ref[i] = float(int((i * 7919 + std::size_t(rank) * 104729) % 2001) - 1000);
    shm.run(buf, n);
    MPI_Allreduce(MPI_IN_PLACE, ref.data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    CHECK(all_ranks(n == 0 || std::memcmp(buf, ref.data(), n * sizeof(float)) == 0));
  }
  std::mt19937 gen(77u + unsigned(rank));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const std::size_t n = 65537;
  std::vector<float> staged(n);
  for (std::size_t i = 0; i < n; ++i) buf[i] = staged[i] = dist(gen) * 1e3f;
  shm.run(buf, n);
  shm.run(staged.data(), n);  // other memory: the staged path
  CHECK(all_ranks(std::memcmp(buf, staged.data(), n * sizeof(float)) == 0));
  std::vector<float> root(buf, buf + n);
  MPI_Bcast(root.data(), int(n), MPI_FLOAT, 0, MPI_COMM_WORLD);
  CHECK(all_ranks(std::memcmp(root.data(), buf, n * sizeof(float)) == 0));
  // A second buffer (a second trainer on the same communicator) starts
  // zeroed, and the first one stays valid and reduced in place.
  float* again = shm.shared_buffer(10);
  CHECK(all_ranks(again[0] == 0.0f && again[9] == 0.0f));
  for (std::size_t i = 0; i < 10; ++i) again[i] = float(i), buf[i] = float(rank);
  shm.run(again, 10);
  shm.run(buf, 10);
  const int p = world_size();
  CHECK(all_ranks(again[3] == 3.0f * float(p) && buf[0] == float(p * (p - 1) / 2)));
}

TEST_CASE("shm all-reduce: ranks that disagree on the path (shared buffer or not) fail alike, no wrong sum") {
  if (world_size() < 2) return;
  ShmAllreduce shm(MPI_COMM_WORLD);
  float* buf = shm.shared_buffer(16);
  std::vector<float> other(16, 1.0f);
  float* mine = world_rank() == 0 ? buf : other.data();
  CHECK_THROWS_WITH(shm.run(mine, 16), doctest::Contains("some ranks passed their shared buffer"));
}

TEST_CASE("shm reduce-scatter and all-gather: the halves of run(), in place and staged") {
  const std::size_t capacity = (1u << 20) + 3;
  for (const std::size_t block : {ShmAllreduce::kDefaultBlock, std::size_t(1000)}) {
    CAPTURE(block);
    ShmAllreduce shm(MPI_COMM_WORLD, nullptr, block);
    float* shared = shm.shared_buffer(capacity);
    float* scratch = shm.shared_buffer(capacity);
    if (world_size() == 1) continue;  // nothing to share; the halves are no-ops
    // In place: the data and the scratch in shared buffers (the trainer's
    // gradients carry the parameters' slices).
    check_halves_equal_run(
        shm, [&](std::size_t) { return shared; },
        [&](float* data, std::size_t n) {
          std::vector<float> copy(data, data + n);  // the parameters: other memory, through the scratch
          shm.allgather(copy.data(), n, scratch);
          std::copy(copy.begin(), copy.end(), data);
        });
    // Other memory, staged, also as the all-gather's scratch (blocks of 1000:
    // many blocks, both halves, slices split across blocks).
    std::vector<float> storage;
    check_halves_equal_run(
        shm, heap_buffer(storage), [&](float* data, std::size_t n) {
          std::vector<float> other_scratch(n + 1);
          shm.allgather(data, n, other_scratch.data());
        });
  }
}

TEST_CASE("shm barriers: many in a row, the path check still catches a mismatch") {
  if (world_size() < 2) return;
  ShmAllreduce shm(MPI_COMM_WORLD);
  float* buf = shm.shared_buffer(64);
  for (int round = 0; round < 2000; ++round) {  // barriers back to back: no rank laps another
    buf[0] = float(world_rank() + round);
    shm.run(buf, 1);
    const int p = world_size();
    if (buf[0] != float(p * (p - 1) / 2 + p * round)) {
      FAIL("round ", round, ": got ", buf[0]);
      break;
    }
  }
  // Another part of the same buffer on one rank: refused everywhere.
  CHECK_THROWS_WITH(shm.run(world_rank() == 0 ? buf : buf + 16, 16), doctest::Contains("another part of it"));
}

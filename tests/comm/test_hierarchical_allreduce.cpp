// HierarchicalAllreduce on one machine split into pretend nodes of two ranks
// (the last one smaller when p is odd), against MPI_Allreduce; and the
// communicator's "auto" and "hierarchical" algorithms end to end.
#include <memory>

#include "allreduce_checks.hpp"
#include "ringtrain/comm/hierarchical_allreduce.hpp"
#include "ringtrain/comm/mpi_communicator.hpp"

using namespace ringtrain;
using namespace ringtrain::test;

namespace {

// Ranks 2k and 2k + 1 form node k.
struct PretendNodes {
  MPI_Comm node = MPI_COMM_NULL;
  PretendNodes() { MPI_Comm_split(MPI_COMM_WORLD, world_rank() / 2, world_rank(), &node); }
  ~PretendNodes() { MPI_Comm_free(&node); }
};

// A Communicator's gradient path in the shape allreduce_checks.hpp expects.
struct ViaCommunicator {
  Communicator& comm;
  void reserve(std::size_t n) { comm.reserve_gradients(n); }
  void run(float* data, std::size_t n) { comm.allreduce_gradients(data, n); }
};

}  // namespace

TEST_CASE("node-aware all-reduce over pretend nodes equals MPI_Allreduce and is the same on every rank") {
  PretendNodes nodes;
  HierarchicalAllreduce hier(MPI_COMM_WORLD, nullptr, nodes.node);
  CHECK(hier.nodes() == (world_size() + 1) / 2);
  check_equals_mpi_allreduce(hier);
  check_bit_identical_on_every_rank(hier);
  check_deterministic(hier);
}

TEST_CASE("node-aware all-reduce reduces its shared buffer in place, compressed between nodes when asked") {
  PretendNodes nodes;
  HierarchicalAllreduce hier(MPI_COMM_WORLD, nullptr, nodes.node);
  const std::size_t n = 30011;
  float* shared = hier.shared_buffer(n);
  std::vector<float> own(n);
  float* data = shared ? shared : own.data();  // a node of one rank has no shared buffer
  for (ringtrain::WireFormat w : {ringtrain::WireFormat::kFp32, ringtrain::WireFormat::kBf16}) {
    for (std::size_t i = 0; i < n; ++i) data[i] = float(int((i + 3 * std::size_t(world_rank())) % 9) - 4);
    std::vector<float> ref(data, data + n);
    hier.run(data, n, w);
    MPI_Allreduce(MPI_IN_PLACE, ref.data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    // Small integers: exact in bf16 too.
    CHECK(all_ranks(std::memcmp(ref.data(), data, n * sizeof(float)) == 0));
  }
}

TEST_CASE("comm.algorithm=auto and hierarchical pass the all-reduce checks through the communicator") {
  for (const char* algorithm : {"auto", "hierarchical"}) {
    CAPTURE(std::string(algorithm));
    auto comm = make_mpi_communicator(algorithm);
    ViaCommunicator via{*comm};
    check_equals_mpi_allreduce(via);
    check_bit_identical_on_every_rank(via);
    check_deterministic(via);
    // Both sides of auto's size threshold, in place in the shared buffer.
    const std::size_t n = 3 * kAutoSmallBytes / sizeof(float);
    float* shared = comm->shared_gradient_buffer(n);
    std::vector<float> own(n);
    float* data = shared ? shared : own.data();
    for (std::size_t len : {std::size_t(100), kAutoSmallBytes / sizeof(float), n}) {
      CAPTURE(len);
      for (std::size_t i = 0; i < len; ++i) data[i] = float(int((i * 13 + std::size_t(world_rank())) % 101) - 50);
      std::vector<float> ref(data, data + len);
      comm->allreduce_gradients(data, len);
      MPI_Allreduce(MPI_IN_PLACE, ref.data(), int(len), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      CHECK(all_ranks(std::memcmp(ref.data(), data, len * sizeof(float)) == 0));
    }
  }
  CHECK_THROWS_AS(make_mpi_communicator("shm", kDefaultCommTimeout, "bf16"), UsageError);
  CHECK_THROWS_AS(make_mpi_communicator("tree"), UsageError);
}

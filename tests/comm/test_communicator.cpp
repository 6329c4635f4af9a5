// The Communicator interface over MPI: collectives, and the agreement on
// errors that turns a failure on one rank into a clean error on every rank.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "ringtrain/comm/mpi_communicator.hpp"

using namespace ringtrain;

TEST_CASE("MPI communicator collectives") {
  for (const char* algo : {"ring", "shm", "mpi", "hierarchical", "auto"}) {
    auto comm = make_mpi_communicator(algo);
    const int p = comm->size(), r = comm->rank();
    // auto says what it resolved to: one node here.
    CHECK(comm->algorithm() == (std::string(algo) == "auto" ? std::string("auto (shm)") : std::string(algo)));
    std::vector<float> f{float(r), 1.0f, 2.0f * r};
    comm->allreduce_sum(f.data(), f.size());
    CHECK(f[0] == doctest::Approx(p * (p - 1) / 2.0));
    CHECK(f[1] == p);
    std::vector<double> d{0.5 * r, 1.0};
    comm->allreduce_sum(d.data(), d.size());
    CHECK(d[0] == doctest::Approx(0.25 * p * (p - 1)));
    CHECK(comm->allreduce_min(10 + r) == 10);
    int value = r == p - 1 ? 777 : 0;
    comm->broadcast(&value, sizeof(value), p - 1);
    CHECK(value == 777);
    CHECK(broadcast_string(*comm, r == 0 ? "from root" : "", 0) == "from root");
    comm->barrier();
  }
}

TEST_CASE("the sharded optimizer's halves through the Communicator, and where they are offered") {
  const std::size_t n = 100003;  // above auto's recursive-doubling size
  for (const char* algo : {"ring", "shm", "auto"}) {
    CAPTURE(algo);
    auto comm = make_mpi_communicator(algo);
    const int p = comm->size(), r = comm->rank();
    CHECK(comm->shards_gradients(n) == (p > 1));
    if (p == 1) continue;
    float* grads = comm->shared_gradient_buffer(n);
    std::vector<float> own(n);
    if (grads == nullptr) grads = own.data();
    std::vector<float> ref(n);
    for (std::size_t i = 0; i < n; ++i) grads[i] = ref[i] = float(int((i * 31 + std::size_t(r) * 7) % 101) - 50);
    comm->allreduce_gradients(ref.data(), n);
    comm->reduce_scatter_gradients(grads, n);
    const auto [b, e] = comm->shard(n);
    CHECK(std::equal(grads + b, grads + e, ref.data() + b));
    // The parameters: this rank's shard is its own, the rest comes from the owners.
    std::vector<float> params(n, -1.0f);
    for (std::size_t i = b; i < e; ++i) params[i] = float(i);
    comm->allgather_shards(params.data(), n, grads);
    bool whole = true;
    for (std::size_t i = 0; i < n; ++i) whole = whole && params[i] == float(i);
    CHECK(whole);
  }
  // Not offered: MPI_Allreduce (the reference), hierarchical, a compressed
  // ring, auto's recursive doubling for small buffers, one rank.
  CHECK_FALSE(make_mpi_communicator("mpi")->shards_gradients(n));
  CHECK_FALSE(make_mpi_communicator("hierarchical")->shards_gradients(n));
  CHECK_FALSE(make_mpi_communicator("ring", kDefaultCommTimeout, "bf16")->shards_gradients(n));
  CHECK_FALSE(make_mpi_communicator("auto")->shards_gradients(kAutoSmallBytesOneNode / sizeof(float)));
  CHECK_FALSE(SelfCommunicator().shards_gradients(n));
}

TEST_CASE("unknown all-reduce algorithm is a usage error") {
  CHECK_THROWS_AS(make_mpi_communicator("tree"), UsageError);
}

TEST_CASE("run_collectively: a failure on one rank becomes the same error on every rank") {
  auto comm = make_mpi_communicator("mpi");
  const int p = comm->size();
  const int failing = p - 1;
  std::string message;
  int code = -1;
  try {
    run_collectively(*comm, [&] {
      if (comm->rank() == failing) throw UsageError("data.train: broken shard");
    });
  } catch (const CollectiveError& e) {
    message = e.what();
    code = e.exit_code();
  }
  CHECK(code == kExitUsage);
  CHECK(message.find("data.train: broken shard") != std::string::npos);
  if (p > 1) CHECK(message.find("rank " + std::to_string(failing)) != std::string::npos);

  // The lowest failing rank's message wins when several fail; when all
  // failed, no rank is named.
  try {
    run_collectively(*comm, [&] { throw RuntimeError("rank says " + std::to_string(comm->rank())); });
    FAIL("expected CollectiveError");
  } catch (const CollectiveError& e) {
    CHECK(std::string(e.what()) == "rank says 0");
    CHECK(e.exit_code() == kExitRuntime);
  }
  // No failure: no exception, on any rank.
  CHECK_NOTHROW(run_collectively(*comm, [] {}));
}

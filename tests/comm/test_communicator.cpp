// The Communicator interface over MPI: collectives, and the agreement on
// errors that turns a failure on one rank into a clean error on every rank.
#include <doctest/doctest.h>

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

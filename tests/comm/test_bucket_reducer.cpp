// BucketReducer: buckets cut at layer boundaries, exact slots kept exact, and
// the overlapped path (communication thread) gives the same bits as the
// sequential one, for every algorithm, on every world size CTest launches.
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "allreduce_checks.hpp"
#include "ringtrain/comm/bucket_reducer.hpp"
#include "ringtrain/comm/mpi_communicator.hpp"

using namespace ringtrain;
using namespace ringtrain::test;

namespace {

// Layer boundaries of a made-up model: 7 layers of uneven sizes.
const std::vector<std::size_t> kReady = {1290, 1418, 34186, 34442, 235146, 235403, 300001};

// What backward does: fills the gradients layer by layer (values seeded by
// rank and step) and reports each finished prefix; the exact slots (small
// integers) are written first, as the trainer does.
void fake_backward(BucketReducer& reducer, float* data, std::size_t n_grads, std::size_t n_total, int rank, int step,
                   bool pause) {
  std::mt19937 gen(unsigned(1000 * rank + step));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (std::size_t i = n_grads; i < n_total; ++i) data[i] = float(rank + 1);
  reducer.start_step(step);
  std::size_t at = 0;
  for (std::size_t p : kReady) {
    for (; at < p; ++at) data[at] = dist(gen);
    reducer.gradients_ready(p);
    // Let the thread start on this bucket while "backward" goes on.
    if (pause) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  reducer.finish();
}

// The result of 3 steps through a reducer on `data` (n_total floats).
std::vector<float> reduce_steps(Communicator& comm, float* data, std::size_t bucket_floats, bool overlap) {
  const std::size_t n_grads = kReady.back(), n_total = n_grads + 5;
  BucketReducer reducer(comm, data, n_grads, n_total, kReady, bucket_floats, overlap);
  std::vector<float> out;
  for (int step = 0; step < 3; ++step) {
    fake_backward(reducer, data, n_grads, n_total, comm.rank(), step, overlap);
    out.insert(out.end(), data, data + n_total);
  }
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("buckets close at the first layer boundary past the bucket size; exact slots ride along") {
  auto comm = make_mpi_communicator("ring");
  std::vector<float> data(300006);
  BucketReducer one(*comm, data.data(), 300001, 300006, kReady, 0, false);
  REQUIRE(one.ranges().size() == 1);
  CHECK(one.ranges()[0].begin == 0);
  CHECK(one.ranges()[0].end == 300006);

  BucketReducer some(*comm, data.data(), 300001, 300006, kReady, 30000, false);
  REQUIRE(some.ranges().size() == 3);  // [0, 34186) [34186, 235146) [235146, 300006)
  CHECK(some.ranges()[0].end == 34186);
  CHECK(some.ranges()[1].end == 235146);
  CHECK(some.ranges()[2].end == 300006);
  CHECK_FALSE(some.ranges()[2].exact);

  auto compressed = make_mpi_communicator("ring", kDefaultCommTimeout, "bf16");
  BucketReducer bf16(*compressed, data.data(), 300001, 300006, kReady, 30000, false);
  REQUIRE(bf16.ranges().size() == 4);  // the exact slots alone, never rounded
  CHECK(bf16.ranges()[2].end == 300001);
  CHECK(bf16.ranges()[3].begin == 300001);
  CHECK(bf16.ranges()[3].exact);
  CHECK_THROWS_AS(BucketReducer(*comm, data.data(), 300001, 300006, {5, 3, 300001}, 0, false), Error);
}

TEST_CASE("overlapped buckets give the same bits as sequential ones, for every algorithm") {
  const std::size_t n_total = kReady.back() + 5;
  struct Case {
    const char* algorithm;
    const char* compression;
  };
  for (const Case c :
       {Case{"ring", "none"}, Case{"ring", "bf16"}, Case{"ring", "fp16"}, Case{"mpi", "none"}, Case{"shm", "none"}}) {
    const std::string algorithm = c.algorithm, compression = c.compression;
    CAPTURE(algorithm);
    CAPTURE(compression);
    auto comm = make_mpi_communicator(c.algorithm, kDefaultCommTimeout, c.compression);
    REQUIRE(comm->allows_comm_thread());
    // shm reduces the trainer's buffer in place: use its shared window.
    float* shared = comm->shared_gradient_buffer(n_total);
    std::vector<float> own(n_total);
    float* data = shared ? shared : own.data();
    for (std::size_t bucket : {std::size_t(0), std::size_t(30000), std::size_t(1)}) {
      CAPTURE(bucket);
      const std::vector<float> sequential = reduce_steps(*comm, data, bucket, false);
      const std::vector<float> overlapped = reduce_steps(*comm, data, bucket, true);
      CHECK(all_ranks(same_bits(sequential, overlapped)));
      std::vector<float> root = overlapped;
      MPI_Bcast(root.data(), int(root.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
      CHECK(all_ranks(same_bits(root, overlapped)));  // same on every rank
      // The exact slots are exact sums: p(p+1)/2 for the rank + 1 values.
      const int p = comm->size();
      CHECK(overlapped[n_total - 1] == float(p * (p + 1) / 2));
      // shm sums each element in rank order whatever the buckets (the ring's
      // and MPI's orders depend on the message length from 3 ranks on).
      if (algorithm == "shm" && bucket != 0)
        CHECK(all_ranks(same_bits(overlapped, reduce_steps(*comm, data, 0, false))));
    }
  }
}

TEST_CASE("comm.overlap is refused when the communicator cannot take a second thread") {
  class NoThreads final : public Communicator {
   public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    void allreduce_sum(float*, std::size_t) override {}
    void allreduce_sum(double*, std::size_t) override {}
    int allreduce_min(int v) override { return v; }
    void broadcast(void*, std::size_t, int) override {}
    void barrier() override {}
    [[noreturn]] void abort(int code) override { std::exit(code); }
    std::string algorithm() const override { return "test"; }
    bool allows_comm_thread() const override { return false; }
  } comm;
  std::vector<float> data(10);
  CHECK_THROWS_AS(BucketReducer(comm, data.data(), 8, 10, {4, 8}, 0, true), UsageError);
  CHECK_NOTHROW(BucketReducer(comm, data.data(), 8, 10, {4, 8}, 0, false));
}

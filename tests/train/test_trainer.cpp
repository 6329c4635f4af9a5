// Data-parallel semantics of the Trainer on the launched world size p:
// p ranks with batch b train to the same parameters as 1 rank with batch p*b
// on the same rows; replicas stay bit-identical; bad input on one rank ends
// every rank with the same error.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "alloc_counter.hpp"
#include "ringtrain/comm/mpi_communicator.hpp"
#include "ringtrain/train/trainer.hpp"
#include "train_fixtures.hpp"

using namespace ringtrain;
using namespace ringtrain::test;

namespace {

std::vector<float> params_of(const Trainer& t) {
  return {t.model().params(), t.model().params() + t.model().num_params()};
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::abs(a[i] - b[i])));
  return worst;
}

// Largest |a - b| relative to |b| (with a floor for values near 0).
double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, double(std::abs(a[i] - b[i])) / (1e-3 + std::abs(b[i])));
  return worst;
}

// Rank 0 trains `cfg` alone with batch p*b on the same rows and compares with
// the p-rank result `got` (relative tolerance); every rank learns the verdict.
bool matches_single_rank(Communicator& comm, const TrainConfig& cfg, const std::vector<float>& got) {
  bool close = true;
  if (comm.rank() == 0) {
    SelfCommunicator self;
    TrainConfig one = cfg;
    one.batch_per_rank = cfg.batch_per_rank * comm.size();
    one.run_dir = cfg.run_dir + "_single";
    Trainer single(one, self);
    single.run();
    const std::vector<float> want = params_of(single);
    REQUIRE(want.size() == got.size());
    const double worst = max_rel_diff(got, want);
    CAPTURE(worst);
    close = worst < 1e-4;
    CHECK(close);
  }
  return all_ranks(comm, close);
}

}  // namespace

TEST_CASE("p ranks with batch b match 1 rank with batch p*b after 20 steps") {
  auto comm = make_mpi_communicator("ring");
  const int p = comm->size();
  SharedDataFile data(*comm, synthetic_classification(240, 12, 4));  // 240 = lcm-friendly for p <= 5
  for (const char* optim : {"sgd", "adamw"}) {
    CAPTURE(optim);
    TrainConfig cfg = short_run_config(data.path(), data.dir() + "/run_p_" + optim);
    cfg.optim.name = optim;
    cfg.optim.weight_decay = 1e-3;
    if (std::string(optim) == "adamw") cfg.lr = 0.01;
    Trainer parallel(cfg, *comm);
    const TrainResult res = parallel.run();
    CHECK(res.steps == 20);
    CHECK(res.examples_seen == 20 * 4 * p);
    const std::vector<float> got = params_of(parallel);
    CHECK(matches_single_rank(*comm, cfg, got));

    // Replicas are bit-identical across ranks.
    std::vector<float> root = got;
    comm->broadcast(root.data(), root.size() * sizeof(float), 0);
    CHECK(all_ranks(*comm, std::memcmp(root.data(), got.data(), got.size() * sizeof(float)) == 0));
  }
}

TEST_CASE("p ranks match 1 rank also across short last batches (division by the true count)") {
  auto comm = make_mpi_communicator("ring");
  const int p = comm->size();
  // 22 rows per rank, batch 4: 6 steps per epoch, the last one of 2 rows per rank.
  SharedDataFile data(*comm, synthetic_classification(22 * p, 7, 3));
  TrainConfig cfg = short_run_config(data.path(), data.dir() + "/run_p");
  cfg.max_steps = 0;
  cfg.epochs = 2;
  Trainer parallel(cfg, *comm);
  CHECK(parallel.sampler().batch_size(5) == 2);
  parallel.run();
  CHECK(matches_single_rank(*comm, cfg, params_of(parallel)));
}

TEST_CASE("a batch larger than a rank's shard trains as batches of the shard, the lr scaled for them") {
  auto comm = make_mpi_communicator("ring");
  const int p = comm->size();
  SharedDataFile data(*comm, synthetic_classification(3 * p, 5, 2));
  // 3 rows per rank: batch 8 is lowered to 3, so the lr rule sees the global
  // batch 3p that is trained on (not 8p), and the run is batch 3's, bit for bit.
  TrainConfig a = short_run_config(data.path(), data.dir() + "/run_a");
  a.max_steps = 1;
  a.batch_per_rank = 8;
  a.lr = 0.8;
  TrainConfig b = a;
  b.run_dir = data.dir() + "/run_b";
  b.batch_per_rank = 3;
  Trainer ta(a, *comm), tb(b, *comm);
  CHECK(ta.schedule().global_batch == 3 * p);
  REQUIRE(ta.schedule().at(0) == tb.schedule().at(0));
  ta.run();
  tb.run();
  CHECK(params_of(ta) == params_of(tb));
}

TEST_CASE("train.accumulate: K micro-batches of b train as one batch of K*b, to float tolerance") {
  // The gradient of a step is the mean over all K*b rows of each rank (then
  // over ranks): the sums of K backward passes against one. Also across the
  // short last step of a pass (22 rows per rank, steps of 12: micro-batches
  // of 4, 4, 4 then 4, 4, 2), with the all-reduce overlapped with the last
  // micro-batch's backward, and with the sharded optimizer.
  auto comm = make_mpi_communicator("ring");
  const int p = comm->size();
  SharedDataFile data(*comm, synthetic_classification(22 * p, 9, 3));
  struct Case {
    std::string what, optim;
    bool overlap, shard;
  };
  double worst_seen = 0;
  for (const Case& c : {Case{"sgd", "sgd", false, false}, Case{"adamw", "adamw", false, false},
                        Case{"sgd, overlap", "sgd", true, false},
                        Case{"adamw, sharded optimizer", "adamw", false, true}}) {
    CAPTURE(c.what);
    TrainConfig cfg = short_run_config(data.path(), data.dir() + "/run_acc_" + c.what);
    cfg.hidden = {16, 8};
    cfg.max_steps = 0;
    cfg.epochs = 3;
    cfg.shuffle = true;
    cfg.optim.name = c.optim;
    cfg.optim.nesterov = c.optim == "sgd";
    cfg.optim.weight_decay = 1e-3;
    cfg.lr = c.optim == "adamw" ? 0.01 : 0.2;
    cfg.comm_overlap = c.overlap;
    cfg.comm_bucket_mb = c.overlap ? 1e-4 : 4;  // with overlap: a bucket per layer, launched during backward
    cfg.comm_shard_optimizer = c.shard;
    TrainConfig whole = cfg;
    whole.batch_per_rank = 12;
    whole.run_dir += "_whole";
    cfg.batch_per_rank = 4;
    cfg.accumulate = 3;
    Trainer acc(cfg, *comm), one(whole, *comm);
    CHECK(acc.plan().global_batch == 12 * p);
    CHECK(acc.schedule().global_batch == 12 * p);
    CHECK(acc.schedule().at(0) == one.schedule().at(0));
    CHECK(acc.sampler().steps_per_epoch() == 2);
    CHECK(acc.plan().total_steps == one.plan().total_steps);
    CHECK(acc.model().max_batch() < 12);  // activations for a micro-batch, not the step
    const TrainResult ra = acc.run(), ro = one.run();
    CHECK(ra.steps == 6);
    CHECK(ra.steps == ro.steps);
    CHECK(ra.examples_seen == 3 * 22 * p);
    CHECK(ra.examples_seen == ro.examples_seen);
    const std::vector<float> a = params_of(acc), b = params_of(one);
    REQUIRE(a.size() == b.size());
    const double worst = max_rel_diff(a, b);
    CAPTURE(worst);
    CHECK(worst < 1e-4);
    worst_seen = std::max(worst_seen, worst);
    std::vector<float> root = a;  // replicas stay bit-identical
    comm->broadcast(root.data(), root.size() * sizeof(float), 0);
    CHECK(all_ranks(*comm, std::memcmp(root.data(), a.data(), a.size() * sizeof(float)) == 0));
  }
  if (comm->rank() == 0) MESSAGE("train.accumulate vs one batch: largest relative difference " << worst_seen);
}

TEST_CASE("train.accumulate: overlap gives the same bits as the sequential all-reduce, dropout per micro-batch") {
  // The buckets may only go out once the last micro-batch's backward has
  // added the earlier micro-batches: overlapped or not, the same sums.
  auto comm = make_mpi_communicator("ring");
  SharedDataFile data(*comm, synthetic_classification(120, 40, 3));
  TrainConfig cfg = short_run_config(data.path(), data.dir() + "/run");
  cfg.hidden = {64, 32, 16};
  cfg.shuffle = true;
  cfg.dropout = 0.2f;
  cfg.comm_bucket_mb = 1e-4;
  cfg.comm_shard_optimizer = false;
  cfg.batch_per_rank = 3;
  cfg.accumulate = 2;
  std::vector<float> result[2];
  for (int overlap = 0; overlap < 2; ++overlap) {
    cfg.comm_overlap = overlap == 1;
    cfg.run_dir = data.dir() + "/run_acc_overlap" + std::to_string(overlap);
    Trainer t(cfg, *comm);
    CHECK(t.run().steps == 20);
    result[overlap] = params_of(t);
  }
  CHECK(all_ranks(*comm, result[0] == result[1]));
  // With dropout, K=2 is not K=1 with batch 2b: the first micro-batch keeps
  // the step's key, the second draws masks of its own.
  cfg.comm_overlap = false;
  cfg.batch_per_rank = 6;
  cfg.accumulate = 1;
  cfg.run_dir = data.dir() + "/run_acc_k1";
  Trainer k1(cfg, *comm);
  k1.run();
  CHECK(max_abs_diff(params_of(k1), result[0]) > 0);
}

TEST_CASE("train.accumulate: more rows per step than a rank has is a usage error naming the key") {
  auto comm = make_mpi_communicator("ring");
  const int p = comm->size();
  SharedDataFile data(*comm, synthetic_classification(10 * p, 3, 2));
  TrainConfig cfg = short_run_config(data.path(), data.dir() + "/run");
  cfg.batch_per_rank = 4;
  cfg.accumulate = 3;  // 12 rows per step, 10 per rank
  try {
    Trainer t(cfg, *comm);
    FAIL("expected an error");
  } catch (const CollectiveError& e) {
    CHECK(e.exit_code() == kExitUsage);
    const std::string what = e.what();
    CAPTURE(what);
    CHECK(what.find("train.accumulate") != std::string::npos);
    CHECK(what.find('\n') == std::string::npos);
  }
  cfg.accumulate = 0;
  cfg.run_dir = data.dir() + "/run0";
  CHECK_THROWS_WITH_AS(Trainer(cfg, *comm), doctest::Contains("train.accumulate"), CollectiveError);
}

TEST_CASE("train.accumulate: the step allocates nothing after warm-up" * doctest::skip(!kAllocCounting)) {
  auto comm = make_mpi_communicator("ring");
  if (comm->rank() != 0) return;  // ours alone, with a size-1 communicator
  SelfCommunicator self;
  TempDir dir;
  write_hdf5_dataset(dir.file("d.h5"), synthetic_classification(64, 30, 4));
  TrainConfig cfg = short_run_config(dir.file("d.h5"), dir.file("run"));
  cfg.dropout = 0.1f;
  cfg.accumulate = 3;
  for (const bool overlap : {false, true}) {
    cfg.comm_overlap = overlap;
    cfg.comm_bucket_mb = overlap ? 1e-4 : 4;
    cfg.run_dir = dir.file(overlap ? "run_overlap" : "run");
    Trainer t(cfg, self);
    for (int64_t s = 0; s < 2; ++s) t.train_step(s, s);  // warm-up
    AllocationCounter counter;
    for (int64_t s = 2; s < 5; ++s) t.train_step(s, s);
    const long n = counter.stop();
    CAPTURE(overlap);
    CHECK(n == 0);
  }
}

TEST_CASE("ring, shared memory and MPI_Allreduce give the same training result") {
  auto ring = make_mpi_communicator("ring");
  SharedDataFile data(*ring, synthetic_classification(120, 6, 3));
  TrainConfig cfg = short_run_config(data.path(), data.dir() + "/run");
  cfg.shuffle = true;
  cfg.dropout = 0.2f;
  Trainer a(cfg, *ring);
  a.run();
  for (const char* algo : {"shm", "mpi", "auto", "hierarchical"}) {
    CAPTURE(algo);
    auto other = make_mpi_communicator(algo);
    cfg.run_dir = data.dir() + "/run_" + algo;
    Trainer b(cfg, *other);
    b.run();
    CHECK(max_abs_diff(params_of(a), params_of(b)) < 1e-5);
  }
}

TEST_CASE("comm.overlap trains to the same bits as the sequential all-reduce, bucket by bucket") {
  auto probe = make_mpi_communicator("ring");
  SharedDataFile data(*probe, synthetic_classification(120, 40, 3));
  TrainConfig cfg = short_run_config(data.path(), data.dir() + "/run");
  cfg.hidden = {64, 32, 16};  // 4 layers: with tiny buckets, one bucket per layer
  cfg.shuffle = true;
  cfg.comm_bucket_mb = 1e-4;  // about 26 floats: closes at every layer boundary
  cfg.comm_shard_optimizer = false;  // the bucketed all-reduce on both sides
  struct Case {
    std::string algorithm, compression;
  };
  for (const Case& c : {Case{"ring", "none"}, Case{"shm", "none"}, Case{"ring", "bf16"}, Case{"ring", "fp16"},
                        Case{"auto", "none"}, Case{"hierarchical", "bf16"}}) {
    CAPTURE(c.algorithm);
    CAPTURE(c.compression);
    auto comm = make_mpi_communicator(c.algorithm, kDefaultCommTimeout, c.compression);
    std::vector<float> result[2];
    for (int overlap = 0; overlap < 2; ++overlap) {
      cfg.comm_overlap = overlap == 1;
      cfg.run_dir = data.dir() + "/run_" + c.algorithm + c.compression + std::to_string(overlap);
      Trainer t(cfg, *comm);
      const TrainResult r = t.run();
      CHECK(r.steps == 20);
      result[overlap] = params_of(t);
    }
    CHECK(all_ranks(*comm, std::memcmp(result[0].data(), result[1].data(), result[0].size() * sizeof(float)) == 0));
    std::vector<float> root = result[1];
    comm->broadcast(root.data(), root.size() * sizeof(float), 0);
    CHECK(all_ranks(*comm, std::memcmp(root.data(), result[1].data(), root.size() * sizeof(float)) == 0));
    if (c.compression != "none" && c.algorithm == "ring") {  // rounded on the wire, yet the same training within the rounding
      cfg.comm_overlap = false;
      cfg.run_dir = data.dir() + "/run_exact_" + c.compression;
      Trainer exact(cfg, *probe);
      exact.run();
      const double worst = max_abs_diff(params_of(exact), result[0]);
      CAPTURE(worst);
      CHECK(worst < (c.compression == "bf16" ? 2e-2 : 3e-3));
      if (comm->size() > 1) CHECK(worst > 0);  // really compressed
    }
  }
}

TEST_CASE("comm.shard_optimizer trains to the same bits as the all-reduce, optimizer state included") {
  auto probe = make_mpi_communicator("ring");
  const int p = probe->size();
  SharedDataFile data(*probe, synthetic_classification(120, 40, 3));
  TrainConfig cfg = short_run_config(data.path(), data.dir() + "/run");
  cfg.hidden = {64, 32};  // 4803 parameters: above auto's recursive-doubling size
  cfg.shuffle = true;
  cfg.comm_bucket_mb = 0;
  cfg.checkpoint_every_steps = 7;  // checkpoints gather the shards mid-run
  for (const char* algo : {"ring", "shm", "auto"}) {
    for (const char* optim : {"sgd", "adamw", "sgd+freeze"}) {
      CAPTURE(algo);
      CAPTURE(optim);
      auto comm = make_mpi_communicator(algo);
      cfg.optim.name = std::string(optim) == "adamw" ? "adamw" : "sgd";
      cfg.optim.nesterov = cfg.optim.name == "sgd";
      cfg.optim.weight_decay = 1e-3;
      cfg.lr = cfg.optim.name == "adamw" ? 0.01 : 0.2;
      cfg.freeze = std::string(optim) == "sgd+freeze" ? std::vector<std::string>{"dense_1"} : std::vector<std::string>{};
      std::vector<float> params[2], state[2];
      for (int sharded = 0; sharded < 2; ++sharded) {
        cfg.comm_shard_optimizer = sharded == 1;
        cfg.run_dir = data.dir() + "/run_" + algo + optim + std::to_string(sharded);
        Trainer t(cfg, *comm);
        CHECK(t.sharded() == (sharded == 1 && p > 1));
        const TrainResult r = t.run();
        CHECK(r.steps == 20);
        params[sharded] = params_of(t);
        for (const OptimSlot& slot : t.optimizer().slots())
          state[sharded].insert(state[sharded].end(), slot.values.begin(), slot.values.end());
        CHECK(t.optimizer().steps() == 20);
      }
      // shm adds in rank order whatever the cut; the ring's order depends on
      // the chunk an element falls in, and the gradients alone (sharded) are
      // cut otherwise than gradients plus the loss slots, as comm.bucket_mb
      // does: from 3 ranks on the same to rounding.
      const bool same_bits = std::string(algo) != "ring" || p <= 2;
      if (same_bits) {
        CHECK(all_ranks(*comm, params[0] == params[1]));
        CHECK(all_ranks(*comm, state[0] == state[1]));
      } else {
        CHECK(max_abs_diff(params[0], params[1]) < 1e-5);
        CHECK(max_abs_diff(state[0], state[1]) < 1e-5);
      }
      // Every rank holds the whole, same state once run() ends.
      std::vector<float> root = state[1];
      comm->broadcast(root.data(), root.size() * sizeof(float), 0);
      CHECK(all_ranks(*comm, root == state[1]));
      if (comm->rank() == 0) {  // the last checkpoint holds the whole state too
        const auto ckpts = RunFiles::list_checkpoints(data.dir() + "/run_" + algo + optim + "1");
        REQUIRE(!ckpts.empty());
        const SavedCheckpoint c = read_checkpoint_file(ckpts.front().second);
        std::vector<float> saved;
        for (const auto& slot : c.slots) saved.insert(saved.end(), slot.second.begin(), slot.second.end());
        CHECK(saved == state[1]);
      }
    }
  }
}

TEST_CASE("run.trace writes a Chrome trace with every rank's phases and buckets") {
  auto comm = make_mpi_communicator("ring");
  SharedDataFile data(*comm, synthetic_classification(120, 6, 3));
  TrainConfig cfg = short_run_config(data.path(), data.dir() + "/run_trace");
  cfg.trace_steps = 5;
  cfg.comm_overlap = true;
  Trainer t(cfg, *comm);
  t.run();
  if (comm->rank() == 0) {
    std::ifstream in(cfg.run_dir + "/trace.json");
    const nlohmann::json trace = nlohmann::json::parse(in);
    std::map<std::pair<int, std::string>, int> count;  // (rank, name) -> events
    for (const auto& e : trace.at("traceEvents"))
      if (e.at("ph") == "X") {
        ++count[{e.at("pid").get<int>(), e.at("name").get<std::string>()}];
        CHECK(e.at("dur").get<double>() >= 0);
        CHECK(e.at("args").at("step").get<int>() < 5);
      }
    for (int r = 0; r < comm->size(); ++r) {
      CAPTURE(r);
      for (const char* phase : {"data", "forward", "backward", "all-reduce (rest)", "optimizer", "allreduce bucket"})
        CHECK(count[{r, phase}] == 5);
    }
  }
}

TEST_CASE("uneven shards: every rank runs the same number of steps, remainder rows dropped") {
  auto comm = make_mpi_communicator("ring");
  const int p = comm->size();
  SharedDataFile data(*comm, synthetic_classification(37, 5, 2));
  TrainConfig cfg = short_run_config(data.path(), data.dir() + "/run");
  cfg.max_steps = 0;
  cfg.epochs = 2;
  cfg.batch_per_rank = 3;
  Trainer t(cfg, *comm);
  CHECK(t.sampler().rows_per_rank() == 37 / p);
  CHECK(t.sampler().dropped_rows() == 37 % p);
  const TrainResult r = t.run();
  CHECK(r.steps == 2 * ((37 / p + 2) / 3));
  CHECK(r.examples_seen == 2 * (37 / p) * p);
}

TEST_CASE("fewer training rows than ranks is a usage error on every rank") {
  auto comm = make_mpi_communicator("ring");
  const int p = comm->size();
  if (p < 2) return;
  Dataset tiny = synthetic_classification(p - 1, 3, 2);
  tiny.labels[0] = 1;  // two classes even with a single row
  SharedDataFile data(*comm, tiny);
  try {
    Trainer t(short_run_config(data.path(), data.dir() + "/run"), *comm);
    FAIL("expected an error");
  } catch (const CollectiveError& e) {
    CHECK(e.exit_code() == kExitUsage);
    CHECK(std::string(e.what()).find("fewer than the") != std::string::npos);
  }
}

TEST_CASE("a NaN in one rank's shard ends every rank with that rank's message") {
  auto comm = make_mpi_communicator("ring");
  const int p = comm->size();
  Dataset d = synthetic_classification(40, 4, 2);
  const int64_t bad_row = 2 * p + (p - 1);  // owned by the last rank
  d.x[bad_row * 4 + 1] = std::nanf("");
  SharedDataFile data(*comm, d);
  try {
    Trainer t(short_run_config(data.path(), data.dir() + "/run"), *comm);
    FAIL("expected an error");
  } catch (const CollectiveError& e) {
    const std::string msg = e.what();
    CHECK(e.exit_code() == kExitUsage);
    CHECK(msg.find("non-finite") != std::string::npos);
    CHECK(msg.find("row " + std::to_string(bad_row)) != std::string::npos);
    if (p > 1) CHECK(msg.find("rank " + std::to_string(p - 1)) != std::string::npos);
  }
}

TEST_CASE("evaluation metrics are over the whole validation set, whatever the world size") {
  auto comm = make_mpi_communicator("ring");
  SharedDataFile data(*comm, synthetic_classification(103, 6, 3));
  TrainConfig cfg = short_run_config(data.path(), data.dir() + "/run");
  cfg.val_path = data.path();  // evaluate on all 103 rows
  cfg.eval_batch = 10;
  cfg.max_steps = 5;
  Trainer t(cfg, *comm);
  const TrainResult r = t.run();
  REQUIRE(r.last_eval.count("val_accuracy") == 1);
  // Accuracy of 103 rows is a multiple of 1/103.
  const double correct = r.last_eval.at("val_accuracy") * 103.0;
  CHECK(correct == doctest::Approx(std::round(correct)).epsilon(1e-9));
  // Every rank derived the same metrics from the same reduced sums.
  double acc = r.last_eval.at("val_accuracy");
  comm->broadcast(&acc, sizeof(acc), 0);
  CHECK(all_ranks(*comm, acc == r.last_eval.at("val_accuracy")));
}

TEST_CASE("a diverging run stops on every rank at the same step and writes nothing from the bad state") {
  auto comm = make_mpi_communicator("ring");
  SharedDataFile data(*comm, synthetic_classification(80, 4, 2));
  TrainConfig cfg = short_run_config(data.path(), data.dir() + "/run");
  cfg.lr = 1e30;  // overflows within a few steps
  cfg.max_steps = 50;
  cfg.checkpoint_every_steps = 1;  // a checkpoint after every good step
  Trainer t(cfg, *comm);
  const TrainResult r = t.run();
  CHECK(r.stop == StopReason::kNonFinite);
  CHECK(r.steps < 50);
  CHECK(r.stop_message.find("diverged") != std::string::npos);
  // Same step (same message) everywhere.
  CHECK(broadcast_string(*comm, r.stop_message, 0) == r.stop_message);
  if (comm->rank() == 0) {
    // The newest checkpoint is the last good step; no final model.
    const auto ckpts = RunFiles::list_checkpoints(cfg.run_dir);
    REQUIRE(!ckpts.empty());
    CHECK(ckpts.front().first == r.steps);
    const SavedCheckpoint c = read_checkpoint_file(ckpts.front().second);
    CHECK(all_finite(c.model.params.data(), c.model.params.size()));
    CHECK(!std::filesystem::exists(cfg.run_dir + "/final.h5"));
  }
}

TEST_CASE("replicas that drift apart are caught at the next evaluation") {
  auto comm = make_mpi_communicator("ring");
  const int p = comm->size();
  SharedDataFile data(*comm, synthetic_classification(40 * p, 4, 2));
  TrainConfig cfg = short_run_config(data.path(), data.dir() + "/run");
  // Every replica updates every parameter. (Sharded, each step's all-gather
  // hands out the owner's values: a drift spreads or heals, never stays.)
  cfg.comm_shard_optimizer = false;
  Trainer t(cfg, *comm);
  CHECK_NOTHROW(t.check_replicas(0));
  if (p < 2) return;
  if (comm->rank() == p - 1) t.model().params()[3] += 1e-6f;  // one rank's copy drifts
  try {
    t.run();
    FAIL("expected the drift to be caught");
  } catch (const CollectiveError& e) {
    CHECK(e.exit_code() == kExitRuntime);
    CHECK(std::string(e.what()).find("rank " + std::to_string(p - 1) + ": replicas diverged") != std::string::npos);
  }
}

// Checkpoints, exact resume, best model and early stopping of the Trainer on
// the launched world size p (CTest runs this on 1..5 ranks): a run stopped at
// step k and resumed ends bit-identical to an uninterrupted one; damaged
// checkpoints are skipped; best.h5 describes its own weights.
#include <doctest/doctest.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "ringtrain/comm/mpi_communicator.hpp"
#include "ringtrain/train/trainer.hpp"
#include "ringtrain/util/stop_signal.hpp"
#include "train_fixtures.hpp"

using namespace ringtrain;
using namespace ringtrain::test;
namespace fs = std::filesystem;

namespace {

// Parameters, every optimizer slot and the optimizer step count, as bytes.
std::vector<float> state_of(const Trainer& t) {
  std::vector<float> s(t.model().params(), t.model().params() + t.model().num_params());
  for (const OptimSlot& slot : t.optimizer().slots()) s.insert(s.end(), slot.values.data(), slot.values.data() + slot.values.size());
  s.push_back(float(t.optimizer().steps()));
  return s;
}

// metrics.jsonl without the fields that are timings.
std::vector<nlohmann::json> metrics_without_timings(const std::string& dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    j.erase("elapsed_s");
    j.erase("samples_per_s");
    out.push_back(j);
  }
  return out;
}

// 37 rows per rank plus a remainder row; batch 4: 10 steps per epoch, the
// last one short. Validation, shuffling and dropout all on.
TrainConfig resumable_config(const std::string& data, const std::string& dir, const char* optim) {
  TrainConfig c = short_run_config(data, dir);
  c.val_fraction = 0.2;
  c.shuffle = true;
  c.dropout = 0.1f;
  c.optim.name = optim;
  c.lr = std::string(optim) == "adamw" ? 0.01 : 0.2;
  c.decay = Decay::kCosine;
  c.max_steps = 0;
  c.epochs = 3;
  c.checkpoint_every_steps = 3;
  c.checkpoint_keep_last = 100;
  return c;
}

}  // namespace

TEST_CASE("checkpoint: a run stopped at step k and resumed ends bit-identical to an uninterrupted run") {
  auto comm = make_mpi_communicator("ring");
  const int p = comm->size();
  SharedDataFile data(*comm, synthetic_classification(int64_t(47) * p + 1, 6, 3));
  for (const char* optim : {"sgd", "adamw"}) {
    CAPTURE(optim);
    const TrainConfig full_cfg = resumable_config(data.path(), data.dir() + "/full_" + optim, optim);
    Trainer full(full_cfg, *comm);
    const int64_t spe = full.sampler().steps_per_epoch();
    const TrainResult want = full.run();
    REQUIRE(want.stop == StopReason::kNone);
    const std::vector<float> want_state = state_of(full);
    // Mid-epoch, at an epoch boundary (right after the best model is saved:
    // the first evaluation always is a new best), and mid-epoch again.
    for (const int64_t k : {int64_t(5), spe, spe + 4}) {
      CAPTURE(k);
      TrainConfig cfg = resumable_config(data.path(), str_cat(data.dir(), "/part_", optim, "_", k), optim);
      cfg.stop_after_steps = k;
      {
        Trainer first(cfg, *comm);
        const TrainResult r = first.run();
        CHECK(r.interrupted);
        CHECK(r.steps == k);
      }
      cfg.stop_after_steps = 0;
      cfg.resume = "auto";
      Trainer second(cfg, *comm);
      CHECK(second.start_step() == k);
      const TrainResult got = second.run();
      CHECK(got.steps == want.steps);
      CHECK(got.examples_seen == want.examples_seen);
      const std::vector<float> got_state = state_of(second);
      REQUIRE(got_state.size() == want_state.size());
      CHECK(all_ranks(*comm, std::memcmp(got_state.data(), want_state.data(), got_state.size() * sizeof(float)) == 0));
      if (comm->rank() == 0) {
        CHECK(metrics_without_timings(cfg.run_dir) == metrics_without_timings(full_cfg.run_dir));
        CHECK(read_model_file(cfg.run_dir + "/best.h5").params == read_model_file(full_cfg.run_dir + "/best.h5").params);
      }
    }
  }
}

TEST_CASE("checkpoint: a damaged newest checkpoint is skipped for the previous one, still bit-exact") {
  auto comm = make_mpi_communicator("ring");
  const int p = comm->size();
  SharedDataFile data(*comm, synthetic_classification(int64_t(47) * p + 1, 6, 3));
  const TrainConfig full_cfg = resumable_config(data.path(), data.dir() + "/full", "sgd");
  Trainer full(full_cfg, *comm);
  full.run();
  for (const char* damage : {"truncate", "bitflip"}) {
    CAPTURE(damage);
    TrainConfig cfg = resumable_config(data.path(), data.dir() + "/damaged_" + damage, "sgd");
    cfg.stop_after_steps = 14;  // checkpoints at 3, 6, 9, 10 (epoch), 12, 14
    Trainer(cfg, *comm).run();
    if (comm->rank() == 0) {
      const std::string newest = cfg.run_dir + "/checkpoints/ckpt-14.h5";
      const auto size = fs::file_size(newest);
      if (std::string(damage) == "truncate") {
        fs::resize_file(newest, size / 2);
      } else {
        // Flip one bit in the middle of dense_0's kernel (raw float data).
        const SavedCheckpoint c = read_checkpoint_file(newest);
        std::ifstream in(newest, std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const ParamLayout layout = mlp_layout(c.model.spec);  // find() returns into it: keep it alive
        const char* needle = reinterpret_cast<const char*>(c.model.params.data() + layout.find("dense_0/kernel").offset + 8);
        const auto at = bytes.find(std::string(needle, 16));
        REQUIRE(at != std::string::npos);
        bytes[at + 5] ^= 0x10;
        std::ofstream(newest, std::ios::binary | std::ios::trunc) << bytes;
        CHECK_THROWS_AS(read_checkpoint_file(newest), UsageError);
      }
    }
    comm->barrier();
    cfg.stop_after_steps = 0;
    cfg.resume = "auto";
    Trainer resumed(cfg, *comm);
    CHECK(resumed.start_step() == 12);
    resumed.run();
    CHECK(all_ranks(*comm, state_of(resumed) == state_of(full)));
  }
}

TEST_CASE("checkpoint: resuming with another world size or batch is refused unless allow_reshape") {
  auto comm = make_mpi_communicator("ring");
  const int p = comm->size();
  SharedDataFile data(*comm, synthetic_classification(int64_t(47) * p + 1, 6, 3));
  TrainConfig cfg = resumable_config(data.path(), data.dir() + "/reshape", "sgd");
  cfg.stop_after_steps = 7;
  Trainer(cfg, *comm).run();
  if (comm->rank() != 0) return;
  SelfCommunicator self;
  TrainConfig other = cfg;
  other.stop_after_steps = 0;
  other.resume = "auto";
  other.batch_per_rank = cfg.batch_per_rank * 2;  // differs even on 1 rank
  try {
    Trainer t(other, self);
    FAIL("expected a refusal");
  } catch (const CollectiveError& e) {
    CHECK(e.exit_code() == kExitUsage);
    CHECK(std::string(e.what()).find("allow_reshape") != std::string::npos);
  }
  other.allow_reshape = true;
  Trainer t(other, self);
  // The same examples seen, at the new geometry's step.
  const int64_t seen = int64_t(7) * cfg.batch_per_rank * p;  // 7 full steps of the first run
  CHECK(t.start_step() == t.plan().steps_to_reach(seen));
  const TrainResult r = t.run();
  CHECK(r.stop == StopReason::kNone);
  CHECK(r.steps == t.plan().total_steps);
  // What this launch trained counts from the checkpoint's examples, not from
  // the new geometry's first step (which lies past them).
  CHECK(r.trained_examples == r.examples_seen - seen);
}

TEST_CASE("checkpoint: other settings are refused on resume, naming the keys") {
  auto comm = make_mpi_communicator("ring");
  SharedDataFile data(*comm, synthetic_classification(int64_t(47) * comm->size() + 1, 6, 3));
  TrainConfig cfg = resumable_config(data.path(), data.dir() + "/settings", "sgd");
  cfg.stop_after_steps = 4;
  cfg.effective_ini = "[optim]\nlr = 0.2\n[train]\nbatch_per_rank = 4\n";
  Trainer(cfg, *comm).run();
  cfg.stop_after_steps = 0;
  cfg.resume = "auto";
  cfg.effective_ini = "[optim]\nlr = 0.3\n[train]\nbatch_per_rank = 4\n";
  try {
    Trainer t(cfg, *comm);
    FAIL("expected a refusal");
  } catch (const CollectiveError& e) {
    CHECK(e.exit_code() == kExitUsage);
    CHECK(std::string(e.what()).find("optim.lr (0.2 -> 0.3)") != std::string::npos);
  }
}

TEST_CASE("pre-emption: a stop signal on one rank stops every rank on the same step, checkpointed, resumable bit-exact") {
  auto comm = make_mpi_communicator("ring");
  const int p = comm->size();
  SharedDataFile data(*comm, synthetic_classification(int64_t(47) * p + 1, 6, 3));
  const TrainConfig full_cfg = resumable_config(data.path(), data.dir() + "/full", "adamw");
  Trainer full(full_cfg, *comm);
  const TrainResult want = full.run();
  const std::vector<float> want_state = state_of(full);

  TrainConfig cfg = resumable_config(data.path(), data.dir() + "/preempted", "adamw");
  cfg.checkpoint_every_steps = 0;  // only the evaluation points and the pre-emption checkpoint
  cfg.stop_after_steps = 6;
  { Trainer(cfg, *comm).run(); }
  cfg.stop_after_steps = 0;
  cfg.resume = "auto";
  install_stop_signal_handlers();
  set_stop_signal(0);
  if (comm->rank() == p - 1) std::raise(SIGUSR1);  // through the real handler
  TrainResult r;
  {
    Trainer t(cfg, *comm);
    r = t.run();
  }
  CHECK(stop_signal() == (comm->rank() == p - 1 ? SIGUSR1 : 0));
  set_stop_signal(0);
  CHECK(r.preempted);
  CHECK(r.interrupted);
  CHECK(r.preempted_ranks == 1);
  CHECK(r.steps == 7);  // the step in flight when the flag was seen, no further
  if (comm->rank() == 0) CHECK(fs::exists(cfg.run_dir + "/checkpoints/ckpt-7.h5"));
  Trainer last(cfg, *comm);
  CHECK(last.start_step() == 7);
  const TrainResult got = last.run();
  CHECK_FALSE(got.preempted);
  CHECK(got.steps == want.steps);
  const std::vector<float> got_state = state_of(last);
  REQUIRE(got_state.size() == want_state.size());
  CHECK(all_ranks(*comm, std::memcmp(got_state.data(), want_state.data(), got_state.size() * sizeof(float)) == 0));
  if (comm->rank() == 0) CHECK(metrics_without_timings(cfg.run_dir) == metrics_without_timings(full_cfg.run_dir));
}

TEST_CASE("pre-emption: a stop signal seen on the last step changes nothing (the run is complete)") {
  auto comm = make_mpi_communicator("ring");
  SharedDataFile data(*comm, synthetic_classification(int64_t(20) * comm->size(), 6, 3));
  TrainConfig cfg = short_run_config(data.path(), data.dir() + "/complete");
  cfg.max_steps = 1;
  set_stop_signal(SIGTERM);
  Trainer t(cfg, *comm);
  const TrainResult r = t.run();
  set_stop_signal(0);
  CHECK_FALSE(r.preempted);
  CHECK_FALSE(r.interrupted);
  CHECK(r.steps == 1);
}

// Best model, early stopping, monitor rules, frozen layers and init_from on
// the launched world size: rank 0 decides, every rank acts on the decision,
// and best.h5 always describes the weights it holds.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "ringtrain/comm/mpi_communicator.hpp"
#include "ringtrain/train/trainer.hpp"
#include "train_fixtures.hpp"

using namespace ringtrain;
using namespace ringtrain::test;
namespace fs = std::filesystem;

namespace {

std::vector<nlohmann::json> metrics_lines(const std::string& dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

double number(const Attrs& a, const std::string& k) {
  const AttrValue& v = a.at(k);
  return std::holds_alternative<double>(v) ? std::get<double>(v) : double(std::get<int64_t>(v));
}

TrainConfig eval_config(const std::string& data, const std::string& dir) {
  TrainConfig c = short_run_config(data, dir);
  c.val_fraction = 0.25;
  c.max_steps = 0;
  c.epochs = 6;
  c.checkpoint_keep_last = 100;
  return c;
}

int exit_code_of(Communicator& comm, const TrainConfig& cfg) {
  try {
    Trainer t(cfg, comm);
    t.run();
    return 0;
  } catch (const CollectiveError& e) {
    return e.exit_code();
  }
}

}  // namespace

TEST_CASE("best model: best.h5 holds the metrics line of its own step, not the end of training") {
  auto comm = make_mpi_communicator("ring");
  SharedDataFile data(*comm, synthetic_classification(48 * comm->size(), 6, 3));
  TrainConfig cfg = eval_config(data.path(), data.dir() + "/best");
  // Loss falls as training goes on, so with mode=max on it the monitored
  // value gets worse after the first evaluation: the best stays early.
  cfg.monitor = "val_loss";
  cfg.mode = "max";
  cfg.min_delta = "1000";  // and only the first evaluation counts as a best
  Trainer t(cfg, *comm);
  const TrainResult r = t.run();
  CHECK(r.stop == StopReason::kNone);
  if (comm->rank() != 0) return;
  const auto lines = metrics_lines(cfg.run_dir);
  REQUIRE(lines.size() == 6);
  CHECK(lines.back()["val_loss"].get<double>() < lines.front()["val_loss"].get<double>());
  const SavedModel best = read_model_file(cfg.run_dir + "/best.h5");
  const int64_t step = std::get<int64_t>(best.metrics.at("step"));
  CHECK(step < r.steps);
  const auto line = std::find_if(lines.begin(), lines.end(), [&](const auto& j) { return j["step"] == step; });
  REQUIRE(line != lines.end());
  for (const char* k : {"val_loss", "val_accuracy", "val_error", "val_mcc", "val_macro_f1", "train_loss", "epoch"}) {
    CAPTURE(k);
    CHECK(number(best.metrics, k) == (*line)[k].get<double>());
  }
  CHECK(number(best.metrics, "examples_seen") == (*line)["examples_seen"].get<double>());
  CHECK(std::get<std::string>(best.metrics.at("monitor")) == "val_loss");
  CHECK(std::get<std::string>(best.metrics.at("mode")) == "max");
  // The weights are those of that step: the checkpoint taken there.
  const SavedCheckpoint at = read_checkpoint_file(str_cat(cfg.run_dir, "/checkpoints/ckpt-", step, ".h5"));
  CHECK(at.model.params == best.params);
  // final.h5 is the end of training.
  const SavedModel fin = read_model_file(cfg.run_dir + "/final.h5");
  CHECK(fin.params == std::vector<float>(t.model().params(), t.model().params() + t.model().num_params()));
  CHECK(std::get<int64_t>(fin.metrics.at("step")) == r.steps);
}

TEST_CASE("best model: top-k versioned files and manifest aliases") {
  auto comm = make_mpi_communicator("ring");
  SharedDataFile data(*comm, synthetic_classification(48 * comm->size(), 6, 3));
  TrainConfig cfg = eval_config(data.path(), data.dir() + "/topk");
  cfg.keep_best = 2;
  cfg.checkpoint_keep_last = 2;
  Trainer(cfg, *comm).run();
  if (comm->rank() != 0) return;
  int versioned = 0;
  for (const auto& e : fs::directory_iterator(cfg.run_dir))
    versioned += e.path().filename().string().rfind("best-step", 0) == 0;
  CHECK(versioned == 2);
  CHECK(RunFiles::list_checkpoints(cfg.run_dir).size() == 2);
  std::ifstream in(cfg.run_dir + "/manifest.json");
  const auto m = nlohmann::json::parse(in);
  CHECK(m["aliases"]["best"] == "best.h5");
  CHECK(m["aliases"]["latest"] == "checkpoints/ckpt-" + std::to_string(RunFiles::list_checkpoints(cfg.run_dir)[0].first) + ".h5");
  for (const auto& f : m["files"]) {
    CAPTURE(f.dump());
    const std::string path = cfg.run_dir + "/" + f["path"].get<std::string>();
    REQUIRE(fs::exists(path));
    char crc[16];
    std::snprintf(crc, sizeof crc, "%08x", file_crc32(path));
    CHECK(f["crc32"] == crc);
  }
}

TEST_CASE("early stopping: patience, baseline, divergence and restore_best stop every rank at the same step") {
  auto comm = make_mpi_communicator("ring");
  SharedDataFile data(*comm, synthetic_classification(48 * comm->size(), 6, 3));
  SUBCASE("patience") {
    TrainConfig cfg = eval_config(data.path(), data.dir() + "/patience");
    cfg.es_min_delta = "1000";  // no evaluation after the first improves by that much
    cfg.patience = 2;
    Trainer t(cfg, *comm);
    const TrainResult r = t.run();
    CHECK(r.stop == StopReason::kPatience);
    CHECK(r.steps == 3 * t.plan().steps_per_pass);  // evaluations 2 and 3 did not improve
    CHECK(all_ranks(*comm, broadcast_string(*comm, r.stop_message, 0) == r.stop_message));
  }
  SUBCASE("baseline") {
    TrainConfig cfg = eval_config(data.path(), data.dir() + "/baseline");
    cfg.baseline = "0.0001";  // val_loss never gets that low here
    cfg.patience = 2;
    Trainer t(cfg, *comm);
    const TrainResult r = t.run();
    CHECK(r.stop == StopReason::kBaseline);
    CHECK(r.steps == 2 * t.plan().steps_per_pass);
  }
  SUBCASE("divergence") {
    TrainConfig cfg = eval_config(data.path(), data.dir() + "/divergence");
    cfg.divergence = "0.001";  // any real val_loss is above it
    Trainer t(cfg, *comm);
    const TrainResult r = t.run();
    CHECK(r.stop == StopReason::kDivergence);
    CHECK(r.steps == t.plan().steps_per_pass);
    if (comm->rank() == 0) CHECK(!fs::exists(cfg.run_dir + "/final.h5"));
  }
  SUBCASE("restore_best") {
    TrainConfig cfg = eval_config(data.path(), data.dir() + "/restore");
    cfg.mode = "max";  // val_loss falls: the best stays early
    cfg.es_min_delta = "1000";
    cfg.patience = 3;
    cfg.restore_best = true;
    Trainer t(cfg, *comm);
    const TrainResult r = t.run();
    CHECK(r.stop == StopReason::kPatience);
    const std::vector<float> now(t.model().params(), t.model().params() + t.model().num_params());
    std::vector<float> best = now;
    if (comm->rank() == 0) {
      const SavedModel b = read_model_file(cfg.run_dir + "/best.h5");
      const SavedModel f = read_model_file(cfg.run_dir + "/final.h5");
      CHECK(f.params == b.params);
      CHECK(number(f.metrics, "step") == number(b.metrics, "step"));
      best = b.params;
    }
    comm->broadcast(best.data(), best.size() * sizeof(float), 0);
    CHECK(all_ranks(*comm, best == now));  // every rank ends with the best weights
  }
}

TEST_CASE("monitor: direction from the registry, unknown names refused before training") {
  auto comm = make_mpi_communicator("ring");
  SharedDataFile data(*comm, synthetic_classification(48 * comm->size(), 6, 3));
  TrainConfig cfg = eval_config(data.path(), data.dir() + "/monitor");
  cfg.monitor = "val_bogus";
  CHECK(exit_code_of(*comm, cfg) == kExitUsage);
  cfg.run_dir += "2";
  cfg.monitor = "val_accuracy";
  cfg.val_fraction = 0;  // no validation data: no val_* metrics
  CHECK(exit_code_of(*comm, cfg) == kExitUsage);
  cfg.run_dir += "3";
  cfg.monitor = "auto";  // train_loss without validation
  cfg.epochs = 1;
  Trainer t(cfg, *comm);
  t.run();
  if (comm->rank() == 0) {
    const SavedModel best = read_model_file(cfg.run_dir + "/best.h5");
    CHECK(std::get<std::string>(best.metrics.at("monitor")) == "train_loss");
    CHECK(std::get<std::string>(best.metrics.at("mode")) == "min");
  }
}

TEST_CASE("freeze: frozen layers are bit-identical after training, the others move") {
  auto comm = make_mpi_communicator("ring");
  SharedDataFile data(*comm, synthetic_classification(48 * comm->size(), 6, 3));
  for (const char* optim : {"sgd", "adamw"}) {
    CAPTURE(optim);
    TrainConfig cfg = eval_config(data.path(), data.dir() + "/freeze_" + optim);
    cfg.optim.name = optim;
    cfg.optim.weight_decay = 0.01;  // decay must not touch frozen weights either
    cfg.freeze = {"dense_0", "dense_2"};
    Trainer t(cfg, *comm);
    const std::vector<float> before(t.model().params(), t.model().params() + t.model().num_params());
    t.run();
    for (const TensorSpec& s : t.model().layout().tensors()) {
      CAPTURE(s.name);
      const bool frozen = s.name.rfind("dense_1", 0) != 0;
      const bool same = std::equal(before.begin() + s.offset, before.begin() + s.offset + s.size(),
                                   t.model().params() + s.offset);
      if (frozen || s.name == "dense_1/kernel") CHECK(same == frozen);
    }
  }
  TrainConfig bad = eval_config(data.path(), data.dir() + "/freeze_bad");
  bad.freeze = {"dense_7"};
  CHECK(exit_code_of(*comm, bad) == kExitUsage);
}

TEST_CASE("init_from: weights of a saved model; a new head only with new_head") {
  auto comm = make_mpi_communicator("ring");
  SharedDataFile data3(*comm, synthetic_classification(48 * comm->size(), 6, 3), "three.h5");
  SharedDataFile data4(*comm, synthetic_classification(48 * comm->size(), 6, 4), "four.h5");
  TrainConfig src = eval_config(data3.path(), data3.dir() + "/source");
  src.epochs = 2;
  Trainer(src, *comm).run();
  const std::string model = src.run_dir + "/best.h5";

  TrainConfig same = eval_config(data3.path(), data3.dir() + "/same");
  same.init_from = model;
  same.seed = 99;  // a different fresh init, which init_from must override
  Trainer t(same, *comm);
  std::vector<float> want(t.model().num_params());
  if (comm->rank() == 0) want = read_model_file(model).params;
  comm->broadcast(want.data(), want.size() * sizeof(float), 0);
  CHECK(all_ranks(*comm, std::equal(want.begin(), want.end(), t.model().params())));

  TrainConfig head = eval_config(data4.path(), data4.dir() + "/head");
  head.init_from = model;
  CHECK(exit_code_of(*comm, head) == kExitUsage);  // 4 classes, the model has 3
  head.run_dir += "2";
  head.new_head = true;
  Trainer h(head, *comm);
  if (comm->rank() == 0) {
    const SavedModel m = read_model_file(model);
    const ParamLayout from = mlp_layout(m.spec);
    for (const TensorSpec& s : h.model().layout().tensors()) {
      CAPTURE(s.name);
      const bool copied = std::equal(m.params.begin() + from.find(s.name).offset,
                                     m.params.begin() + from.find(s.name).offset + from.find(s.name).size(),
                                     h.model().params() + s.offset);
      if (s.name.rfind("dense_2", 0) != 0) CHECK(copied);
    }
    CHECK(h.model().output_size() == 4);
  }
}

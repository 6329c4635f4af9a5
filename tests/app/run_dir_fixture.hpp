// A synthetic run directory as `ringtrain train` leaves it (config.ini,
// metrics.jsonl, events.jsonl, best.h5, test_metrics.json), written with the
// real writers where there is one, for the plot, report and run-summary tests.
#pragma once

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "ringtrain/app/run_summary.hpp"
#include "ringtrain/io/model_file.hpp"
#include "ringtrain/nn/mlp.hpp"

namespace ringtrain::test {

struct FakeRun {
  int batch_per_rank = 64;
  int world = 2;
  int evals = 4;                                    // one per 1000 examples
  int64_t best_step = 0;                            // 0: the evaluation with the lowest val_loss
  std::string end_reason = "completed";             // "" for no end record (killed)
  std::map<std::string, std::string> extra_config;  // "section.key" -> value, overriding

  // val_loss falls, then rises after the second evaluation.
  static double val_loss(int i) { return 1.0 / (1 + i) + (i > 1 ? 0.2 * (i - 1) : 0.0); }

  void write(const std::string& dir) const {
    namespace fs = std::filesystem;
    fs::create_directories(dir);
    std::map<std::string, std::map<std::string, std::string>> ini = {
        {"", {{"task", "classification"}, {"resume", "none"}}},
        {"run", {{"dir", dir}}},
        {"train", {{"batch_per_rank", std::to_string(batch_per_rank)}, {"epochs", "2"}, {"seed", "42"}}},
        {"eval", {{"monitor", "auto"}, {"mode", "auto"}}},
        {"optim", {{"lr", "0.1"}, {"name", "sgd"}}}};
    for (const auto& [k, v] : extra_config) {
      const auto dot = k.find('.');
      ini[k.substr(0, dot)][k.substr(dot + 1)] = v;
    }
    std::ofstream cfg(dir + "/config.ini");
    cfg << "# effective configuration\n";
    for (const auto& [section, keys] : ini) {
      if (!section.empty()) cfg << "\n[" << section << "]\n";
      for (const auto& [k, v] : keys) cfg << k << " = " << v << "\n";
    }
    const int64_t global = int64_t(batch_per_rank) * world;
    std::ofstream metrics(dir + "/metrics.jsonl"), events(dir + "/events.jsonl");
    events << nlohmann::ordered_json{{"event", "start"},
                                     {"step", 0},
                                     {"examples_seen", 0},
                                     {"world_size", world},
                                     {"batch_per_rank", batch_per_rank},
                                     {"global_batch", global},
                                     {"base_lr", 0.1},
                                     {"effective_lr", 0.1 * double(global) / 256},
                                     {"pass_examples", 2000},
                                     {"monitor", "val_loss"},
                                     {"mode", "min"}}
                  .dump()
           << "\n";
    int best = 0;
    for (int i = 0; i < evals; ++i) {
      const int64_t examples = 1000 * (i + 1), step = examples / global;
      if (val_loss(i) < val_loss(best)) best = i;
      metrics << nlohmann::ordered_json{{"step", step},
                                        {"epoch", examples / 2000.0},
                                        {"examples_seen", examples},
                                        {"lr", 0.05},
                                        {"train_loss", 1.5 / (1 + i)},
                                        {"val_loss", val_loss(i)},
                                        {"val_accuracy", 0.5 + 0.1 * i},
                                        {"elapsed_s", 0.5 * i},
                                        {"samples_per_s", 1e5}}
                     .dump()
              << "\n";
      events << nlohmann::ordered_json{{"event", "checkpoint"},
                                       {"step", step},
                                       {"examples_seen", examples},
                                       {"path", "checkpoints/ckpt-" + std::to_string(step) + ".h5"}}
                    .dump()
             << "\n";
    }
    const int64_t last = 1000 * int64_t(evals);
    if (!end_reason.empty())
      events << nlohmann::ordered_json{{"event", "end"},          {"reason", end_reason}, {"step", last / global},
                                       {"examples_seen", last},   {"wall_s", 2.5},        {"train_s", 2.0},
                                       {"trained_examples", last}}
                    .dump()
             << "\n";
    SavedModel m;
    m.spec.sizes = {4, 3, 2};
    m.params.assign(mlp_layout(m.spec).total(), 0.25f);
    const int64_t examples = 1000 * (best + 1);
    m.metrics = {{"step", best_step ? best_step : examples / global},
                 {"epoch", examples / 2000.0},
                 {"examples_seen", examples},
                 {"monitor", std::string("val_loss")},
                 {"mode", std::string("min")},
                 {"train_loss", 1.5 / (1 + best)},
                 {"val_loss", val_loss(best)},
                 {"val_accuracy", 0.5 + 0.1 * best}};
    m.config = "task = classification\n";
    write_model_file(dir + "/best.h5", m);
    std::ofstream(dir + "/test_metrics.json") << R"({"test_accuracy": 0.8, "test_loss": 0.4})"
                                              << "\n";
  }
};

// Two runs that differ in their batch size only: "a" (64 per rank, completed)
// and "b" (128, stopped early), written under `dir` and read back.
inline std::vector<RunSummary> batch_pair(const std::string& dir) {
  FakeRun a, b;
  b.batch_per_rank = 128;
  b.end_reason = "early_stop";
  a.write(dir + "/a");
  b.write(dir + "/b");
  return {load_run(dir + "/a"), load_run(dir + "/b")};
}

}  // namespace ringtrain::test

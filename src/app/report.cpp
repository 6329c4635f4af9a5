// `ringtrain report RUN_DIR [RUN_DIR ...] [--json]`: one column per run (or
// one JSON object per run) with how it was run (world size, global batch,
// effective lr), how far it got (examples, wall time, throughput, why it
// stopped), its best model with every metric best.h5 holds, the final
// metrics, and the configuration keys that differ between the runs.
//
// Figures come from the run directory only (run_summary.hpp): the "start"
// and "end" records of events.jsonl, metrics.jsonl, best.h5, test_metrics.json
// and config.ini. A launch that was killed has no "end" record; its time is
// missing from the wall time, and the report says so.
#include "ringtrain/app/report.hpp"

#include <algorithm>
#include <cstdio>
#include <set>

#include "ringtrain/app/command_line.hpp"
#include "ringtrain/app/run_summary.hpp"
#include "ringtrain/util/error.hpp"

namespace ringtrain {

namespace po = boost::program_options;
using Json = nlohmann::ordered_json;

namespace {

// Keys that say how a run was launched, not what it computes: run.dir is
// each column's name; resume, allow_reshape and progress differ between a
// resumed run and a fresh one of the same configuration.
bool compared_key(const std::string& key) {
  return key != "run.dir" && key != "resume" && key != "train.allow_reshape" && key != "run.progress";
}

// How the run was launched (the last launch; earlier world sizes listed).
void add_setup(const RunSummary& r, Json& j) {
  const Json* start = r.last_event("start");
  const auto from_start = [&](const char* key) { return start && start->contains(key) ? (*start)[key] : Json(); };
  for (const char* key :
       {"world_size", "batch_per_rank", "global_batch", "base_lr", "effective_lr", "algorithm", "parameters"})
    j[key] = from_start(key);
  // Micro-batches per step (train.accumulate); runs from before it have 1.
  j["accumulate"] = start == nullptr ? Json() : Json(start->value("accumulate", int64_t{1}));
  Json sizes = Json::array();
  for (const Json& e : r.events)
    if (e["event"] == "start" && e.contains("world_size")) sizes.push_back(e["world_size"]);
  j["launch_world_sizes"] = sizes;
}

// Examples, time and throughput summed over launches; why the last one ended.
void add_progress(const RunSummary& r, Json& j) {
  int launches = 0, ended = 0;
  double wall = 0, train = 0, trained = 0;
  const Json* last = nullptr;
  for (const Json& e : r.events) {
    if (e["event"] == "start") ++launches, last = &e;
    if (e["event"] != "end") continue;
    ++ended, last = &e;
    wall += e.value("wall_s", 0.0);
    train += e.value("train_s", 0.0);
    trained += e.value("trained_examples", 0.0);
  }
  // How far the run's current state got: its evaluations and checkpoints,
  // and the end of the last launch (a launch that diverged and was resumed
  // from an earlier checkpoint did not get the run there).
  int64_t examples = 0;
  const auto reach = [&](const Json& e) { examples = std::max(examples, e["examples_seen"].get<int64_t>()); };
  for (const Json& e : r.evals) reach(e);
  for (const Json& e : r.events)
    if (e["event"] == "checkpoint") reach(e);
  if (last != nullptr && (*last)["event"] == "end") reach(*last);
  j["examples_seen"] = examples;
  j["launches"] = launches;
  j["unfinished_launches"] = launches - ended;
  j["wall_s"] = ended ? Json(wall) : Json();
  j["train_s"] = ended ? Json(train) : Json();
  j["samples_per_s"] = train > 0 ? Json(trained / train) : Json();
  if (last == nullptr) {
    j["stop_reason"] = r.events.empty() ? "unknown (no events.jsonl)" : "unknown";
  } else if ((*last)["event"] == "start") {
    j["stop_reason"] = "unfinished (killed, crashed, or still running)";
  } else {
    j["stop_reason"] = (*last)["reason"];
    if (last->contains("message")) j["stop_message"] = (*last)["message"];
  }
}

Json run_record(const RunSummary& r, const std::string& label) {
  Json j;
  j["label"] = label;
  j["dir"] = r.dir;
  add_setup(r, j);
  add_progress(r, j);
  j["monitor"] = r.monitor();
  j["mode"] = r.mode();
  j["best"] = r.has_best ? attrs_json(r.best) : Json();
  Json final_metrics = Json::object();
  if (!r.evals.empty())
    for (const auto& [k, v] : r.evals.back().items())
      if (k != "elapsed_s" && k != "samples_per_s") final_metrics[k] = v;
  j["final"] = final_metrics;
  Json test = Json::object();
  for (const auto& [k, v] : r.test) test[k] = v;
  j["test"] = test;
  return j;
}

Json config_differences(const std::vector<RunSummary>& runs, const std::vector<std::string>& labels) {
  std::set<std::string> keys;
  for (const RunSummary& r : runs)
    for (const auto& [k, v] : r.config) keys.insert(k);
  Json out = Json::object();
  for (const std::string& k : keys) {
    if (!compared_key(k)) continue;
    Json values = Json::object();
    std::set<std::string> distinct;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      const auto it = runs[i].config.find(k);
      const std::string v = it == runs[i].config.end() ? "(unset)" : it->second;
      values[labels[i]] = v;
      distinct.insert(v);
    }
    if (distinct.size() > 1) out[k] = values;
  }
  return out;
}

std::string cell(const Json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v.get<double>());
    return buf;
  }
  return v.dump();
}

using Row = std::pair<std::string, std::vector<std::string>>;

void add_metric_rows(std::vector<Row>& rows, const Json& runs, const char* section, const std::string& prefix) {
  std::vector<std::string> keys;
  for (const Json& r : runs)
    if (r[section].is_object())
      for (const auto& [k, v] : r[section].items())
        if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
  for (const std::string& k : keys) {
    Row row{prefix + k, {}};
    for (const Json& r : runs)
      row.second.push_back(r[section].is_object() && r[section].contains(k) ? cell(r[section][k]) : "-");
    rows.push_back(row);
  }
}

// The rows of the table: one per figure, one cell per run.
std::vector<Row> table_rows(const Json& runs) {
  std::vector<Row> rows;
  const auto add = [&](const std::string& name, auto&& f) {
    Row row{name, {}};
    for (const Json& r : runs) row.second.push_back(f(r));
    rows.push_back(row);
  };
  add("run", [](const Json& r) { return r["label"].get<std::string>(); });
  add("world size", [](const Json& r) {
    // A reshaped run: the world sizes of its launches, oldest first.
    std::string earlier;
    const Json& sizes = r["launch_world_sizes"];
    for (std::size_t i = 0; i + 1 < sizes.size(); ++i) earlier += cell(sizes[i]) + " -> ";
    for (std::size_t i = 0; i + 1 < sizes.size(); ++i)
      if (sizes[i] != sizes.back())
        return str_cat(cell(r["world_size"]), " (launches: ", earlier, cell(sizes.back()), ")");
    return cell(r["world_size"]);
  });
  add("global batch", [](const Json& r) {
    return r["global_batch"].is_null()
               ? "-"
               : str_cat(cell(r["global_batch"]), " (", cell(r["batch_per_rank"]), " x ",
                         r["accumulate"].is_number_integer() && r["accumulate"].get<int64_t>() > 1
                             ? str_cat(cell(r["accumulate"]), " accumulated x ")
                             : std::string(),
                         cell(r["world_size"]), ")");
  });
  add("effective lr", [](const Json& r) { return cell(r["effective_lr"]); });
  add("examples seen", [](const Json& r) { return cell(r["examples_seen"]); });
  add("wall time (s)", [](const Json& r) {
    const int missing = r["unfinished_launches"].get<int>();
    return cell(r["wall_s"]) + (missing ? str_cat(" (+", missing, " unfinished launch)") : "");
  });
  add("throughput (samples/s)", [](const Json& r) {
    return r["samples_per_s"].is_null() ? std::string("-") : str_cat(int64_t(r["samples_per_s"].get<double>() + 0.5));
  });
  add("launches", [](const Json& r) { return cell(r["launches"]); });
  add("stopped", [](const Json& r) { return cell(r["stop_reason"]); });
  add("best chosen by", [](const Json& r) { return str_cat(cell(r["monitor"]), " (", cell(r["mode"]), ")"); });
  add_metric_rows(rows, runs, "best", "best ");
  add_metric_rows(rows, runs, "final", "final ");
  add_metric_rows(rows, runs, "test", "");
  return rows;
}

void print_table(const Json& report) {
  const Json& runs = report["runs"];
  const std::vector<Row> rows = table_rows(runs);
  std::vector<Row> diffs;
  for (const auto& [k, values] : report["config_differences"].items()) {
    Row row{"  " + k, {}};
    for (const Json& r : runs) row.second.push_back(values[r["label"].get<std::string>()].get<std::string>());
    diffs.push_back(row);
  }
  std::vector<std::size_t> width(runs.size() + 1, 0);
  const auto measure = [&](const std::vector<Row>& list) {
    for (const Row& row : list) {
      width[0] = std::max(width[0], row.first.size());
      for (std::size_t i = 0; i < row.second.size(); ++i) width[i + 1] = std::max(width[i + 1], row.second[i].size());
    }
  };
  measure(rows);
  measure(diffs);
  const auto print = [&](const Row& row) {
    std::printf("%-*s", int(width[0]), row.first.c_str());
    for (std::size_t i = 0; i < row.second.size(); ++i) std::printf("  %-*s", int(width[i + 1]), row.second[i].c_str());
    std::printf("\n");
  };
  for (const Row& row : rows) print(row);
  if (runs.size() > 1) {
    std::printf("\nconfig keys that differ (run.dir, resume, run.progress, train.allow_reshape aside):%s\n",
                diffs.empty() ? " none" : "");
    for (const Row& row : diffs) print(row);
  }
  bool first = true;
  for (const Json& r : runs)
    if (r.contains("stop_message")) {
      std::printf("%s%s: %s\n", first ? "\n" : "", r["label"].get<std::string>().c_str(),
                  r["stop_message"].get<std::string>().c_str());
      first = false;
    }
}

}  // namespace

Json report_json(const std::vector<RunSummary>& runs) {
  const std::vector<std::string> labels = run_labels(runs);
  Json out;
  out["runs"] = Json::array();
  for (std::size_t i = 0; i < runs.size(); ++i) out["runs"].push_back(run_record(runs[i], labels[i]));
  out["config_differences"] = config_differences(runs, labels);
  return out;
}

int run_report(const std::vector<std::string>& args) {
  po::options_description opts("report options");
  opts.add_options()("json", po::bool_switch(), "print one JSON object instead of the table");
  po::variables_map vm;
  if (!parse_command("report", "ringtrain report RUN_DIR [RUN_DIR ...] [--json]", opts, args, std::size_t(-1),
                     {"positional"}, vm, "RUN_DIR"))
    return kExitSuccess;
  std::vector<RunSummary> runs;
  for (const std::string& d : positional_words(vm)) runs.push_back(load_run(d));
  const Json report = report_json(runs);
  if (vm["json"].as<bool>())
    std::printf("%s\n", report.dump(2).c_str());
  else
    print_table(report);
  return kExitSuccess;
}

}  // namespace ringtrain

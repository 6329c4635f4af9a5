// RunSummary: what a run directory says about its run, read for
// `ringtrain plot` and `ringtrain report` (no MPI, nothing written).
//
//   config.ini         the effective configuration ("section.key" -> value)
//   metrics.jsonl      one record per evaluation (a torn last line is skipped)
//   events.jsonl       start / checkpoint / end records (train/run_log.hpp)
//   best.h5            the best model's /metrics attributes (checksummed read)
//   test_metrics.json  test-set metrics, when the run had a test set
//
// Only config.ini is required: a run that has not evaluated yet, or that was
// killed, is still a run. Anything present but unreadable is a UsageError
// naming the file and the problem.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ringtrain/io/hdf5.hpp"

namespace ringtrain {

// nlohmann's serializer and comparisons recurse once per level: a record
// nested 200,000 deep overflows the stack when printed. Texts nested deeper
// than this are treated as not parsing.
constexpr int kMaxJsonDepth = 64;
// Parses a JSON text; is_discarded() when it does not parse or nests deeper
// than kMaxJsonDepth.
nlohmann::ordered_json parse_json_shallow(const std::string& text);
nlohmann::ordered_json parse_json_shallow(std::istream& in);

struct RunSummary {
  std::string dir;
  std::map<std::string, std::string> config;   // "train.batch_per_rank" -> "64"; top-level keys bare ("task")
  std::vector<nlohmann::ordered_json> evals;   // metrics.jsonl, in order
  std::vector<nlohmann::ordered_json> events;  // events.jsonl, in order
  bool has_best = false;
  Attrs best;                          // best.h5 /metrics: every metric + step, epoch, monitor, mode
  std::map<std::string, double> test;  // test_metrics.json

  // The last "start" / "end" event, or nullptr. A start after the last end
  // means the last launch never finished (killed, crashed or running).
  const nlohmann::ordered_json* last_event(const std::string& name) const;
  // The metric best.h5 was chosen by and its direction ("min"/"max"): from
  // the start event, else best.h5, else the configuration.
  std::string monitor() const;
  std::string mode() const;
  // Examples per pass over the training data (0 when no start event says).
  int64_t pass_examples() const;
  // Numeric fields of the evaluation records, in first-seen order; only
  // plain names (is_plain_name), as they end up in gnuplot scripts.
  std::vector<std::string> eval_columns() const;
};

RunSummary load_run(const std::string& dir);

// Letters, digits and _ . + - only: safe to write into a gnuplot script or a
// table unquoted (a metric or algorithm name from a file someone sent).
bool is_plain_name(const std::string& name);

// "min" or "max" for a metric name, as eval.mode=auto decides it (nn/metrics);
// "min" for names it does not know.
std::string metric_mode_of(const std::string& metric);

// A short name for each run: the last path component, or the whole path when
// two runs share it.
std::vector<std::string> run_labels(const std::vector<RunSummary>& runs);

}  // namespace ringtrain

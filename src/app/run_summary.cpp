// RunSummary (see run_summary.hpp).
#include "ringtrain/app/run_summary.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "ringtrain/io/model_file.hpp"
#include "ringtrain/nn/metrics.hpp"
#include "ringtrain/util/error.hpp"

namespace ringtrain {

namespace fs = std::filesystem;
namespace po = boost::program_options;
using Json = nlohmann::ordered_json;

namespace {

template <typename Source>
Json parse_bounded(Source&& src) {
  bool too_deep = false;
  Json j = Json::parse(
      std::forward<Source>(src),
      [&](int depth, Json::parse_event_t, Json&) {
        if (depth > kMaxJsonDepth) too_deep = true;
        return !too_deep;  // a value past the limit is dropped, not built
      },
      /*allow_exceptions=*/false);
  return too_deep ? Json(Json::value_t::discarded) : j;
}

// A file of the run directory that `report` and `plot` read: absent is fine
// (false), anything but a regular file is refused (a FIFO would hang them).
bool present_regular(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return false;
  if (!S_ISREG(st.st_mode)) throw UsageError(str_cat(path, ": not a regular file (ringtrain wrote none such)"));
  return true;
}

std::map<std::string, std::string> read_config(const std::string& path) {
  present_regular(path);
  std::ifstream in(path);
  if (!in) throw UsageError(str_cat(path, ": cannot read"));
  std::map<std::string, std::string> out;
  try {
    const po::parsed_options parsed = po::parse_config_file(in, po::options_description(), true);
    for (const po::option& o : parsed.options) out[o.string_key] = o.value.empty() ? std::string() : o.value.front();
  } catch (const po::error& e) {
    throw UsageError(str_cat(path, ": ", e.what()));
  }
  return out;
}

// One JSON object per line. A line that does not parse is accepted only at
// the very end: the torn tail of an append a crash interrupted.
std::vector<Json> read_jsonl(const std::string& path) {
  std::vector<Json> out;
  if (!present_regular(path)) return out;
  std::ifstream in(path);
  if (!in) return out;
  std::string line;
  std::vector<std::pair<int, std::string>> lines;
  for (int n = 1; std::getline(in, line); ++n)
    if (!line.empty()) lines.emplace_back(n, line);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    Json j = parse_bounded(lines[i].second);
    if (j.is_discarded() || !j.is_object()) {
      if (i + 1 == lines.size()) break;
      throw UsageError(str_cat(path, ": line ", lines[i].first, " is not a JSON object"));
    }
    out.push_back(std::move(j));
  }
  return out;
}

std::map<std::string, double> read_number_map(const std::string& path) {
  std::map<std::string, double> out;
  if (!present_regular(path)) return out;
  std::ifstream in(path);
  if (!in) return out;
  const Json j = parse_bounded(in);
  if (j.is_discarded() || !j.is_object()) throw UsageError(str_cat(path, ": not a JSON object"));
  for (const auto& [k, v] : j.items())
    if (v.is_number()) out[k] = v.get<double>();
  return out;
}

std::string attr_string(const Attrs& a, const std::string& key) {
  const auto it = a.find(key);
  if (it == a.end()) return "";
  const auto* s = std::get_if<std::string>(&it->second);
  return s ? *s : "";
}

// A record in a message, cut short: a line may be megabytes long.
std::string brief(const Json& e) {
  std::string text = e.dump();
  if (text.size() > 200) text = text.substr(0, 200) + "...";
  return text;
}

// The fields plot and report read must have the type the trainer writes: a
// hand-edited or foreign file is a usage error naming the field, not a crash.
void check_event(const Json& e, const std::string& path) {
  if (!e.contains("event") || !e["event"].is_string())
    throw UsageError(str_cat(path, ": a record without \"event\": ", brief(e)));
  const auto expect = [&](std::initializer_list<const char*> keys, bool (Json::*is)() const noexcept,
                          const char* what) {
    for (const char* k : keys)
      if (e.contains(k) && !(e[k].*is)())
        throw UsageError(str_cat(path, ": \"", k, "\" is not ", what, " in ", brief(e)));
  };
  // Every record plot and report use says where it happened; an end says why.
  const std::string name = e["event"].get<std::string>();
  std::vector<const char*> required;
  if (name == "start" || name == "checkpoint" || name == "end") required = {"step", "examples_seen"};
  if (name == "end") required.push_back("reason");
  for (const char* k : required)
    if (!e.contains(k)) throw UsageError(str_cat(path, ": a \"", name, "\" record without \"", k, "\": ", brief(e)));
  expect({"step", "examples_seen", "world_size", "batch_per_rank", "accumulate", "global_batch", "pass_examples"},
         &Json::is_number_integer, "an integer");
  // Counts the trainer writes: the ones it divides by are at least 1.
  // (nlohmann keeps a non-negative integer as unsigned: no wrap-around.)
  for (const char* k : {"step", "examples_seen"})
    if (e.contains(k) && !e[k].is_number_unsigned())
      throw UsageError(str_cat(path, ": \"", k, "\" is negative in ", brief(e)));
  for (const char* k : {"world_size", "batch_per_rank", "accumulate", "global_batch", "pass_examples"})
    if (e.contains(k) && (!e[k].is_number_unsigned() || e[k].get<uint64_t>() < 1))
      throw UsageError(str_cat(path, ": \"", k, "\" is not a positive count in ", brief(e)));
  expect({"reason", "message", "monitor", "mode", "algorithm", "path", "resumed_from"}, &Json::is_string, "a string");
  expect({"wall_s", "train_s", "comm_s", "samples_per_s", "trained_examples", "base_lr", "effective_lr", "epoch"},
         &Json::is_number, "a number");
  for (const char* k : {"trained_examples", "wall_s", "train_s", "comm_s", "samples_per_s"})
    if (e.contains(k) && e[k].get<double>() < 0)
      throw UsageError(str_cat(path, ": \"", k, "\" is negative in ", brief(e)));
}

}  // namespace

Json parse_json_shallow(const std::string& text) { return parse_bounded(text); }
Json parse_json_shallow(std::istream& in) { return parse_bounded(in); }

RunSummary load_run(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw UsageError(str_cat("run directory '", dir, "' not found"));
  if (!fs::exists(dir + "/config.ini", ec))
    throw UsageError(str_cat("'", dir, "' is not a ringtrain run directory (no config.ini)"));
  RunSummary r;
  r.dir = dir;
  r.config = read_config(dir + "/config.ini");
  r.evals = read_jsonl(dir + "/metrics.jsonl");
  for (const Json& e : r.evals)
    if (!e.contains("step") || !e["step"].is_number_integer() || !e.contains("examples_seen") ||
        !e["examples_seen"].is_number_integer())
      throw UsageError(str_cat(dir, "/metrics.jsonl: a record without step or examples_seen: ", brief(e)));
  r.events = read_jsonl(dir + "/events.jsonl");
  for (const Json& e : r.events) check_event(e, dir + "/events.jsonl");
  if (fs::exists(dir + "/best.h5", ec)) {
    r.best = read_model_file(dir + "/best.h5").metrics;
    r.has_best = true;
  }
  r.test = read_number_map(dir + "/test_metrics.json");
  return r;
}

const Json* RunSummary::last_event(const std::string& name) const {
  for (auto it = events.rbegin(); it != events.rend(); ++it)
    if ((*it)["event"] == name) return &*it;
  return nullptr;
}

std::string RunSummary::monitor() const {
  if (const Json* s = last_event("start"); s && s->contains("monitor")) return (*s)["monitor"].get<std::string>();
  if (const std::string m = attr_string(best, "monitor"); !m.empty()) return m;
  const auto it = config.find("eval.monitor");
  if (it != config.end() && it->second != "auto") return it->second;
  for (const Json& e : evals)
    if (e.contains("val_loss")) return "val_loss";
  return "train_loss";
}

std::string RunSummary::mode() const {
  if (const Json* s = last_event("start"); s && s->contains("mode")) return (*s)["mode"].get<std::string>();
  if (const std::string m = attr_string(best, "mode"); !m.empty()) return m;
  const auto it = config.find("eval.mode");
  if (it != config.end() && it->second != "auto") return it->second;
  return metric_mode_of(monitor());
}

bool is_plain_name(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '+' || c == '-';
  });
}

std::string metric_mode_of(const std::string& metric) {
  const std::optional<MetricMode> m = metric_direction(metric);
  return metric_mode_name(m.value_or(MetricMode::kMin));
}

int64_t RunSummary::pass_examples() const {
  const Json* s = last_event("start");
  if (s && s->contains("pass_examples")) return (*s)["pass_examples"].get<int64_t>();
  // Older runs: every evaluation record has both counts.
  for (const Json& e : evals)
    if (e.contains("epoch") && e["epoch"].is_number() && e["epoch"].get<double>() > 0)
      return std::llround(double(e["examples_seen"].get<int64_t>()) / e["epoch"].get<double>());
  return 0;
}

std::vector<std::string> RunSummary::eval_columns() const {
  std::vector<std::string> cols;
  std::set<std::string> seen;
  for (const Json& e : evals)
    for (const auto& [k, v] : e.items())
      if (v.is_number() && is_plain_name(k) && seen.insert(k).second) cols.push_back(k);
  return cols;
}

std::vector<std::string> run_labels(const std::vector<RunSummary>& runs) {
  std::vector<std::string> names;
  for (const RunSummary& r : runs) {
    std::string d = r.dir;
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    names.push_back(fs::path(d).filename().string());
  }
  std::vector<std::string> out = names;
  for (std::size_t i = 0; i < names.size(); ++i)
    if (std::count(names.begin(), names.end(), names[i]) > 1) out[i] = runs[i].dir;
  return out;
}

}  // namespace ringtrain

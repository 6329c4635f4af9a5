// RunLog (see run_log.hpp).
#include "ringtrain/train/run_log.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ringtrain/io/atomic_file.hpp"
#include "ringtrain/train/run_dir.hpp"
#include "ringtrain/util/error.hpp"
#include "ringtrain/util/timer.hpp"

namespace ringtrain {

namespace fs = std::filesystem;

RunLog::RunLog(bool active, std::string run_dir, bool progress)
    : active_(active), tty_(active && progress && ::isatty(STDOUT_FILENO)), dir_(std::move(run_dir)) {}

void RunLog::open(bool resuming, const std::string& config_path) {
  if (!active_) return;
  std::string warning;
  lock_ = std::make_unique<RunDirLock>(dir_, &warning);
  if (!warning.empty()) info(warning);
  contents_ = inspect_run_dir(dir_);
  const std::string recorded = dir_ + "/config.ini";
  if (!config_path.empty() && same_file_or_path(config_path, recorded) &&
      (!resuming || !is_run_config(recorded)))
    throw UsageError(str_cat("--config: ", config_path, " is the run directory's config.ini, where ringtrain ",
                             "records the settings of each run: keep your config file outside run.dir or under ",
                             "another name"));
  // Never mix two runs' records in one directory, nor replace the old one.
  if (!resuming && !contents_.empty())
    throw UsageError(str_cat("run.dir: '", dir_, "' already holds a run (", contents_.list(),
                             "); choose a new run.dir or continue it with --resume auto"));
}

void RunLog::begin(const std::string& effective_ini, const std::string& config_path, bool fresh) {
  if (!active_) return;
  std::error_code ec;
  // A fresh start over the records of a launch that never checkpointed
  // (open() and the resume search allow nothing else): they belong to no run.
  // checkpoints/ then holds at most the temporary of an interrupted first
  // write; anything else there stays, and so does the folder.
  if (fresh)
    for (const std::string& name : contents_.run_files) {
      if (name == "config.ini") continue;
      if (name == "checkpoints/") {
        for (const auto& e : fs::directory_iterator(dir_ + "/checkpoints", ec)) {
          const std::string f = e.path().filename().string();
          if (f.rfind("ckpt-", 0) == 0 && f.size() > 7 && f.compare(f.size() - 7, 7, ".h5.tmp") == 0 &&
              e.is_regular_file(ec) && !e.is_symlink(ec))
            fs::remove(e.path(), ec);
        }
      }
      fs::remove(dir_ + "/" + name, ec);  // a folder only if it is empty
    }
  const std::string recorded = dir_ + "/config.ini";
  // Resuming with --config <run>/config.ini: it is this command's input, and
  // holds these settings already.
  if (!config_path.empty() && same_file_or_path(config_path, recorded)) return;
  write_file_atomic(recorded, effective_ini);
}


namespace {

// Keeps the lines of a JSONL file whose examples_seen is at most `limit`,
// and with `keep_launches` every launch's "start" and "end" record: a launch
// that ended past the checkpoint resumed from (diverged, killed after a
// later checkpoint) still happened, with its time and why it ended.
void truncate_jsonl(const std::string& path, int64_t limit, bool keep_launches = false) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    // A line that does not parse is the torn end of a crashed append.
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.contains("examples_seen") || !j["examples_seen"].is_number_integer()) continue;
    const bool launch = keep_launches && limit >= 0 && j.contains("event") &&
                        (j["event"] == "start" || j["event"] == "end");
    if (launch || j["examples_seen"].get<int64_t>() <= limit) kept += line + "\n";
  }
  write_file_atomic(path, kept);
}

}  // namespace

void RunLog::truncate_metrics(int64_t examples_seen) const {
  if (!active_) return;
  truncate_jsonl(dir_ + "/metrics.jsonl", examples_seen);
  const std::lock_guard<std::mutex> lock(events_mutex_);
  truncate_jsonl(dir_ + "/events.jsonl", examples_seen, /*keep_launches=*/true);
}

void RunLog::event(const std::string& name, const nlohmann::ordered_json& record) const {
  if (!active_) return;
  nlohmann::ordered_json j;
  j["event"] = name;
  j["time"] = utc_timestamp();
  for (const auto& [k, v] : record.items()) j[k] = v;
  const std::lock_guard<std::mutex> lock(events_mutex_);
  append_line_durable(dir_ + "/events.jsonl", j.dump());
}

void RunLog::info(const std::string& line) const {
  if (!active_) return;
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

void RunLog::clear_bar() {
  if (bar_shown_) std::printf("\r\033[K");
  bar_shown_ = false;
}

void RunLog::progress(int64_t epoch, int64_t epochs, int64_t step, int64_t steps, double loss,
                      double samples_per_s) {
  if (!tty_ || since_draw_.seconds() < 0.1) return;
  since_draw_.reset();
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * step / std::max<int64_t>(steps, 1));
  std::printf("\repoch %lld/%lld [%.*s%*s] %lld/%lld loss %.4f %.1fk samples/s\033[K",
              (long long)epoch, (long long)epochs, filled, "==============================",
              kWidth - filled, "", (long long)step, (long long)steps, loss, samples_per_s / 1e3);
  std::fflush(stdout);
  bar_shown_ = true;
}

void RunLog::evaluation(const EvalRecord& r, int64_t epoch, int64_t epochs) {
  if (!active_) return;
  nlohmann::ordered_json j;
  j["step"] = r.step;
  j["epoch"] = r.epoch;
  j["examples_seen"] = r.examples_seen;
  j["lr"] = r.lr;
  j["train_loss"] = r.train_loss;
  for (const auto& [k, v] : r.metrics) j[k] = v;
  j["elapsed_s"] = r.elapsed_s;
  j["samples_per_s"] = r.samples_per_s;
  append_line_durable(dir_ + "/metrics.jsonl", j.dump());
  clear_bar();
  std::printf("epoch %lld/%lld step %lld  train_loss %.4f  %s  %.1fk samples/s  lr %.4g  %.1fs\n",
              (long long)epoch, (long long)epochs, (long long)r.step, r.train_loss,
              format_metrics(r.metrics).c_str(), r.samples_per_s / 1e3, r.lr, r.elapsed_s);
  std::fflush(stdout);
}

void RunLog::write_json(const std::string& name, const std::map<std::string, double>& values) const {
  if (!active_) return;
  nlohmann::ordered_json j(values);
  write_file_atomic(dir_ + "/" + name, j.dump(2) + "\n");
}

std::string format_metrics(const std::map<std::string, double>& m) {
  std::string s;
  char buf[96];
  for (const auto& [k, v] : m) {
    std::snprintf(buf, sizeof buf, "%s%s %.4f", s.empty() ? "" : "  ", k.c_str(), v);
    s += buf;
  }
  return s;
}

}  // namespace ringtrain

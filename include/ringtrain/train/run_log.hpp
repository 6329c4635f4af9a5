// RunLog: what rank 0 shows and writes about a run.
//
// Creates the run directory, writes <run>/config.ini (the effective
// configuration) and appends one JSON object per evaluation to
// <run>/metrics.jsonl (fsynced, so a crash loses no finished evaluation).
// <run>/events.jsonl records what happened around them, one object per line
// with "event" and "time" (UTC): "start" (world size, batch, lr, plan; once
// per launch, so a resumed run has several), "checkpoint" (written, on disk)
// and "end" (why training ended, wall time, throughput). `ringtrain plot` and
// `ringtrain report` read both files.
// Progress goes to stdout: a live bar redrawn in place on a terminal, plain
// lines otherwise (Slurm logs, pipes). Other ranks hold an inactive RunLog.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "ringtrain/util/timer.hpp"

namespace ringtrain {

struct EvalRecord {
  int64_t step = 0;
  double epoch = 0;
  int64_t examples_seen = 0;
  double lr = 0;
  double train_loss = 0;
  std::map<std::string, double> metrics;  // already prefixed: val_loss, val_accuracy, ...
  double elapsed_s = 0;
  double samples_per_s = 0;
};

class RunLog {
 public:
  RunLog(bool active, std::string run_dir, bool progress);

  // Creates the directory and writes config.ini; RuntimeError/UsageError
  // naming the path if it cannot. A directory that already holds a run is
  // refused unless `resuming`.
  void start(const std::string& effective_ini, bool resuming = false);
  // Resuming: keeps the metrics.jsonl and events.jsonl lines up to
  // `examples_seen` (the resumed run writes the later ones again), and every
  // earlier launch's start and end record; -1 clears both (a fresh start).
  void truncate_metrics(int64_t examples_seen) const;
  // Appends `record` to events.jsonl with "event": `name` and "time" first;
  // fsynced. Thread-safe (the writer thread records checkpoints).
  void event(const std::string& name, const nlohmann::ordered_json& record) const;
  void info(const std::string& line) const;
  // Redraws the progress bar (TTY only, throttled to ~10 per second).
  void progress(int64_t epoch, int64_t epochs, int64_t step_in_epoch, int64_t steps_per_epoch,
                double loss, double samples_per_s);
  void evaluation(const EvalRecord& r, int64_t epoch, int64_t epochs);
  // Writes <run>/<name> (e.g. test_metrics.json) atomically.
  void write_json(const std::string& name, const std::map<std::string, double>& values) const;
  const std::string& dir() const { return dir_; }
  bool active() const { return active_; }

 private:
  void clear_bar();
  bool active_, tty_ = false, bar_shown_ = false;
  std::string dir_;
  Timer since_draw_;
  mutable std::mutex events_mutex_;
};

// "0.8812" style formatting of metric values for progress lines.
std::string format_metrics(const std::map<std::string, double>& m);

}  // namespace ringtrain

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
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "ringtrain/io/atomic_file.hpp"
#include "ringtrain/train/run_dir.hpp"
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

  // Before anything is written: creates the directory, locks it for this
  // job (RunDirLock) and looks at what it holds. UsageError if another job
  // holds it, if it already holds a run and this one is not `resuming`, or
  // if `config_path` (--config) is the run's own config.ini (unless resuming
  // from the copy ringtrain wrote there).
  void open(bool resuming, const std::string& config_path);
  // What open() found (ringtrain's files only).
  const RunDirContents& contents() const { return contents_; }
  // The first write, once every check has passed: writes config.ini (never
  // over the --config file itself); `fresh` (a resume that found nothing to
  // resume) first removes the records of the launch that never checkpointed.
  void begin(const std::string& effective_ini, const std::string& config_path, bool fresh);
  static constexpr const char* kConfigMarker = kRunConfigMarker;  // atop config.ini
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
  std::unique_ptr<RunDirLock> lock_;  // rank 0, the whole job
  RunDirContents contents_;
};

// "0.8812" style formatting of metric values for progress lines.
std::string format_metrics(const std::map<std::string, double>& m);

}  // namespace ringtrain

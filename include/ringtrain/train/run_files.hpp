// RunFiles: the model files of a run directory, written by rank 0 in the
// background while training goes on.
//
//   best.h5                     the best model so far (its metrics inside)
//   best-step<N>.h5             the top eval.keep_best models, when k > 1
//   checkpoints/ckpt-<N>.h5     the last checkpoint.keep_last full states
//   final.h5                    the model training ended with
//   manifest.json               every file above: kind, step, CRC-32,
//                               metrics; aliases best and latest
//
// The trainer copies what to write into stage() (buffers allocated once and
// reused) and submit()s it; one write is in flight at most, so stage() first
// waits for the previous one. Every file is written atomically and an old
// checkpoint or evicted model is deleted only once its replacement is on
// disk; best.h5 itself is only ever replaced, never deleted.
// A failed write is kept and reported by failed()/wait(); the trainer turns
// it into an error on every rank.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "ringtrain/io/model_file.hpp"

namespace ringtrain {

struct SaveRequest {
  int64_t step = 0;
  bool checkpoint = false;  // checkpoints/ckpt-<step>.h5 from the whole staging area
  bool best = false;        // best.h5 from the staged model
  bool versioned = false;   // best-step<step>.h5 (keep_best > 1)
  bool final_model = false;  // final.h5
  std::vector<int64_t> evicted;  // best-step<N>.h5 to delete
};

class RunFiles {
 public:
  // `keep_alive` is called every 50 ms while the caller waits for a write
  // (Communicator::keep_alive: the other ranks' watchdog sees it alive).
  RunFiles(std::string dir, bool active, int keep_last, std::function<void()> keep_alive = {});
  ~RunFiles();  // waits for the write in flight (never leaves it half done)
  RunFiles(const RunFiles&) = delete;
  RunFiles& operator=(const RunFiles&) = delete;

  bool active() const { return active_; }
  // Waits for the write in flight, then hands out the staging area.
  SavedCheckpoint& stage();
  void submit(SaveRequest request);
  // The message of a failed write ("" if none); never blocks.
  std::string failed();
  // Waits for the write in flight; RuntimeError with its message if it failed.
  void wait();

  // Called on the writer thread once a checkpoint is on disk, with its path
  // (relative to the run directory), step and metrics (RunLog::event).
  void on_checkpoint(std::function<void(const nlohmann::ordered_json&)> f) { on_checkpoint_ = std::move(f); }

  // Resuming: keep the manifest entries of files that still exist, and move
  // checkpoints newer than `step` out of the way (ckpt-<N>.h5.superseded).
  void adopt_existing(int64_t step);

  std::string checkpoint_path(int64_t step) const;
  static std::string versioned_name(int64_t step);
  // checkpoints/ckpt-<N>.h5 of `dir`, newest first.
  static std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);

 private:
  void write(const SaveRequest& r);  // on the writer thread
  void settle();                      // waits for the write in flight, keeps its error
  void record(const std::string& rel, const char* kind, const SavedModel& model, int64_t step);
  void prune_checkpoints();
  void write_manifest();

  std::string dir_;
  bool active_;
  int keep_last_;
  SavedCheckpoint staging_;
  std::future<void> in_flight_;
  std::function<void(const nlohmann::ordered_json&)> on_checkpoint_;
  std::function<void()> keep_alive_;
  std::string error_;
  nlohmann::ordered_json entries_ = nlohmann::ordered_json::object();  // relative path -> entry
  std::string latest_;
};

}  // namespace ringtrain

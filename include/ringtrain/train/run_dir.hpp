// The run directory's guard: one job at a time, and a look at what it holds
// before anything is written there.
//
// RunDirLock: rank 0 of a training job holds an exclusive lock on
// <run>/run.lock (an open-file-description lock, fcntl F_OFD_SETLK) from
// before its first write to its exit. A second job on the same directory is
// refused, naming the holder that the lock file records (host, pid, Slurm
// job, start time). The kernel drops the lock when the holding process ends,
// however it ends, so a crash leaves nothing to clean up; and ranks left
// running by a killed launcher still hold it until they exit, so a new job
// cannot start writing under them.
//
// RunDirContents: the entries of the directory that ringtrain writes
// (config.ini, metrics.jsonl, best.h5, checkpoints/, ...). A fresh run needs
// none of them; a run without a checkpoint to resume from may start again only
// over the records of a launch that never got as far as a checkpoint.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ringtrain {

class RunDirLock {
 public:
  // Creates `dir` (and parents) if absent and locks it. UsageError naming
  // the holder if another job holds it, or naming what is wrong with the
  // path. A file system without locks (Lustre mounted without -o flock) is
  // not refused: `warning` says the directory is then unguarded.
  RunDirLock(const std::string& dir, std::string* warning);
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

  static constexpr const char* kFileName = "run.lock";

 private:
  int fd_ = -1;
};

struct RunDirContents {
  // Names (relative to the directory) of the entries ringtrain writes there,
  // sorted; run.lock is not one of them.
  std::vector<std::string> run_files;
  // True when run_files holds only what a launch writes before its first
  // evaluation or checkpoint (config.ini written by ringtrain, events.jsonl
  // without a checkpoint record, temporaries): nothing of value.
  bool only_unfinished_launch = true;

  bool empty() const { return run_files.empty(); }
  // "best.h5, checkpoints/, metrics.jsonl" (at most `max` names, then "...").
  std::string list(std::size_t max = 6) const;
};

// What the launches recorded in events.jsonl did: a checkpoint was written,
// one ended (any reason), and the world size of the last start (-1: none).
// Lines that do not parse are skipped (a torn last line).
struct LaunchRecords {
  bool checkpointed = false;
  bool ended = false;
  int64_t last_world_size = -1;
};
LaunchRecords read_launch_records(const std::string& events_path);

// What `dir` holds. UsageError when one of ringtrain's names there is a
// symlink or not the kind of entry ringtrain makes (a FIFO named best.h5, a
// checkpoints/ that links elsewhere): ringtrain would write through it or
// delete from it.
RunDirContents inspect_run_dir(const std::string& dir);

}  // namespace ringtrain

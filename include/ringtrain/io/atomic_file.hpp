// AtomicFile: write-to-temporary, fsync, rename, fsync the folder.
//
// A reader (or a crash) sees either the old file or the complete new one,
// never a half-written one. Write to tmp_path(), then commit(); if commit()
// is never reached the temporary is removed by the destructor.
//
// Only regular files are ever replaced: a rename over a symbolic link, a
// device node, a FIFO or a socket would put a regular file in its place (as
// root, "--output /dev/null" would replace /dev/null), so such a path is
// refused with a UsageError naming it, as is a temporary name that is not a
// regular file.
#pragma once

#include <string>
#include <vector>

namespace ringtrain {

// While it lives, `path` is removed if the process is ended by a signal
// (see remove_temporaries_on_signals). Copies the path; not thread-bound.
class SignalCleanup {
 public:
  explicit SignalCleanup(std::string path);
  ~SignalCleanup();
  SignalCleanup(const SignalCleanup&) = delete;
  SignalCleanup& operator=(const SignalCleanup&) = delete;

 private:
  std::string path_;
  int slot_ = -1;  // -1: every slot was taken, not registered
};

// For the one-process commands (convert, predict, plot): SIGINT, SIGTERM,
// SIGHUP and the other signals whose default action ends the process first
// remove every live SignalCleanup path (the temporaries of AtomicFiles), then
// end the process as the signal would have (exit status 128 + N in a shell).
// Signals ignored at start (nohup) stay ignored. Not for `train`, whose
// SIGTERM and SIGUSR1 mean "checkpoint and stop" (util/stop_signal.hpp).
void remove_temporaries_on_signals();

class AtomicFile {
 public:
  // UsageError if `path` exists and is not a regular file (a symbolic link
  // to anything counts as not), or its temporary is not a regular file.
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // The temporary to write, path + ".tmp". The first call removes a stale
  // temporary of an interrupted write, so that what is written next is a
  // new file (never through an old name into another file's content). It
  // is not called by whoever creates the temporary itself (as a hard link)
  // before committing it.
  const std::string& tmp_path();
  void commit();  // RuntimeError naming the path on failure

 private:
  std::string path_, tmp_;
  SignalCleanup cleanup_;
  bool committed_ = false, fresh_ = false;
};

// Refuses, with a one-line UsageError that starts with `what` (such as
// "predict: --output"), an output path that a command must not replace: one
// whose folder does not exist or cannot be written, a directory, device
// node, FIFO, socket or symbolic link, a read-only file, or the same file
// (same device and inode: hard links, symbolic links and other spellings
// count) as one of `inputs`, or whose temporary (output + ".tmp") is one of
// them. Call it before reading anything: a command that cannot end well
// should not start.
// It also refuses one of the files of a ringtrain run (is_run_dir_name, and
// run.lock) in a run directory (a folder holding run.lock) or anything in its
// checkpoints/: only `train` writes there. curves.png, which `plot` draws
// into the run directory for run_mpi.sh, is allowed.
void check_output(const std::string& output, const std::vector<std::string>& inputs, const char* what);

// UsageError "<what>: '<path>' ..." unless `path` names a regular file
// (links followed): missing, a directory, a FIFO (opening one waits for a
// writer), a device or a socket. Call it before opening an input.
void require_regular_input(const std::string& path, const std::string& what);

// The first line of the config.ini that `train` writes into a run
// directory, and whether the file at `path` starts with it.
constexpr const char* kRunConfigMarker = "# ringtrain effective configuration";
bool is_run_config(const std::string& path);

// True for the names `train` writes into a run directory (config.ini,
// metrics.jsonl, best.h5, best-step<N>.h5, checkpoints, ...) and their
// ".tmp" temporaries; not run.lock.
bool is_run_dir_name(const std::string& name);

// Two names of one file: the same device and inode when both exist (links
// followed), the same absolute path when neither does (two outputs).
bool same_file_or_path(const std::string& a, const std::string& b);

// Writes `text` to `path` atomically.
void write_file_atomic(const std::string& path, const std::string& text);
// Appends a line and fsyncs (metrics.jsonl). UsageError when `path` exists
// and is not a regular file (a FIFO would block, a symbolic link would lead
// elsewhere).
void append_line_durable(const std::string& path, const std::string& line);

}  // namespace ringtrain

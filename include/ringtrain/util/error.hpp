// Error types and exit codes shared by every layer.
//
// Two kinds of failure matter to users, and each maps to one exit code:
//   UsageError   - bad options, missing or malformed input files, wrong shapes,
//                  labels out of range, non-finite data: the user must fix the
//                  input. Exit code 2.
//   RuntimeError - something failed while running (I/O error mid-run, a
//                  communication failure). Exit code 3.
// Training that ends early but cleanly has codes of its own: 4 when early
// stopping ended it (patience, baseline), 5 when it diverged (non-finite loss
// or gradient, early_stop.divergence); best.h5 and checkpoints stay valid.
// 75 (EX_TEMPFAIL of sysexits.h) when a stop signal (SIGTERM, SIGUSR1:
// pre-emption, a time limit) ended it: a checkpoint was written, resume with
// --resume auto or requeue the job.
// Messages are one line and name what is wrong (the key, the path, the value).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ringtrain {

enum ExitCode : int {
  kExitSuccess = 0,
  kExitUsage = 2,
  kExitRuntime = 3,
  kExitEarlyStop = 4,
  kExitDiverged = 5,
  kExitPreempted = 75,
};

class Error : public std::runtime_error {
 public:
  Error(const std::string& what, int exit_code)
      : std::runtime_error(what), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

class UsageError : public Error {
 public:
  explicit UsageError(const std::string& what) : Error(what, kExitUsage) {}
};

class RuntimeError : public Error {
 public:
  explicit RuntimeError(const std::string& what) : Error(what, kExitRuntime) {}
};

// Builds a message from streamable parts: str_cat("bad value ", x, " for ", k).
template <typename... Parts>
std::string str_cat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

}  // namespace ringtrain

// Internal invariant check: a failure is a bug in ringtrain, not bad input.
#define RT_CHECK(cond, ...)                                                       \
  do {                                                                            \
    if (!(cond))                                                                  \
      throw ::ringtrain::RuntimeError(::ringtrain::str_cat(                       \
          __FILE__, ":", __LINE__, ": check failed: " #cond ": ", __VA_ARGS__)); \
  } while (0)

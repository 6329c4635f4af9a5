// AtomicFile and durable small-file writes (see atomic_file.hpp).
#include "ringtrain/io/atomic_file.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

#include "ringtrain/util/error.hpp"

namespace ringtrain {

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw RuntimeError(str_cat(path, ": ", what, ": ", std::strerror(errno)));
}

// ---- removal of temporaries on a signal ------------------------------------

// The paths of the live SignalCleanup objects. The handler may interrupt
// anything, so it only reads these lock-free atomics and calls unlink(),
// both async-signal-safe; the strings belong to the objects, which clear
// their slot before they die.
constexpr int kCleanupSlots = 32;
std::atomic<const char*> g_cleanup[kCleanupSlots] = {};
static_assert(std::atomic<const char*>::is_always_lock_free, "the cleanup slots must be lock-free");

// Every signal whose default action ends the process and that a user, a
// terminal, a batch system or a resource limit sends.
constexpr int kEndingSignals[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGXCPU, SIGXFSZ};

extern "C" void remove_temporaries_and_end(int signo) {
  for (auto& slot : g_cleanup)
    if (const char* path = slot.load()) ::unlink(path);
  // The signal is blocked while its handler runs: raised again with the
  // default action, it ends the process on return, with the status the
  // signal would have given (a shell says 128 + N).
  ::signal(signo, SIG_DFL);
  ::raise(signo);
}

// ---- what is at a path -----------------------------------------------------

const char* kind_of(mode_t mode) {
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// lstat(): false when nothing is there; UsageError for other failures (a
// path through a file, a folder that cannot be searched).
bool lstat_path(const std::string& path, struct stat& st, const std::string& prefix) {
  if (::lstat(path.c_str(), &st) == 0) return true;
  if (errno == ENOENT) return false;
  throw UsageError(str_cat(prefix, path, ": ", std::strerror(errno)));
}

// RuntimeError unless `path` is absent or a regular file (not a link to one).
// The guard of the write itself, a runtime failure (exit 3): the commands
// check their outputs and a run directory's entries before they start
// (check_output, inspect_run_dir: UsageError, exit 2), so what fails here
// changed while the command ran, or is a name those checks do not look at
// ahead (a checkpoint's, inside checkpoints/).
void require_regular_or_absent(const std::string& path, const std::string& remedy) {
  struct stat st;
  if (lstat_path(path, st, "") && !S_ISREG(st.st_mode))
    throw RuntimeError(str_cat(path, ": is ", kind_of(st.st_mode), ", and ringtrain writes over regular files only (",
                             remedy, ")"));
}

void fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) fail("cannot open to fsync", path);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail("fsync failed", path);
}

std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void write_all(int fd, const std::string& text, const std::string& path) {
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write failed", path);
    }
    p += n;
    left -= std::size_t(n);
  }
}

}  // namespace

// ---- SignalCleanup ------------------------------------------------------------

SignalCleanup::SignalCleanup(std::string path) : path_(std::move(path)) {
  for (int i = 0; i < kCleanupSlots && slot_ < 0; ++i) {
    const char* empty = nullptr;
    if (g_cleanup[i].compare_exchange_strong(empty, path_.c_str())) slot_ = i;
  }
}

SignalCleanup::~SignalCleanup() {
  if (slot_ >= 0) g_cleanup[slot_].store(nullptr);
}

void remove_temporaries_on_signals() {
  struct sigaction sa = {};
  sa.sa_handler = remove_temporaries_and_end;
  sigemptyset(&sa.sa_mask);
  for (int signo : kEndingSignals) sigaddset(&sa.sa_mask, signo);  // a second signal waits for the first
  for (int signo : kEndingSignals) {
    struct sigaction old = {};
    if (::sigaction(signo, nullptr, &old) != 0 || old.sa_handler == SIG_IGN) continue;  // nohup stays nohup
    ::sigaction(signo, &sa, nullptr);
  }
}

// ---- AtomicFile ----------------------------------------------------------------

AtomicFile::AtomicFile(std::string path)
    : path_(std::move(path)), tmp_(path_ + ".tmp"), cleanup_(tmp_) {
  require_regular_or_absent(path_, "remove it or choose another name");
  require_regular_or_absent(tmp_, "it is the temporary of " + path_ + ": remove it");
}

AtomicFile::~AtomicFile() {
  if (!committed_) std::remove(tmp_.c_str());
}

const std::string& AtomicFile::tmp_path() {
  if (!fresh_) {
    // A leftover of an interrupted write may be a second name of another
    // file (a hard link made to publish it): writing through it would
    // change that file. Unlinking the name leaves the other file as it is.
    require_regular_or_absent(tmp_, "it is the temporary of " + path_ + ": remove it");
    if (::unlink(tmp_.c_str()) != 0 && errno != ENOENT) fail("cannot remove the stale temporary", tmp_);
    fresh_ = true;
  }
  return tmp_;
}

void AtomicFile::commit() {
  // Checked again at the last moment: the rename replaces whatever is there.
  require_regular_or_absent(path_, "remove it or choose another name");
  fsync_path(tmp_, O_RDONLY | O_NOFOLLOW);
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) fail("rename from " + tmp_ + " failed", path_);
  committed_ = true;
  fsync_path(parent_dir(path_), O_RDONLY | O_DIRECTORY);
}

// ---- same_file_or_path ----------------------------------------------------------

bool same_file_or_path(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  const bool ea = ::stat(a.c_str(), &sa) == 0, eb = ::stat(b.c_str(), &sb) == 0;
  if (ea && eb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  if (ea || eb) return false;
  std::error_code ec1, ec2;
  const auto ca = std::filesystem::weakly_canonical(a, ec1), cb = std::filesystem::weakly_canonical(b, ec2);
  return !ec1 && !ec2 && ca == cb;
}

// ---- check_output --------------------------------------------------------------

void require_regular_input(const std::string& path, const std::string& what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    throw UsageError(str_cat(what, ": '", path, "': ", errno == ENOENT ? "no such file" : std::strerror(errno)));
  if (!S_ISREG(st.st_mode))
    throw UsageError(str_cat(what, ": '", path, "' is ", kind_of(st.st_mode), ", not a regular file"));
}

bool is_run_config(const std::string& path) {
  std::ifstream in(path);
  std::string first;
  return std::getline(in, first) && first.rfind(kRunConfigMarker, 0) == 0;
}

bool is_run_dir_name(const std::string& name) {
  static const char* const kNames[] = {"config.ini",   "events.jsonl", "metrics.jsonl",     "manifest.json",
                                       "best.h5",      "final.h5",     "test_metrics.json", "trace.json",
                                       "curves.png",   "checkpoints"};
  static const std::regex versioned("best-step[0-9]+\\.h5");
  std::string base = name;
  if (base.size() > 4 && base.compare(base.size() - 4, 4, ".tmp") == 0) base.resize(base.size() - 4);
  return std::find(std::begin(kNames), std::end(kNames), base) != std::end(kNames) ||
         std::regex_match(base, versioned);
}

namespace {

std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// A run directory: its lock, or (a copy without it) the config.ini that
// `train` writes.
bool holds_run_lock(const std::string& folder) {
  struct stat st;
  return ::lstat((folder + "/run.lock").c_str(), &st) == 0 || is_run_config(folder + "/config.ini");
}

// The run directory `output` would write into ringtrain's files of, or "".
std::string run_dir_of_output(const std::string& output, const std::string& given_folder) {
  const std::string name = base_name(output);
  std::error_code ec;
  const std::filesystem::path canonical = std::filesystem::weakly_canonical(given_folder, ec);
  const std::string folder = ec ? given_folder : canonical.string();  // "." -> where it is
  if (holds_run_lock(folder) && (name == "run.lock" || (is_run_dir_name(name) && name != "curves.png" &&
                                                         name != "curves.png.tmp")))
    return folder;
  if (base_name(folder) == "checkpoints" && holds_run_lock(parent_dir(folder))) return parent_dir(folder);
  return "";
}

}  // namespace

void check_output(const std::string& output, const std::vector<std::string>& inputs, const char* what) {
  const std::string prefix = str_cat(what, ": ");
  if (output.empty()) throw UsageError(str_cat(what, ": the file name is empty"));
  struct stat st;
  if (lstat_path(output, st, prefix)) {
    if (!S_ISREG(st.st_mode))
      throw UsageError(str_cat(prefix, "'", output, "' is ", kind_of(st.st_mode),
                               "; only a regular file is replaced (choose another name)"));
    if ((st.st_mode & 0222) == 0 || ::access(output.c_str(), W_OK) != 0)
      throw UsageError(str_cat(prefix, "'", output, "' is read-only (make it writable or choose another name)"));
  }
  const std::string folder = parent_dir(output);
  struct stat dir;
  if (::stat(folder.c_str(), &dir) != 0) {
    if (errno == ENOENT) throw UsageError(str_cat(prefix, "folder '", folder, "' does not exist"));
    throw UsageError(str_cat(prefix, "folder '", folder, "': ", std::strerror(errno)));
  }
  if (!S_ISDIR(dir.st_mode)) throw UsageError(str_cat(prefix, "'", folder, "' is not a folder"));
  if (::access(folder.c_str(), W_OK | X_OK) != 0)
    throw UsageError(str_cat(prefix, "cannot write in folder '", folder, "': ", std::strerror(errno)));
  const std::string tmp = output + ".tmp";
  const bool tmp_exists = lstat_path(tmp, st, prefix);
  if (tmp_exists && !S_ISREG(st.st_mode))
    throw UsageError(str_cat(prefix, "'", tmp, "', where '", output, "' is written first, is ", kind_of(st.st_mode),
                             " (remove it)"));
  for (const std::string& in : inputs) {
    const std::string input = in == output ? "an input of this command" : str_cat("the input '", in, "'");
    if (same_file_or_path(output, in))
      throw UsageError(str_cat(prefix, "'", output, "' is ", input, " (choose another output)"));
    if (tmp_exists && same_file_or_path(tmp, in))
      throw UsageError(str_cat(prefix, "'", tmp, "', where '", output, "' is written first, is ", input,
                               " (choose another output)"));
  }
  const std::string run = run_dir_of_output(output, folder);
  if (!run.empty())
    throw UsageError(str_cat(prefix, "'", output, "' is one of the files of the ringtrain run in '", run,
                             "', which only its training writes (choose another name or folder)"));
}

// ---- small files ---------------------------------------------------------------

void write_file_atomic(const std::string& path, const std::string& text) {
  AtomicFile out(path);
  // O_EXCL | O_NOFOLLOW: a new file of our own, whatever appeared meanwhile.
  const int fd = ::open(out.tmp_path().c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create", out.tmp_path());
  try {
    write_all(fd, text, out.tmp_path());
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::close(fd) != 0) fail("close failed", out.tmp_path());
  out.commit();
}

void append_line_durable(const std::string& path, const std::string& line) {
  require_regular_or_absent(path, "remove it or choose another name");
  // O_NONBLOCK: a FIFO put there meanwhile fails instead of waiting forever
  // for a reader; regular files ignore it.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot open for appending", path);
  try {
    write_all(fd, line + "\n", path);
    if (::fsync(fd) != 0) fail("fsync failed", path);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

}  // namespace ringtrain

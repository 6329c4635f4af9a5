// RunDirLock and inspect_run_dir (see run_dir.hpp).
#include "ringtrain/train/run_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "ringtrain/io/atomic_file.hpp"
#include "ringtrain/util/error.hpp"
#include "ringtrain/util/timer.hpp"

namespace ringtrain {

namespace fs = std::filesystem;

namespace {

std::string errno_text() { return std::strerror(errno); }

// Who holds the lock, as the holder wrote it ("" while it is still starting).
std::string read_holder(int fd) {
  std::string text(512, '\0');
  const ssize_t n = ::pread(fd, text.data(), text.size(), 0);
  text.resize(n > 0 ? std::size_t(n) : 0);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\0')) text.pop_back();
  for (char& c : text)
    if (c == '\n' || (static_cast<unsigned char>(c) < 0x20)) c = ' ';
  return text;
}

std::string holder_text() {
  char host[256] = "?";
  ::gethostname(host, sizeof host - 1);
  const char* job = std::getenv("SLURM_JOB_ID");
  return str_cat("pid ", ::getpid(), " on ", host, job && *job ? str_cat(", Slurm job ", job) : std::string(),
                 ", since ", utc_timestamp(), "\n");
}

bool has_checkpoint_event(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (line.find("\"event\":\"checkpoint\"") != std::string::npos) return true;
  return false;
}

}  // namespace

RunDirLock::RunDirLock(const std::string& dir, std::string* warning) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  struct stat st {};
  if (ec || ::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw UsageError(str_cat("run.dir: cannot create run directory '", dir, "': ",
                             ec ? ec.message() : std::string("it exists and is not a directory")));
  if (::access(dir.c_str(), W_OK) != 0) throw UsageError(str_cat("run.dir: run directory '", dir, "' is not writable"));
  const std::string path = dir + "/" + kFileName;
  // O_NOFOLLOW: a planted symlink must not make us create or lock another
  // file; O_NONBLOCK: a planted FIFO must not block the open.
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw UsageError(str_cat("run.dir: cannot open the lock file ", path, ": ",
                             errno == ELOOP ? std::string("it is a symlink") : errno_text()));
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw UsageError(str_cat("run.dir: ", path, " is not a regular file (ringtrain keeps its lock there)"));
  }
  // The holder's name is written into the file: never into a file that is
  // another name of a user's file (a hard link), nor over one that is not a
  // lock file of ringtrain's (a data file called run.lock; its content is
  // read once the lock is held, when no holder can be rewriting it).
  const auto refuse_foreign = [&](const char* what) {
    ::close(fd_);
    fd_ = -1;
    throw UsageError(str_cat("run.dir: ", path, what,
                             ": ringtrain keeps its lock there and writes into it; move that file, or choose "
                             "another run.dir"));
  };
  if (st.st_nlink > 1) refuse_foreign(" has other names (a hard link)");
  struct flock lk {};
  lk.l_type = F_WRLCK;
  lk.l_whence = SEEK_SET;
  int rc = ::fcntl(fd_, F_OFD_SETLK, &lk);
  if (rc != 0 && errno == EINVAL) rc = ::fcntl(fd_, F_SETLK, &lk);  // kernels before OFD locks
  if (rc != 0) {
    const int err = errno;
    if (err == EAGAIN || err == EACCES) {
      const std::string holder = read_holder(fd_);
      ::close(fd_);
      fd_ = -1;
      throw UsageError(str_cat("run.dir: '", dir, "' is in use by another ringtrain job (",
                               holder.empty() ? std::string("starting up") : holder,
                               "): wait for it to end, or choose another run.dir"));
    }
    // ENOLCK, ENOSYS, EOPNOTSUPP: a file system without locks.
    if (warning != nullptr)
      *warning = str_cat("warning: run.dir: ", dir, " cannot be locked (", std::strerror(err),
                         "): nothing stops a second job from writing there at the same time");
    return;
  }
  const std::string found = read_holder(fd_);
  if (!found.empty() && found.rfind("pid ", 0) != 0) refuse_foreign(" is not a lock file of ringtrain's");
  const std::string me = holder_text();
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) != ssize_t(me.size())) {
    // The lock holds either way; only the holder's description is missing.
  }
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) ::close(fd_);
}

LaunchRecords read_launch_records(const std::string& events_path) {
  LaunchRecords r;
  std::ifstream in(events_path);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("event") || !j["event"].is_string()) continue;
    const std::string event = j["event"].get<std::string>();
    if (event == "checkpoint") r.checkpointed = true;
    if (event == "end") r.ended = true;
    if (event == "start" && j.contains("world_size") && j["world_size"].is_number_integer())
      r.last_world_size = j["world_size"].get<int64_t>();
  }
  return r;
}

std::string RunDirContents::list(std::size_t max) const {
  std::string out;
  for (std::size_t i = 0; i < run_files.size() && i < max; ++i) out += (i ? ", " : "") + run_files[i];
  if (run_files.size() > max) out += ", ...";
  return out;
}

RunDirContents inspect_run_dir(const std::string& dir) {
  RunDirContents c;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!is_run_dir_name(name)) continue;
    const fs::file_status st = e.symlink_status();
    const bool want_dir = name == "checkpoints";
    if (fs::is_symlink(st) || (want_dir ? !fs::is_directory(st) : !fs::is_regular_file(st)))
      throw UsageError(str_cat("run.dir: ", e.path().string(), " is ",
                               fs::is_symlink(st) ? "a symlink" : want_dir ? "not a directory" : "not a regular file",
                               ": ringtrain writes and deletes its files there and never through links; "
                               "choose another run.dir"));
    // The logs are appended to in place: through a second name (a copy made
    // with cp -al) the lines would land in the other run's file too.
    struct stat lst {};
    if ((name == "metrics.jsonl" || name == "events.jsonl") && ::lstat(e.path().c_str(), &lst) == 0 &&
        lst.st_nlink > 1)
      throw UsageError(str_cat("run.dir: ", e.path().string(), " has other names (a hard link): ringtrain appends ",
                               "to it in place; copy the run directory without hard links"));
    c.run_files.push_back(want_dir ? name + "/" : name);
    const bool harmless = (name == "config.ini" && is_run_config(e.path().string())) ||
                          (name == "events.jsonl" && !has_checkpoint_event(e.path().string())) ||
                          (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0);
    if (!harmless) c.only_unfinished_launch = false;
  }
  if (ec && ec != std::errc::no_such_file_or_directory)
    throw UsageError(str_cat("run.dir: cannot list '", dir, "': ", ec.message()));
  std::sort(c.run_files.begin(), c.run_files.end());
  return c;
}

}  // namespace ringtrain

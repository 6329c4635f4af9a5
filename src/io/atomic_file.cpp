// AtomicFile and durable small-file writes (see atomic_file.hpp).
#include "ringtrain/io/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "ringtrain/util/error.hpp"

namespace ringtrain {

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw RuntimeError(str_cat(path, ": ", what, ": ", std::strerror(errno)));
}

void fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
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

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {}

AtomicFile::~AtomicFile() {
  if (!committed_) std::remove(tmp_.c_str());
}

void AtomicFile::commit() {
  fsync_path(tmp_, O_RDONLY);
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) fail("rename from " + tmp_ + " failed", path_);
  committed_ = true;
  fsync_path(parent_dir(path_), O_RDONLY | O_DIRECTORY);
}

void write_file_atomic(const std::string& path, const std::string& text) {
  AtomicFile out(path);
  const int fd = ::open(out.tmp_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
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
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
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

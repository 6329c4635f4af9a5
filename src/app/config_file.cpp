// read_config_text (see config_file.hpp).
#include "ringtrain/app/config_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ringtrain/util/error.hpp"

namespace ringtrain {

// A config file is a regular file, or a pipe (--config <(...), or
// /dev/stdin fed by one). A directory, a device (/dev/zero: endless) or a
// named FIFO (waits for a writer that may never come) is refused. Opened
// once, non-blocking, and judged by what was opened (fstat), so nothing can
// be swapped in between; then read whole, up to kMaxConfigBytes.
std::string read_config_text(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw UsageError(str_cat("--config: cannot read '", path, "'"));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw UsageError(str_cat("--config: cannot read '", path, "'"));
  if (S_ISFIFO(st.st_mode)) {
    // An anonymous pipe shows as "pipe:[inode]" under /proc/self/fd; a
    // named FIFO as its path.
    char target[64] = {};
    const std::string self = str_cat("/proc/self/fd/", fd);
    const ssize_t n = ::readlink(self.c_str(), target, sizeof target - 1);
    if (n <= 5 || std::string(target, std::size_t(n)).rfind("pipe:", 0) != 0)
      throw UsageError(str_cat("--config: '", path, "' is a named FIFO: give the settings in a regular file"));
  } else if (!S_ISREG(st.st_mode)) {
    throw UsageError(str_cat("--config: '", path, "' is ",
                             S_ISDIR(st.st_mode) ? "a directory" : "a device or socket", ", not a config file"));
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);  // a pipe's writer may be slower than us
  std::string text;
  char buf[1 << 16];
  for (;;) {
    const ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw UsageError(str_cat("--config: cannot read '", path, "': ", std::strerror(errno)));
    if (got == 0) break;
    text.append(buf, std::size_t(got));
    if (text.size() > kMaxConfigBytes)
      throw UsageError(str_cat("--config: '", path, "' is larger than ", kMaxConfigBytes >> 20,
                               " MiB: not a config file"));
  }
  return text;
}

}  // namespace ringtrain

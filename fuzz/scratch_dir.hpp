// Scratch directory of a fuzz target: one per process, reused by every input
// (under /dev/shm when it is writable), removed with its files at exit.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace ringtrain::fuzz {

// `tag` names the target ("idx"); the same tag must be passed every time.
// Never freed: the atexit clean-up runs after a static string's destructor would.
inline const std::string& scratch_dir(const char* tag) {
  static const std::string* dir = [tag] {
    const char* tmp = std::getenv("TMPDIR");
    const std::string base = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (tmp && *tmp ? tmp : "/tmp");
    auto* d = new std::string(base + "/ringtrain-fuzz-" + tag + "-" + std::to_string(::getpid()));
    ::mkdir(d->c_str(), 0700);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(*dir, ignored);
    });
    return d;
  }();
  return *dir;
}

}  // namespace ringtrain::fuzz

// Reading the --config file: what may be one (a regular file of at most
// kMaxConfigBytes, or a pipe) and its text, in one read.
#pragma once

#include <cstddef>
#include <string>

namespace ringtrain {

constexpr std::size_t kMaxConfigBytes = std::size_t(16) << 20;

// The whole text of `path`. UsageError naming --config for a missing or
// unreadable file, a directory, a device, a named FIFO, or more than
// kMaxConfigBytes.
std::string read_config_text(const std::string& path);

}  // namespace ringtrain

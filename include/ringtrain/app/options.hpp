// Options of `ringtrain train`: the table of keys, INI + command-line parsing
// with Boost.Program_options, and conversion into a validated TrainConfig.
//
// Every key is declared once in the table (name, default, help). The INI file
// uses sections for the part before the dot ([optim] lr = 0.1); the command
// line uses the dotted name (--optim.lr=0.1) and wins over the file. Unknown
// keys and malformed values are UsageErrors naming the key.
#pragma once

#include <string>
#include <vector>

#include "ringtrain/train/config.hpp"

namespace ringtrain {

struct ParsedTrainArgs {
  bool help = false;
  std::string help_text;
  TrainConfig config;
};

ParsedTrainArgs parse_train_args(const std::vector<std::string>& args);

}  // namespace ringtrain
